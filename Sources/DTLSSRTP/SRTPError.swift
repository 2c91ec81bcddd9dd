/// Why an SRTP operation failed. Equal by code; `status` is libsrtp's `srtp_err_status_t` when it came from there.
public struct SRTPError: Error, Sendable, Hashable, CustomStringConvertible {
    /// An extensible set of failure codes.
    public struct Code: RawRepresentable, Sendable, Hashable {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        /// The packet's authentication tag did not verify: it was forged or damaged.
        public static let authenticationFailed = Code(rawValue: "authentication_failed")
        /// The packet's index was already seen (replay) or is too old for the replay window.
        public static let replayed = Code(rawValue: "replayed")
        /// The packet is too short to be RTP/RTCP, or the buffer leaves no room for the tag.
        public static let malformedPacket = Code(rawValue: "malformed_packet")
        /// Key or salt of the wrong length, or a key already used by another outbound session.
        public static let badKey = Code(rawValue: "bad_key")
        /// libsrtp failed otherwise.
        public static let libraryFailure = Code(rawValue: "library_failure")
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
