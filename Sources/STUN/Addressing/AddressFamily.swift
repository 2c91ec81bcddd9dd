/// An address family as STUN and TURN encode it in address attributes and in REQUESTED-ADDRESS-FAMILY
/// (RFC 8489 §14.1, RFC 8656 §14.8): 0x01 is IPv4, 0x02 is IPv6.
///
/// A struct rather than an enum so that a value a peer sent but we do not know (a TURN server answers it with
/// 440 Address Family not Supported) can still be represented.
public struct AddressFamily: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// IPv4 (0x01).
    public static let ipv4 = AddressFamily(rawValue: 0x01)
    /// IPv6 (0x02).
    public static let ipv6 = AddressFamily(rawValue: 0x02)

    /// The size of an address of this family in bytes, or nil for an unknown family.
    public var addressSize: Int? {
        switch self {
        case .ipv4: 4
        case .ipv6: 16
        default: nil
        }
    }

    public var description: String {
        switch self {
        case .ipv4: "IPv4"
        case .ipv6: "IPv6"
        default: "family(0x\(String(rawValue, radix: 16)))"
        }
    }
}
