/// Why the registry refused an input. Equal by code; the message is for people.
public struct CallError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong (the raw value is the snake_case name, the API's `error.code` for calls). The codes are this
    /// module's own: a private enum backs them (as swift-certificates does), so
    /// adding one breaks no client, and no other module can make one up.
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        fileprivate enum Backing: String, Sendable, Hashable {
            case callNotFound = "call_not_found"
            case invalidTransition = "invalid_transition"
            case forbidden = "forbidden"
            case badRequest = "bad_request"
            case insecureSDP = "insecure_sdp"
            case unsupportedSDP = "unsupported_sdp"
            case mediaUnavailable = "media_unavailable"
            case storeUnavailable = "store_unavailable"
            case needsMediaRelay = "needs_media_relay"
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

        public static let callNotFound = Code(.callNotFound)
        public static let invalidTransition = Code(.invalidTransition)
        public static let forbidden = Code(.forbidden)
        public static let badRequest = Code(.badRequest)
        public static let insecureSDP = Code(.insecureSDP)
        public static let unsupportedSDP = Code(.unsupportedSDP)
        public static let mediaUnavailable = Code(.mediaUnavailable)
        public static let storeUnavailable = Code(.storeUnavailable)
        public static let needsMediaRelay = Code(.needsMediaRelay)
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
