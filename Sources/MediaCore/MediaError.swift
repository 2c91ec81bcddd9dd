/// Why the secure relay refused an SDP or an operation: a struct with an extensible code, equal by code.
public struct MediaError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong (the raw value is the snake_case name, the API's `error.code` for calls). The codes are this
    /// module's own: a private enum backs them (as swift-certificates does), so
    /// adding one breaks no client, and no other module can make one up.
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        fileprivate enum Backing: String, Sendable, Hashable {
            case unsupportedSDP = "unsupported_sdp"
            case noSession = "no_session"
            case conflict = "conflict"
            case unavailable = "media_unavailable"
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

        public static let unsupportedSDP = Code(.unsupportedSDP)
        public static let noSession = Code(.noSession)
        public static let conflict = Code(.conflict)
        public static let unavailable = Code(.unavailable)
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }

    public static func == (lhs: MediaError, rhs: MediaError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
