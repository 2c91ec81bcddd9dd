/// A STUN method (RFC 8489 §5, §18.2; TURN methods from RFC 8656 §17): the 12-bit operation a message carries out.
public struct STUNMethod: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt16

    /// A method from its 12-bit number; nil above 0xFFF, which the message type cannot encode.
    public init?(rawValue: UInt16) {
        guard rawValue <= 0x0FFF else { return nil }
        self.rawValue = rawValue
    }

    private init(_ value: UInt16) { self.rawValue = value }

    /// Binding (RFC 8489 §18.2).
    public static let binding = STUNMethod(0x001)
    /// Allocate (RFC 8656 §17): only request/response.
    public static let allocate = STUNMethod(0x003)
    /// Refresh (RFC 8656 §17): only request/response.
    public static let refresh = STUNMethod(0x004)
    /// Send (RFC 8656 §17): only indication.
    public static let send = STUNMethod(0x006)
    /// Data (RFC 8656 §17): only indication.
    public static let data = STUNMethod(0x007)
    /// CreatePermission (RFC 8656 §17): only request/response.
    public static let createPermission = STUNMethod(0x008)
    /// ChannelBind (RFC 8656 §17): only request/response.
    public static let channelBind = STUNMethod(0x009)

    public var description: String {
        switch self {
        case .binding: "Binding"
        case .allocate: "Allocate"
        case .refresh: "Refresh"
        case .send: "Send"
        case .data: "Data"
        case .createPermission: "CreatePermission"
        case .channelBind: "ChannelBind"
        default: "method(0x\(String(rawValue, radix: 16)))"
        }
    }
}

/// The class of a STUN message (RFC 8489 §5): request, indication, success or error response.
public enum STUNClass: UInt8, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case request = 0b00
    case indication = 0b01
    case successResponse = 0b10
    case errorResponse = 0b11

    public var description: String {
        switch self {
        case .request: "request"
        case .indication: "indication"
        case .successResponse: "success response"
        case .errorResponse: "error response"
        }
    }
}

/// The 14-bit message type of RFC 8489 §5: a method and a class, their bits interleaved as
/// `M11..M7 C1 M6..M4 C0 M3..M0`.
public struct STUNMessageType: Sendable, Hashable, CustomStringConvertible {
    public var method: STUNMethod
    public var messageClass: STUNClass

    public init(method: STUNMethod, class messageClass: STUNClass) {
        self.method = method
        self.messageClass = messageClass
    }

    /// Decodes the first two bytes of a message; nil when either of the two top bits is set (not STUN).
    public init?(rawValue: UInt16) {
        guard rawValue & 0xC000 == 0 else { return nil }
        let method = (rawValue & 0x000F) | (rawValue & 0x00E0) >> 1 | (rawValue & 0x3E00) >> 2
        let classBits = (rawValue & 0x0010) >> 4 | (rawValue & 0x0100) >> 7
        // Both always succeed: the method fits 12 bits, the class 2 bits.
        guard let decodedMethod = STUNMethod(rawValue: method),
            let decodedClass = STUNClass(rawValue: UInt8(truncatingIfNeeded: classBits))
        else { return nil }
        self.method = decodedMethod
        self.messageClass = decodedClass
    }

    /// The encoded type, as the first two bytes of a message.
    public var rawValue: UInt16 {
        let m = method.rawValue
        let c = UInt16(messageClass.rawValue)
        return (m & 0x000F) | (m & 0x0070) << 1 | (m & 0x0F80) << 2 | (c & 0b01) << 4 | (c & 0b10) << 7
    }

    public var description: String { "\(method) \(messageClass)" }

    /// Binding request (0x0001).
    public static let bindingRequest = STUNMessageType(method: .binding, class: .request)
    /// Binding success response (0x0101).
    public static let bindingSuccess = STUNMessageType(method: .binding, class: .successResponse)
    /// Binding error response (0x0111).
    public static let bindingError = STUNMessageType(method: .binding, class: .errorResponse)
}
