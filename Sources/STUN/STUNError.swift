/// Why the STUN codec refused some bytes or a value. Equal by ``code`` only; ``message`` is for people.
///
/// Decoding never traps: every malformed input ends in one of these. The shape follows swift-certificates'
/// `CertificateError`: an extensible ``Code`` rather than a closed enum, so new failures can be added without breaking
/// callers.
public struct STUNError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong (the raw value is the snake_case name, the API's `error.code` for calls). The codes are this
    /// module's own: a private enum backs them (as swift-certificates does), so
    /// adding one breaks no client, and no other module can make one up.
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        fileprivate enum Backing: String, Sendable, Hashable {
            case truncatedHeader = "truncated_header"
            case notSTUN = "not_stun"
            case invalidMagicCookie = "invalid_magic_cookie"
            case invalidMessageLength = "invalid_message_length"
            case lengthMismatch = "length_mismatch"
            case truncatedAttribute = "truncated_attribute"
            case attributeAfterFingerprint = "attribute_after_fingerprint"
            case invalidAttributeLength = "invalid_attribute_length"
            case invalidAttributeValue = "invalid_attribute_value"
            case unknownAddressFamily = "unknown_address_family"
            case invalidErrorCode = "invalid_error_code"
            case invalidUTF8 = "invalid_utf8"
            case messageTooLarge = "message_too_large"
            case invalidArgument = "invalid_argument"
            case invalidChannelNumber = "invalid_channel_number"
            case truncatedChannelData = "truncated_channel_data"
            case bufferTooSmall = "buffer_too_small"
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

        public static let truncatedHeader = Code(.truncatedHeader)
        public static let notSTUN = Code(.notSTUN)
        public static let invalidMagicCookie = Code(.invalidMagicCookie)
        public static let invalidMessageLength = Code(.invalidMessageLength)
        public static let lengthMismatch = Code(.lengthMismatch)
        public static let truncatedAttribute = Code(.truncatedAttribute)
        public static let attributeAfterFingerprint = Code(.attributeAfterFingerprint)
        public static let invalidAttributeLength = Code(.invalidAttributeLength)
        public static let invalidAttributeValue = Code(.invalidAttributeValue)
        public static let unknownAddressFamily = Code(.unknownAddressFamily)
        public static let invalidErrorCode = Code(.invalidErrorCode)
        public static let invalidUTF8 = Code(.invalidUTF8)
        public static let messageTooLarge = Code(.messageTooLarge)
        public static let invalidArgument = Code(.invalidArgument)
        public static let invalidChannelNumber = Code(.invalidChannelNumber)
        public static let truncatedChannelData = Code(.truncatedChannelData)
        public static let bufferTooSmall = Code(.bufferTooSmall)
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }

    public static func == (lhs: STUNError, rhs: STUNError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
