internal import CSRTP
public import NIOCore
import Synchronization

/// One direction of SRTP/SRTCP (RFC 3711) for one DTLS-SRTP association, over libsrtp.
///
/// An outbound session protects every SSRC it sees with one master key; an inbound session verifies and decrypts.
/// Each session owns exactly one `srtp_t`, freed (and its derived keys zeroed by libsrtp) in `deinit`; the master
/// key handed in is copied only into a buffer that is zeroed as soon as libsrtp has derived its session keys. An
/// outbound master key is refused if any other outbound session of this process already used it (a reused
/// keystream would reveal plaintext).
///
/// Buffers: `protect` needs ``maximumTrailerLength`` spare bytes after the packet for the tag (and MKI); the
/// packet is transformed in place, without copies. A session is not thread-safe: use it from one event loop.
public final class SRTPSession {
    /// Which way packets flow through the session.
    public enum Direction: Sendable {
        case inbound
        case outbound
    }

    /// Bytes `protect` may append to a packet; leave this much room after it.
    public static let maximumTrailerLength = Int(switchboard_srtp_max_trailer_len())

    public let profile: SRTPProfile
    public let direction: Direction
    private var context: srtp_t?

    /// Creates a session from an RFC 5764 master key and salt for `profile`.
    /// - Parameters:
    ///   - replayWindow: packets of reordering tolerated before an index counts as too old (64–32768).
    ///   - allowRepeatTransmission: an outbound session may protect an index again (libsrtp's `allow_repeat_tx`):
    ///     a relay forwards retransmissions made without RTX, as mediasoup's outbound sessions allow.
    public init(
        profile: SRTPProfile,
        masterKey: [UInt8],
        masterSalt: [UInt8],
        direction: Direction,
        replayWindow: Int = 1024,
        allowRepeatTransmission: Bool = false
    ) throws(SRTPError) {
        guard masterKey.count == profile.keyLength, masterSalt.count == profile.saltLength else {
            throw SRTPError(
                .badKey, "\(profile) needs a \(profile.keyLength)-byte key and a \(profile.saltLength)-byte salt")
        }
        guard (64...0x8000).contains(replayWindow) else {
            throw SRTPError(.badKey, "the replay window must be 64 to 32768 packets")
        }
        SRTPLibrary.ensureInitialized()
        if direction == .outbound {
            guard SRTPLibrary.claimOutboundKey(masterKey + masterSalt) else {
                throw SRTPError(.badKey, "this master key already protects another outbound session")
            }
        }
        self.profile = profile
        self.direction = direction

        var policy = srtp_policy_t()
        switch profile {
        case .aeadAES128GCM:
            srtp_crypto_policy_set_aes_gcm_128_16_auth(&policy.rtp)
            srtp_crypto_policy_set_aes_gcm_128_16_auth(&policy.rtcp)
        case .aes128CMHMACSHA1_80:
            srtp_crypto_policy_set_rtp_default(&policy.rtp)
            srtp_crypto_policy_set_rtcp_default(&policy.rtcp)
        }
        policy.ssrc.type = direction == .inbound ? ssrc_any_inbound : ssrc_any_outbound
        policy.window_size = UInt(replayWindow)
        policy.allow_repeat_tx = allowRepeatTransmission && direction == .outbound ? 1 : 0

        let material = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: masterKey.count + masterSalt.count)
        defer {
            // Zeroed before it is freed: the master key lives on only inside libsrtp's context.
            material.update(repeating: 0)
            material.deallocate()
        }
        _ = material.initialize(from: masterKey + masterSalt)
        policy.key = material.baseAddress
        var created: srtp_t?
        let status = srtp_create(&created, &policy)
        guard status == srtp_err_status_ok, let created else {
            throw SRTPError(.libraryFailure, status: Int32(status.rawValue), "srtp_create failed")
        }
        context = created
    }

    deinit {
        if let context { srtp_dealloc(context) }
    }

    // MARK: In place, on raw memory

    /// Protects the RTP packet in the first `length` bytes of `buffer` in place; returns the SRTP length.
    /// `buffer` must have ``maximumTrailerLength`` bytes to spare after the packet.
    public func protectRTP(_ buffer: UnsafeMutableRawBufferPointer, length: Int) throws(SRTPError) -> Int {
        try transform(buffer, length: length, minimum: 12, grows: true) { context, pointer, length in
            srtp_protect(context, pointer, length)
        }
    }

    /// Verifies and decrypts the SRTP packet in the first `length` bytes of `buffer` in place; returns the RTP
    /// length.
    public func unprotectRTP(_ buffer: UnsafeMutableRawBufferPointer, length: Int) throws(SRTPError) -> Int {
        try transform(buffer, length: length, minimum: 12, grows: false) { context, pointer, length in
            srtp_unprotect(context, pointer, length)
        }
    }

    /// Protects an RTCP compound packet in place (SRTCP adds the index, E-flag and tag); returns the new length.
    public func protectRTCP(_ buffer: UnsafeMutableRawBufferPointer, length: Int) throws(SRTPError) -> Int {
        try transform(buffer, length: length, minimum: 8, grows: true) { context, pointer, length in
            srtp_protect_rtcp(context, pointer, length)
        }
    }

    /// Verifies and decrypts an SRTCP packet in place; returns the RTCP length.
    public func unprotectRTCP(_ buffer: UnsafeMutableRawBufferPointer, length: Int) throws(SRTPError) -> Int {
        try transform(buffer, length: length, minimum: 8, grows: false) { context, pointer, length in
            srtp_unprotect_rtcp(context, pointer, length)
        }
    }

    // MARK: ByteBuffer

    /// Protects the readable bytes of `packet` (one RTP packet) in place.
    public func protectRTP(_ packet: inout ByteBuffer) throws(SRTPError) {
        try onByteBuffer(&packet, grows: true) { buffer, length throws(SRTPError) in
            try protectRTP(buffer, length: length)
        }
    }

    /// Verifies and decrypts the readable bytes of `packet` (one SRTP packet) in place.
    public func unprotectRTP(_ packet: inout ByteBuffer) throws(SRTPError) {
        try onByteBuffer(&packet, grows: false) { buffer, length throws(SRTPError) in
            try unprotectRTP(buffer, length: length)
        }
    }

    /// Protects the readable bytes of `packet` (one RTCP compound packet) in place.
    public func protectRTCP(_ packet: inout ByteBuffer) throws(SRTPError) {
        try onByteBuffer(&packet, grows: true) { buffer, length throws(SRTPError) in
            try protectRTCP(buffer, length: length)
        }
    }

    /// Verifies and decrypts the readable bytes of `packet` (one SRTCP packet) in place.
    public func unprotectRTCP(_ packet: inout ByteBuffer) throws(SRTPError) {
        try onByteBuffer(&packet, grows: false) { buffer, length throws(SRTPError) in
            try unprotectRTCP(buffer, length: length)
        }
    }

    // MARK: Helpers

    private func transform(
        _ buffer: UnsafeMutableRawBufferPointer,
        length: Int,
        minimum: Int,
        grows: Bool,
        _ call: (srtp_t, UnsafeMutableRawPointer, UnsafeMutablePointer<Int32>) -> srtp_err_status_t
    ) throws(SRTPError) -> Int {
        guard let context, let base = buffer.baseAddress else {
            throw SRTPError(.libraryFailure, "the session has no context")
        }
        guard length >= minimum, length <= buffer.count, length < Int(Int32.max) - Self.maximumTrailerLength else {
            throw SRTPError(.malformedPacket, "a packet of \(length) bytes cannot be processed")
        }
        if grows && buffer.count - length < Self.maximumTrailerLength {
            throw SRTPError(
                .malformedPacket, "leave \(Self.maximumTrailerLength) spare bytes after the packet for its tag")
        }
        var newLength = Int32(length)
        let status = call(context, base, &newLength)
        switch status {
        case srtp_err_status_ok: return Int(newLength)
        case srtp_err_status_auth_fail:
            throw SRTPError(.authenticationFailed, status: Int32(status.rawValue), "authentication failed")
        case srtp_err_status_replay_fail, srtp_err_status_replay_old:
            throw SRTPError(.replayed, status: Int32(status.rawValue), "replayed or too old for the replay window")
        case srtp_err_status_parse_err, srtp_err_status_bad_param:
            throw SRTPError(.malformedPacket, status: Int32(status.rawValue), "not a valid packet")
        default:
            throw SRTPError(.libraryFailure, status: Int32(status.rawValue), "libsrtp failed")
        }
    }

    private func onByteBuffer(
        _ packet: inout ByteBuffer,
        grows: Bool,
        _ body: (UnsafeMutableRawBufferPointer, Int) throws(SRTPError) -> Int
    ) throws(SRTPError) {
        let length = packet.readableBytes
        if grows {
            // Room for the tag, then the writer index goes back to where the packet ends.
            packet.writeRepeatingByte(0, count: Self.maximumTrailerLength)
        }
        let result = packet.withUnsafeMutableReadableBytes { buffer -> Result<Int, SRTPError> in
            do throws(SRTPError) {
                return .success(try body(buffer, length))
            } catch {
                return .failure(error)
            }
        }
        switch result {
        case .success(let newLength):
            packet.moveWriterIndex(to: packet.readerIndex + newLength)
        case .failure(let error):
            if grows { packet.moveWriterIndex(to: packet.readerIndex + length) }
            throw error
        }
    }
}

/// Process-wide libsrtp state: `srtp_init` runs exactly once, and outbound master keys are remembered (as
/// salted hashes, never the keys) so that none protects two sessions.
enum SRTPLibrary {
    private static let initialization: Int32 = Int32(srtp_init().rawValue)
    private static let outboundKeys = Mutex<Set<Int>>([])

    static func ensureInitialized() {
        precondition(initialization == 0, "srtp_init failed with status \(initialization)")
    }

    static func claimOutboundKey(_ material: [UInt8]) -> Bool {
        var hasher = Hasher()
        material.withUnsafeBytes { hasher.combine(bytes: $0) }
        let digest = hasher.finalize()
        return outboundKeys.withLock { $0.insert(digest).inserted }
    }
}
