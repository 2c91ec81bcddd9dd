/// Why the secure relay refused an SDP or an operation: a struct with an extensible code, equal by code.
public struct MediaError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: RawRepresentable, Sendable, Hashable {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        /// The SDP cannot be relayed by the secure relay (no ICE credentials, no BUNDLE, a TCP transport, ...).
        public static let unsupportedSDP = Code(rawValue: "unsupported_sdp")
        /// The call has no media session (it ended, or it is not a secure-relay call).
        public static let noSession = Code(rawValue: "no_session")
        /// The offer or answer does not fit where the negotiation stands (an offer already pending, an answer
        /// without an offer).
        public static let conflict = Code(rawValue: "conflict")
        /// The media endpoint is not running.
        public static let unavailable = Code(rawValue: "media_unavailable")
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
