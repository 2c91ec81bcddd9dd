/// Why an SRTP operation failed. Equal by code; `status` is libsrtp's `srtp_err_status_t` when it came from there.
public struct SRTPError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong (the raw value is the snake_case name, the API's `error.code` for calls). The codes are this
    /// module's own: a private enum backs them (as swift-certificates does), so
    /// adding one breaks no client, and no other module can make one up.
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        fileprivate enum Backing: String, Sendable, Hashable {
            case authenticationFailed = "authentication_failed"
            case replayed = "replayed"
            case malformedPacket = "malformed_packet"
            case badKey = "bad_key"
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

        public static let authenticationFailed = Code(.authenticationFailed)
        public static let replayed = Code(.replayed)
        public static let malformedPacket = Code(.malformedPacket)
        public static let badKey = Code(.badKey)
        public static let libraryFailure = Code(.libraryFailure)
    }

    public let code: Code
    public let status: Int32?
    public let message: String

    public init(_ code: Code, status: Int32? = nil, _ message: String) {
        self.code = code
        self.status = status
        self.message = message
    }

    public var description: String {
        "\(code.rawValue): \(message)" + (status.map { " (srtp_err_status \($0))" } ?? "")
    }

    public static func == (lhs: SRTPError, rhs: SRTPError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
