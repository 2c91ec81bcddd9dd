/// A certificate fingerprint as SDP signals it (RFC 8122 §5): `a=fingerprint:sha-256 AB:CD:...`.
///
/// The one fingerprint type of Switchboard: what `SDPKeyingCheck` reads from an offer or answer is what the DTLS
/// engines compare a peer's certificate with. A pure value (no OpenSSL), so the signaling core can use it.
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

    /// The hash function's name as SDP spells it (`sha-256`).
    public var hash: String { algorithm.rawValue }

    /// Parses an `a=fingerprint` value (with or without the `a=fingerprint:` prefix): the hash and the digest as
    /// colon-separated hex pairs. Hashes weaker than SHA-256 are refused with ``FingerprintError/Code/weakHash``
    /// (and the hash as SDP spelled it, lower-cased), anything malformed with ``FingerprintError/Code/malformed``.
    public static func parse(_ text: some StringProtocol) throws(FingerprintError) -> DTLSFingerprint {
        var value = Substring(text)
        if value.hasPrefix("a=fingerprint:") { value = value.dropFirst("a=fingerprint:".count) }
        let parts = value.split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count == 2 else { throw FingerprintError(.malformed, "not a fingerprint: \(text)") }
        let hash = parts[0].lowercased()
        guard let algorithm = Algorithm(rawValue: hash) else {
            throw FingerprintError(.weakHash, hash: hash, "hash \(hash) is not accepted (sha-256, sha-384 or sha-512)")
        }
        var bytes: [UInt8] = []
        for pair in parts[1].split(separator: ":", omittingEmptySubsequences: false) {
            guard pair.count == 2, pair.allSatisfy(\.isHexDigit), let byte = UInt8(pair, radix: 16) else {
                throw FingerprintError(.malformed, "malformed fingerprint: \(text)")
            }
            bytes.append(byte)
        }
        guard bytes.count == algorithm.digestLength else {
            throw FingerprintError(
                .malformed, "a \(algorithm.rawValue) fingerprint has \(algorithm.digestLength) bytes")
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
