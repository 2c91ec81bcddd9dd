/// Why a fingerprint value was refused: a struct with an extensible code, equal by code.
public struct FingerprintError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: RawRepresentable, Sendable, Hashable {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        /// A hash function weaker than SHA-256 (sha-1, md5, ...), or one not known.
        public static let weakHash = Code(rawValue: "weak_fingerprint")
        /// Not `HASH HEX:HEX:...`, or a digest of the wrong length.
        public static let malformed = Code(rawValue: "malformed_fingerprint")
    }

    public let code: Code
    /// For ``Code/weakHash``: the hash as SDP named it, lower-cased.
    public let hash: String?
    public let message: String

    public init(_ code: Code, hash: String? = nil, _ message: String) {
        self.code = code
        self.hash = hash
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }

    public static func == (lhs: FingerprintError, rhs: FingerprintError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
