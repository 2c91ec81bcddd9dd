/// Why a DTLS operation failed. Equal by code; `details` carries OpenSSL's error queue text when it came from there.
public struct DTLSError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong (the raw value is the snake_case name, the API's `error.code` for calls). The codes are this
    /// module's own: a private enum backs them (as swift-certificates does), so
    /// adding one breaks no client, and no other module can make one up.
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        fileprivate enum Backing: String, Sendable, Hashable {
            case fingerprintMismatch = "fingerprint_mismatch"
            case missingCertificate = "missing_certificate"
            case noSRTPProfile = "no_srtp_profile"
            case weakFingerprint = "weak_fingerprint"
            case handshakeTimeout = "handshake_timeout"
            case handshakeFailed = "handshake_failed"
            case badIdentity = "bad_identity"
            case libraryFailure = "library_failure"
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

        public static let fingerprintMismatch = Code(.fingerprintMismatch)
        public static let missingCertificate = Code(.missingCertificate)
        public static let noSRTPProfile = Code(.noSRTPProfile)
        public static let weakFingerprint = Code(.weakFingerprint)
        public static let handshakeTimeout = Code(.handshakeTimeout)
        public static let handshakeFailed = Code(.handshakeFailed)
        public static let badIdentity = Code(.badIdentity)
        public static let libraryFailure = Code(.libraryFailure)
    }

    public let code: Code
    public let message: String
    public let details: String?

    public init(_ code: Code, _ message: String, details: String? = nil) {
        self.code = code
        self.message = message
        self.details = details
    }

    public var description: String {
        "\(code.rawValue): \(message)" + (details.map { " [\($0)]" } ?? "")
    }

    public static func == (lhs: DTLSError, rhs: DTLSError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
