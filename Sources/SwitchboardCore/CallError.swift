/// Why the registry refused an input. Equal by code; the message is for people.
public struct CallError: Error, Sendable, Hashable, CustomStringConvertible {
    /// An extensible set of error codes; raw values are the API's `error.code`.
    public struct Code: RawRepresentable, Sendable, Hashable {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        /// No such call, or the user is not a party to it (the two are indistinguishable on purpose).
        public static let callNotFound = Code(rawValue: "call_not_found")
        /// The call's state does not allow the input.
        public static let invalidTransition = Code(rawValue: "invalid_transition")
        /// A party tried something only the other party may do.
        public static let forbidden = Code(rawValue: "forbidden")
        /// The input itself is malformed.
        public static let badRequest = Code(rawValue: "bad_request")
        /// The SDP's keying material is unsafe.
        public static let insecureSDP = Code(rawValue: "insecure_sdp")
        /// SDP the secure relay cannot carry (no BUNDLE, TCP transport, a DTLS role it cannot take, ...).
        public static let unsupportedSDP = Code(rawValue: "unsupported_sdp")
        /// The secure relay is not running on this server.
        public static let mediaUnavailable = Code(rawValue: "media_unavailable")
        /// The call store (its database) cannot be reached; nothing was changed.
        public static let storeUnavailable = Code(rawValue: "store_unavailable")
        /// SDP of a secure-relay call that did not pass through the media endpoint: the adapter's cue to send it
        /// there first (never an API answer).
        public static let needsMediaRelay = Code(rawValue: "needs_media_relay")
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }

    public static func == (lhs: CallError, rhs: CallError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
