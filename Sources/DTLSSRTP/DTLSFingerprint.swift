/// A certificate fingerprint as SDP signals it (RFC 8122 §5): `a=fingerprint:sha-256 AB:CD:...`.
public struct DTLSFingerprint: Sendable, Hashable, CustomStringConvertible {
    /// Hash functions accepted for fingerprints: SHA-256 and stronger (weaker ones are refused by ``parse(_:)``).
    public enum Algorithm: String, Sendable, Hashable, CaseIterable {
        case sha256 = "sha-256"
        case sha384 = "sha-384"
        case sha512 = "sha-512"

        public var digestLength: Int {
            switch self {
            case .sha256: 32
            case .sha384: 48
            case .sha512: 64
            }
        }
    }

    public let algorithm: Algorithm
    public let bytes: [UInt8]

    public init(algorithm: Algorithm, bytes: [UInt8]) {
        self.algorithm = algorithm
        self.bytes = bytes
    }

    /// The attribute value: `sha-256 AB:CD:...` (upper-case hex, as browsers write it).
    public var sdpValue: String {
        algorithm.rawValue + " "
            + bytes.map { byte in
                let hex = String(byte, radix: 16, uppercase: true)
                return hex.count == 1 ? "0" + hex : hex
            }.joined(separator: ":")
    }

    public var description: String { sdpValue }

    /// Parses an `a=fingerprint` value (with or without the `a=fingerprint:` prefix). Hashes weaker than SHA-256
    /// and malformed values are refused with `weak_fingerprint`.
    public static func parse(_ text: String) throws(DTLSError) -> DTLSFingerprint {
        var value = Substring(text)
        if value.hasPrefix("a=fingerprint:") { value = value.dropFirst("a=fingerprint:".count) }
        let parts = value.split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count == 2 else { throw DTLSError(.weakFingerprint, "not a fingerprint: \(text)") }
        guard let algorithm = Algorithm(rawValue: parts[0].lowercased()) else {
            throw DTLSError(.weakFingerprint, "hash \(parts[0]) is not accepted (sha-256, sha-384 or sha-512)")
        }
        var bytes: [UInt8] = []
        for pair in parts[1].split(separator: ":", omittingEmptySubsequences: false) {
            guard pair.count == 2, pair.allSatisfy(\.isHexDigit), let byte = UInt8(pair, radix: 16) else {
                throw DTLSError(.weakFingerprint, "malformed fingerprint: \(text)")
            }
            bytes.append(byte)
        }
        guard bytes.count == algorithm.digestLength else {
            throw DTLSError(.weakFingerprint, "a \(algorithm.rawValue) fingerprint has \(algorithm.digestLength) bytes")
        }
        return DTLSFingerprint(algorithm: algorithm, bytes: bytes)
    }

    /// Constant-time comparison of the digests (the algorithms must be equal too).
    public func matches(_ other: DTLSFingerprint) -> Bool {
        guard algorithm == other.algorithm, bytes.count == other.bytes.count else { return false }
        var difference: UInt8 = 0
        for index in bytes.indices { difference |= bytes[index] ^ other.bytes[index] }
        return difference == 0
    }
}
