/// A password algorithm (RFC 8489 §14.11–14.12, §18.5): how a long-term credential's key is derived from
/// `username:realm:password` (see ``LongTermCredential``).
public struct PasswordAlgorithm: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// MD5 (0x0001): the key is 16 bytes; the RFC 5389 default.
    public static let md5 = PasswordAlgorithm(rawValue: 0x0001)
    /// SHA-256 (0x0002): the key is 32 bytes.
    public static let sha256 = PasswordAlgorithm(rawValue: 0x0002)

    public var description: String {
        switch self {
        case .md5: "MD5"
        case .sha256: "SHA-256"
        default: "algorithm(0x\(String(rawValue, radix: 16)))"
        }
    }
}

// PASSWORD-ALGORITHMS (RFC 8489 §14.11), PASSWORD-ALGORITHM (§14.12) and USERHASH (§14.4). Each algorithm entry is
// a 16-bit algorithm, a 16-bit parameter length, then the parameters padded to 4 bytes; MD5 and SHA-256 have none.

extension STUNAttribute {
    /// PASSWORD-ALGORITHM (RFC 8489 §14.12): the algorithm the client chose, without parameters.
    public static func passwordAlgorithm(_ algorithm: PasswordAlgorithm) -> STUNAttribute {
        STUNAttribute(type: .passwordAlgorithm, value: PasswordAlgorithmCodec.encode([algorithm]))
    }

    /// PASSWORD-ALGORITHMS (RFC 8489 §14.11): the algorithms a server offers, in order of preference.
    public static func passwordAlgorithms(_ algorithms: [PasswordAlgorithm]) -> STUNAttribute {
        STUNAttribute(type: .passwordAlgorithms, value: PasswordAlgorithmCodec.encode(algorithms))
    }

    /// USERHASH (RFC 8489 §14.4): SHA-256 of `username:realm`, sent instead of USERNAME for anonymity.
    public static func userHash(username: String, realm: String) -> STUNAttribute {
        STUNAttribute(type: .userHash, value: LongTermCredential.userHash(username: username, realm: realm))
    }
}

extension STUNMessage {
    /// The algorithm of the first PASSWORD-ALGORITHM (RFC 8489 §14.12).
    public var passwordAlgorithm: PasswordAlgorithm? {
        get throws(STUNError) {
            guard let value = firstValue(.passwordAlgorithm) else { return nil }
            let algorithms = try PasswordAlgorithmCodec.decode(value, type: .passwordAlgorithm)
            guard algorithms.count == 1 else {
                throw STUNError(.invalidAttributeLength, "PASSWORD-ALGORITHM holds \(algorithms.count) entries")
            }
            return algorithms[0]
        }
    }

    /// The algorithms of the first PASSWORD-ALGORITHMS (RFC 8489 §14.11); empty when absent.
    public var passwordAlgorithms: [PasswordAlgorithm] {
        get throws(STUNError) {
            guard let value = firstValue(.passwordAlgorithms) else { return [] }
            return try PasswordAlgorithmCodec.decode(value, type: .passwordAlgorithms)
        }
    }

    /// The 32 bytes of the first USERHASH (RFC 8489 §14.4).
    public var userHash: [UInt8]? {
        get throws(STUNError) { try fixed(.userHash, size: 32) }
    }
}

enum PasswordAlgorithmCodec {
    static func encode(_ algorithms: [PasswordAlgorithm]) -> [UInt8] {
        var value: [UInt8] = []
        for algorithm in algorithms {
            value.appendUInt16(algorithm.rawValue)
            value.appendUInt16(0)
        }
        return value
    }

    static func decode(_ value: [UInt8], type: STUNAttributeType) throws(STUNError) -> [PasswordAlgorithm] {
        var result: [PasswordAlgorithm] = []
        var offset = 0
        while offset < value.count {
            guard value.count - offset >= 4 else {
                throw STUNError(.invalidAttributeLength, "\(type) entry cut short")
            }
            let algorithm = PasswordAlgorithm(rawValue: value.readUInt16(at: offset))
            let parameters = Int(value.readUInt16(at: offset + 2))
            let padded = parameters + paddingLength(parameters)
            guard value.count - offset - 4 >= padded else {
                throw STUNError(.invalidAttributeLength, "\(type) parameters overrun the attribute")
            }
            result.append(algorithm)
            offset += 4 + padded
        }
        return result
    }
}
