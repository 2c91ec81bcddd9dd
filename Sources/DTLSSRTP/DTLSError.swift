/// Why a DTLS operation failed. Equal by code; `details` carries OpenSSL's error queue text when it came from there.
public struct DTLSError: Error, Sendable, Hashable, CustomStringConvertible {
    /// An extensible set of failure codes.
    public struct Code: RawRepresentable, Sendable, Hashable {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        /// The peer's certificate does not match the fingerprint signalled in SDP.
        public static let fingerprintMismatch = Code(rawValue: "fingerprint_mismatch")
        /// The peer presented no certificate.
        public static let missingCertificate = Code(rawValue: "missing_certificate")
        /// The handshake completed without an SRTP protection profile (no `use_srtp` agreement).
        public static let noSRTPProfile = Code(rawValue: "no_srtp_profile")
        /// The signalled fingerprint uses a hash weaker than SHA-256, or is malformed.
        public static let weakFingerprint = Code(rawValue: "weak_fingerprint")
        /// The handshake did not complete within the configured time.
        public static let handshakeTimeout = Code(rawValue: "handshake_timeout")
        /// The handshake failed (alert, protocol error, too many retransmissions).
        public static let handshakeFailed = Code(rawValue: "handshake_failed")
        /// Certificate or key could not be made or loaded.
        public static let badIdentity = Code(rawValue: "bad_identity")
        /// OpenSSL failed otherwise.
        public static let libraryFailure = Code(rawValue: "library_failure")
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
