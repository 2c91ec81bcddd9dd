/// Why the STUN codec refused some bytes or a value. Equal by ``code`` only; ``message`` is for people.
///
/// Decoding never traps: every malformed input ends in one of these. The shape follows swift-certificates'
/// `CertificateError`: an extensible ``Code`` rather than a closed enum, so new failures can be added without breaking
/// callers.
public struct STUNError: Error, Sendable, Hashable, CustomStringConvertible {
    /// An extensible set of failure codes.
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// Fewer than 20 bytes: not even a STUN header (RFC 8489 §5).
        public static let truncatedHeader = Code(rawValue: "truncated_header")
        /// The two most significant bits of the message type are not zero (RFC 8489 §5).
        public static let notSTUN = Code(rawValue: "not_stun")
        /// Bytes 4..<8 are not 0x2112A442 (RFC 8489 §5).
        public static let invalidMagicCookie = Code(rawValue: "invalid_magic_cookie")
        /// The header's message length is not a multiple of 4 (RFC 8489 §5).
        public static let invalidMessageLength = Code(rawValue: "invalid_message_length")
        /// The header's message length differs from the number of bytes that follow the header.
        public static let lengthMismatch = Code(rawValue: "length_mismatch")
        /// An attribute (or its padding) runs past the end of the message (RFC 8489 §14).
        public static let truncatedAttribute = Code(rawValue: "truncated_attribute")
        /// An attribute follows FINGERPRINT, which must be last (RFC 8489 §14.7).
        public static let attributeAfterFingerprint = Code(rawValue: "attribute_after_fingerprint")
        /// An attribute's value has a size its type does not allow.
        public static let invalidAttributeLength = Code(rawValue: "invalid_attribute_length")
        /// An attribute's value is the right size but not a valid value.
        public static let invalidAttributeValue = Code(rawValue: "invalid_attribute_value")
        /// An address attribute names a family other than IPv4 (0x01) or IPv6 (0x02) (RFC 8489 §14.1).
        public static let unknownAddressFamily = Code(rawValue: "unknown_address_family")
        /// ERROR-CODE's class is not 3–6 or its number exceeds 99 (RFC 8489 §14.8).
        public static let invalidErrorCode = Code(rawValue: "invalid_error_code")
        /// A text attribute is not valid UTF-8.
        public static let invalidUTF8 = Code(rawValue: "invalid_utf8")
        /// The message would not fit the 16-bit length field (encoding).
        public static let messageTooLarge = Code(rawValue: "message_too_large")
        /// A caller-supplied parameter is out of range (encoding).
        public static let invalidArgument = Code(rawValue: "invalid_argument")
        /// A ChannelData channel number is outside 0x4000–0x4FFF (RFC 8656 §12).
        public static let invalidChannelNumber = Code(rawValue: "invalid_channel_number")
        /// A ChannelData message is shorter than its header says (RFC 8656 §12.4).
        public static let truncatedChannelData = Code(rawValue: "truncated_channel_data")
        /// A buffer handed to an in-place writer is too small.
        public static let bufferTooSmall = Code(rawValue: "buffer_too_small")
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
