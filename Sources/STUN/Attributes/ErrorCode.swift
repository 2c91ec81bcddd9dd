/// A STUN error response code (RFC 8489 §14.8 and §18.4; TURN codes from RFC 8656 §19): the number an
/// ERROR-CODE attribute carries, 300–699.
///
/// Not to be confused with ``STUNError``, which says why the codec refused some bytes.
public struct STUNErrorCode: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: Int

    /// A code in 300...699; nil otherwise (ERROR-CODE cannot carry it).
    public init?(rawValue: Int) {
        guard (300...699).contains(rawValue) else { return nil }
        self.rawValue = rawValue
    }

    private init(_ value: Int) { self.rawValue = value }

    public static let tryAlternate = STUNErrorCode(300)
    public static let badRequest = STUNErrorCode(400)
    public static let unauthorized = STUNErrorCode(401)
    public static let forbidden = STUNErrorCode(403)
    public static let unknownAttribute = STUNErrorCode(420)
    public static let allocationMismatch = STUNErrorCode(437)
    public static let staleNonce = STUNErrorCode(438)
    public static let addressFamilyNotSupported = STUNErrorCode(440)
    public static let wrongCredentials = STUNErrorCode(441)
    public static let unsupportedTransportProtocol = STUNErrorCode(442)
    public static let peerAddressFamilyMismatch = STUNErrorCode(443)
    public static let allocationQuotaReached = STUNErrorCode(486)
    public static let roleConflict = STUNErrorCode(487)
    public static let serverError = STUNErrorCode(500)
    public static let insufficientCapacity = STUNErrorCode(508)

    /// The reason phrase the RFCs suggest, or a generic one.
    public var reasonPhrase: String {
        switch rawValue {
        case 300: "Try Alternate"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 420: "Unknown Attribute"
        case 437: "Allocation Mismatch"
        case 438: "Stale Nonce"
        case 440: "Address Family not Supported"
        case 441: "Wrong Credentials"
        case 442: "Unsupported Transport Protocol"
        case 443: "Peer Address Family Mismatch"
        case 486: "Allocation Quota Reached"
        case 487: "Role Conflict"
        case 500: "Server Error"
        case 508: "Insufficient Capacity"
        default: "Error \(rawValue)"
        }
    }

    public var description: String { "\(rawValue) \(reasonPhrase)" }
}

/// Class/number split and reason of ERROR-CODE and ADDRESS-ERROR-CODE (RFC 8489 §14.8, RFC 8656 §18.12).
enum ErrorCodeCodec {
    /// Bytes 2 and 3 (class, number) then the reason, UTF-8, cut to 763 bytes on a scalar boundary.
    static func encode(_ code: STUNErrorCode, reason: String?, first: UInt8) -> [UInt8] {
        var out: [UInt8] = [first, 0, UInt8(code.rawValue / 100), UInt8(code.rawValue % 100)]
        var budget = STUN.maximumTextSize
        for scalar in (reason ?? code.reasonPhrase).unicodeScalars {
            let encoded = Array(String(scalar).utf8)
            guard encoded.count <= budget else { break }
            budget -= encoded.count
            out.append(contentsOf: encoded)
        }
        return out
    }

    static func decode(_ value: [UInt8], type: STUNAttributeType) throws(STUNError) -> (code: Int, reason: String) {
        guard value.count >= 4 else {
            throw STUNError(.invalidAttributeLength, "\(type) of \(value.count) bytes")
        }
        let errorClass = Int(value[2] & 0x07)
        let number = Int(value[3])
        guard (3...6).contains(errorClass), number <= 99 else {
            throw STUNError(.invalidErrorCode, "\(type) class \(errorClass) number \(number)")
        }
        guard let reason = String(validating: value[4...], as: UTF8.self) else {
            throw STUNError(.invalidUTF8, "\(type) reason phrase")
        }
        return (errorClass * 100 + number, reason)
    }
}

extension STUNAttribute {
    /// ERROR-CODE (RFC 8489 §14.8). The reason defaults to the code's usual phrase; a longer one than 763 bytes of
    /// UTF-8 is cut.
    public static func errorCode(_ code: STUNErrorCode, _ reason: String? = nil) -> STUNAttribute {
        STUNAttribute(type: .errorCode, value: ErrorCodeCodec.encode(code, reason: reason, first: 0))
    }

    /// UNKNOWN-ATTRIBUTES (RFC 8489 §14.13): the comprehension-required types a 420 response lists.
    public static func unknownAttributes(_ types: [UInt16]) -> STUNAttribute {
        var value: [UInt8] = []
        value.reserveCapacity(types.count * 2)
        for type in types {
            value.appendUInt16(type)
        }
        return STUNAttribute(type: .unknownAttributes, value: value)
    }
}

extension STUNMessage {
    /// The first ERROR-CODE (RFC 8489 §14.8) as a code 300–699 and its reason phrase. Throws for a class outside 3–6,
    /// a number above 99, or a reason that is not UTF-8.
    public var errorCode: (code: Int, reason: String)? {
        get throws(STUNError) {
            guard let value = firstValue(.errorCode) else { return nil }
            return try ErrorCodeCodec.decode(value, type: .errorCode)
        }
    }

    /// The types listed by the first UNKNOWN-ATTRIBUTES (RFC 8489 §14.13); empty when absent.
    public var unknownAttributes: [UInt16] {
        get throws(STUNError) {
            guard let value = firstValue(.unknownAttributes) else { return [] }
            guard value.count % 2 == 0 else {
                throw STUNError(.invalidAttributeLength, "UNKNOWN-ATTRIBUTES of \(value.count) bytes")
            }
            return stride(from: 0, to: value.count, by: 2).map { value.readUInt16(at: $0) }
        }
    }
}
