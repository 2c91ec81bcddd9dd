/// A TURN channel number (RFC 8656 §12): 0x4000 through 0x4FFF. Numbers outside that range are refused in
/// ChannelBind (400 Bad Request) and never start a ChannelData message.
public struct ChannelNumber: RawRepresentable, Sendable, Hashable, Comparable, CustomStringConvertible {
    public let rawValue: UInt16

    /// The numbers a client may bind.
    public static let validRange: ClosedRange<UInt16> = 0x4000...0x4FFF

    /// A channel number; nil outside 0x4000–0x4FFF.
    public init?(rawValue: UInt16) {
        guard ChannelNumber.isValid(rawValue) else { return nil }
        self.rawValue = rawValue
    }

    /// Whether `value` is a valid channel number.
    public static func isValid(_ value: UInt16) -> Bool { validRange.contains(value) }

    public static func < (lhs: ChannelNumber, rhs: ChannelNumber) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String { "0x" + String(rawValue, radix: 16) }
}
