/// Why a fingerprint value was refused: a struct with an extensible code, equal by code.
public struct FingerprintError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong (the raw value is the snake_case name, the API's `error.code` for calls). The codes are this
    /// module's own: a private enum backs them (as swift-certificates does), so
    /// adding one breaks no client, and no other module can make one up.
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        fileprivate enum Backing: String, Sendable, Hashable {
            case weakHash = "weak_fingerprint"
            case malformed = "malformed_fingerprint"
        }

        fileprivate let backing: Backing

        fileprivate init(_ backing: Backing) { self.backing = backing }

        /// The code named `rawValue` (its snake_case wire name), if this module has one.
        public init?(rawValue: String) {
            guard let backing = Backing(rawValue: rawValue) else { return nil }
            self.backing = backing
        }

        public var rawValue: String { backing.rawValue }
        public var description: String { backing.rawValue }

        public static let weakHash = Code(.weakHash)
        public static let malformed = Code(.malformed)
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
