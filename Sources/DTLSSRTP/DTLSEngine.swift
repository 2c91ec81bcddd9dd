internal import COpenSSL
public import CertificateFingerprint

/// The SRTP keys a DTLS-SRTP handshake produced (RFC 5764 §4.2), already split for this endpoint.
public struct SRTPKeyingMaterial: Sendable {
    public let profile: SRTPProfile
    public let localKey: [UInt8]
    public let localSalt: [UInt8]
    public let remoteKey: [UInt8]
    public let remoteSalt: [UInt8]

    /// The outbound (local keys) and inbound (remote keys) SRTP sessions of this endpoint.
    /// - Parameter allowRepeatTransmission: let the outbound session protect a packet whose index it already
    ///   protected (a relay forwarding a retransmission made without RTX, as mediasoup allows).
    public func makeSessions(replayWindow: Int = 1024, allowRepeatTransmission: Bool = false) throws(SRTPError) -> (
        outbound: SRTPSession, inbound: SRTPSession
    ) {
        (
            try SRTPSession(
                profile: profile, masterKey: localKey, masterSalt: localSalt, direction: .outbound,
                replayWindow: replayWindow, allowRepeatTransmission: allowRepeatTransmission),
            try SRTPSession(
                profile: profile, masterKey: remoteKey, masterSalt: remoteSalt, direction: .inbound,
                replayWindow: replayWindow)
        )
    }
}

/// A DTLS 1.2 endpoint with the `use_srtp` extension (RFC 5764), as an I/O-free engine over memory BIOs: feed it
/// the datagrams that arrive, send the datagrams it returns.
///
/// When the handshake completes, the peer's certificate is checked against the fingerprint signalled in SDP
/// (constant time, with the SDP line's hash) and the SRTP keys are exported (`EXTRACTOR-dtls_srtp`). The engine
/// owns its `SSL_CTX` and `SSL` (and through it both BIOs) and frees them in `deinit`. Not thread-safe: drive it
/// from one event loop.
///
/// Retransmission follows RFC 6347 §4.2.4.1 on OpenSSL's own timer (first after
/// ``Configuration/initialRetransmitInterval``, doubling): OpenSSL 3.0 reads the wall clock for it and offers no way
/// to inject one, so the caller asks ``retransmissionDelay`` when to call ``handleTimeout(now:)``. The overall
/// handshake deadline is measured on the caller's clock (the `now` passed in) and fails the handshake with
/// `handshake_timeout`.
///
/// A server facing the network should not be made directly: ``DTLSListener`` answers ClientHellos with a stateless
/// cookie exchange, caps half-open handshakes and hands out a server engine only for a peer that proved it receives
/// at its address. A server engine made with ``init(_:)`` (both ends already trusted, as in tests) skips the cookie.
public final class DTLSEngine {
    /// DTLS client (SDP `a=setup:active`) or server (`a=setup:passive`).
    public enum Role: Sendable {
        case client
        case server
    }

    public struct Configuration {
        public var role: Role
        public var identity: DTLSIdentity
        /// The fingerprint the peer signalled in SDP. Nil when it is not known yet (a browser's ClientHello may
        /// arrive before its answer does): the handshake then completes with the peer's certificate unchecked,
        /// ``isPeerVerified`` stays false and the caller checks it with ``verifyPeer(_:)`` once the SDP arrives.
        public var remoteFingerprint: DTLSFingerprint?
        /// Offered (client) or accepted (server) profiles, most preferred first.
        public var profiles: [SRTPProfile]
        /// Largest datagram the engine emits.
        public var mtu: Int
        /// First retransmission of an unanswered flight; it doubles each time, up to 60 s.
        public var initialRetransmitInterval: Duration
        /// A handshake that has not completed this long after ``DTLSEngine/start(now:)`` fails.
        public var handshakeTimeout: Duration

        public init(
            role: Role,
            identity: DTLSIdentity,
            remoteFingerprint: DTLSFingerprint?,
            profiles: [SRTPProfile] = [.aeadAES128GCM, .aes128CMHMACSHA1_80],
            mtu: Int = 1200,
            initialRetransmitInterval: Duration = .seconds(1),
            handshakeTimeout: Duration = .seconds(20)
        ) {
            self.role = role
            self.identity = identity
            self.remoteFingerprint = remoteFingerprint
            self.profiles = profiles
            self.mtu = mtu
            self.initialRetransmitInterval = initialRetransmitInterval
            self.handshakeTimeout = handshakeTimeout
        }
    }

    /// Where the handshake stands.
    public enum State {
        case handshaking
        case established(SRTPKeyingMaterial)
        case failed(DTLSError)
    }

    /// What one received datagram produced: handshake datagrams to send back, and the application data records
    /// it carried (for WebRTC, SCTP packets of data channels), in order.
    public struct Received {
        public var datagrams: [[UInt8]] = []
        public var applicationData: [[UInt8]] = []
    }

    public let configuration: Configuration
    public private(set) var state: State = .handshaking
    /// The peer's certificate fingerprints (SHA-256, SHA-384, SHA-512) once the handshake completed.
    public private(set) var peerFingerprints: [DTLSFingerprint] = []
    /// Whether the peer's certificate matched a signalled fingerprint (at the handshake or by ``verifyPeer(_:)``).
    public private(set) var isPeerVerified = false
    /// The peer sent close_notify: it ended the association.
    public private(set) var peerClosed = false
    private let ssl: OpaquePointer
    private let readBIO: OpaquePointer
    private let writeBIO: OpaquePointer
    private(set) var startedAt: ContinuousClock.Instant?

    public init(_ configuration: Configuration) throws(DTLSError) {
        try Self.validate(profiles: configuration.profiles, mtu: configuration.mtu)
        let context = try Self.makeContext(
            identity: configuration.identity, profiles: configuration.profiles)
        defer { SSL_CTX_free(context) }  // the SSL holds its own reference
        let (ssl, readBIO, writeBIO) = try Self.makeSSL(
            context: context, mtu: configuration.mtu,
            initialRetransmitInterval: configuration.initialRetransmitInterval)
        switch configuration.role {
        case .client: SSL_set_connect_state(ssl)
        case .server: SSL_set_accept_state(ssl)
        }
        self.configuration = configuration
        self.ssl = ssl
        self.readBIO = readBIO
        self.writeBIO = writeBIO
    }

    /// Takes over an `SSL` that ``DTLSListener`` made and that has already verified the peer's cookie (its
    /// ClientHello is buffered inside it).
    init(
        takingOwnershipOf ssl: OpaquePointer, readBIO: OpaquePointer, writeBIO: OpaquePointer,
        configuration: Configuration
    ) {
        self.configuration = configuration
        self.ssl = ssl
        self.readBIO = readBIO
        self.writeBIO = writeBIO
    }

    static func validate(profiles: [SRTPProfile], mtu: Int) throws(DTLSError) {
        guard !profiles.isEmpty else { throw DTLSError(.noSRTPProfile, "offer at least one profile") }
        guard (256...65_535).contains(mtu) else { throw DTLSError(.libraryFailure, "MTU out of range") }
    }

    /// An `SSL_CTX` for DTLS 1.2+ with `identity`, `use_srtp` for `profiles` and a required peer certificate
    /// (checked against the SDP fingerprint after the handshake). The caller owns the returned reference.
    static func makeContext(identity: DTLSIdentity, profiles: [SRTPProfile]) throws(DTLSError) -> OpaquePointer {
        guard let context = SSL_CTX_new(DTLS_method()) else {
            throw DTLSError(.libraryFailure, "SSL_CTX_new failed", details: OpenSSLErrors.drain())
        }
        guard sb_ssl_ctx_set_min_dtls12(context) == 1,
            SSL_CTX_use_certificate(context, identity.certificate) == 1,
            SSL_CTX_use_PrivateKey(context, identity.key) == 1,
            SSL_CTX_set_tlsext_use_srtp(context, profiles.map(\.openSSLName).joined(separator: ":")) == 0
        else {
            SSL_CTX_free(context)
            throw DTLSError(.libraryFailure, "cannot configure DTLS", details: OpenSSLErrors.drain())
        }
        sb_ssl_ctx_require_peer_certificate(context)
        return context
    }

    /// An `SSL` of `context` over two memory BIOs (owned by the SSL), with its MTU and first retransmission
    /// interval (doubling up to 60 s); its role is not yet set.
    static func makeSSL(
        context: OpaquePointer, mtu: Int, initialRetransmitInterval: Duration
    ) throws(DTLSError) -> (ssl: OpaquePointer, readBIO: OpaquePointer, writeBIO: OpaquePointer) {
        guard let ssl = SSL_new(context) else {
            throw DTLSError(.libraryFailure, "SSL_new failed", details: OpenSSLErrors.drain())
        }
        guard let readBIO = sb_bio_new_mem_retry() else {
            SSL_free(ssl)
            throw DTLSError(.libraryFailure, "BIO_new failed", details: OpenSSLErrors.drain())
        }
        guard let writeBIO = BIO_new(BIO_s_mem()) else {
            BIO_free(readBIO)
            SSL_free(ssl)
            throw DTLSError(.libraryFailure, "BIO_new failed", details: OpenSSLErrors.drain())
        }
        SSL_set_bio(ssl, readBIO, writeBIO)
        _ = sb_ssl_set_mtu(ssl, mtu)
        let (seconds, attoseconds) = initialRetransmitInterval.components
        let microseconds = max(1, min(60_000_000, seconds * 1_000_000 + attoseconds / 1_000_000_000_000))
        sb_dtls_use_timer(ssl, UInt32(microseconds))
        return (ssl, readBIO, writeBIO)
    }

    deinit {
        SSL_free(ssl)  // frees both BIOs and drops the SSL's reference to its SSL_CTX
    }

    /// The OpenSSL this module runs on, e.g. `OpenSSL 3.0.19 ...` (never BoringSSL, which NIOSSL links beside it).
    public static var libraryVersion: String {
        guard let text = OpenSSL_version(OPENSSL_VERSION) else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: text, count: strlen(text)), as: UTF8.self)
    }

    public var isEstablished: Bool {
        if case .established = state { return true }
        return false
    }

    /// Starts the handshake at `now` (the caller's clock): the client's first flight (a server returns nothing and
    /// waits).
    public func start(now: ContinuousClock.Instant = .now) throws(DTLSError) -> [[UInt8]] {
        startedAt = startedAt ?? now
        return try drive()
    }

    /// How long until a flight is due for retransmission (zero when due now); nil when no flight is unanswered.
    public var retransmissionDelay: Duration? {
        let microseconds = sb_dtls_timeout_us(ssl)
        return microseconds < 0 ? nil : .microseconds(microseconds)
    }

    /// Fails a handshake past its deadline, else retransmits the last flight if its timer expired.
    public func handleTimeout(now: ContinuousClock.Instant = .now) throws(DTLSError) -> [[UInt8]] {
        guard case .handshaking = state else {
            if case .failed(let error) = state { throw error }
            return []
        }
        if let startedAt, now - startedAt >= configuration.handshakeTimeout {
            let error = DTLSError(
                .handshakeTimeout, "the DTLS handshake did not complete in \(configuration.handshakeTimeout)")
            state = .failed(error)
            throw error
        }
        guard sb_dtls_handle_timeout(ssl) >= 0 else {
            let error = DTLSError(.handshakeFailed, "too many retransmissions", details: OpenSSLErrors.drain())
            state = .failed(error)
            throw error
        }
        return outgoingDatagrams()
    }

    /// Takes one received datagram; returns the datagrams to send in reply (application data is discarded: use
    /// ``process(_:now:)`` to get it).
    public func receive(_ datagram: [UInt8], now: ContinuousClock.Instant = .now) throws(DTLSError) -> [[UInt8]] {
        try process(datagram, now: now).datagrams
    }

    /// Takes one received datagram; returns the datagrams to send in reply and the application data it carried.
    public func process(_ datagram: [UInt8], now: ContinuousClock.Instant = .now) throws(DTLSError) -> Received {
        if case .failed(let error) = state { throw error }
        startedAt = startedAt ?? now
        _ = datagram.withUnsafeBytes { BIO_write(readBIO, $0.baseAddress, Int32($0.count)) }
        var received = Received()
        received.datagrams = try drive(applicationData: &received.applicationData)
        return received
    }

    /// Encrypts `data` as one application data record (after the handshake); returns the datagram to send.
    public func write(_ data: [UInt8]) throws(DTLSError) -> [[UInt8]] {
        guard case .established = state, !data.isEmpty else {
            throw DTLSError(.handshakeFailed, "application data before the handshake completed")
        }
        let written = data.withUnsafeBytes { SSL_write(ssl, $0.baseAddress, Int32($0.count)) }
        guard written == Int32(data.count) else {
            throw DTLSError(.libraryFailure, "SSL_write failed", details: OpenSSLErrors.drain())
        }
        return outgoingDatagrams()
    }

    /// Checks the peer's certificate against the fingerprint its SDP signalled, once it is known (constant time).
    @discardableResult
    public func verifyPeer(_ fingerprint: DTLSFingerprint) -> Bool {
        guard isEstablished else { return false }
        let matched = peerFingerprints.contains { $0.algorithm == fingerprint.algorithm && $0.matches(fingerprint) }
        if matched { isPeerVerified = true }
        return matched
    }

    private func drive() throws(DTLSError) -> [[UInt8]] {
        var discarded: [[UInt8]] = []
        return try drive(applicationData: &discarded)
    }

    private func drive(applicationData: inout [[UInt8]]) throws(DTLSError) -> [[UInt8]] {
        if case .handshaking = state {
            let result = SSL_do_handshake(ssl)
            if result == 1 {
                do {
                    state = .established(try finish())
                } catch {
                    state = .failed(error)
                    throw error
                }
                readApplicationData(into: &applicationData)
            } else {
                let reason = SSL_get_error(ssl, result)
                if reason != SSL_ERROR_WANT_READ && reason != SSL_ERROR_WANT_WRITE {
                    let error = DTLSError(.handshakeFailed, "the DTLS handshake failed", details: OpenSSLErrors.drain())
                    state = .failed(error)
                    throw error
                }
            }
        } else {
            // After the handshake: application data, or retransmitted handshake records OpenSSL answers itself.
            readApplicationData(into: &applicationData)
        }
        return outgoingDatagrams()
    }

    /// Reads every application data record buffered (one datagram may carry several).
    private func readApplicationData(into records: inout [[UInt8]]) {
        var scratch = [UInt8](repeating: 0, count: 16_384)
        while true {
            let read = SSL_read(ssl, &scratch, Int32(scratch.count))
            if read > 0 {
                records.append(Array(scratch[0..<Int(read)]))
                continue
            }
            if SSL_get_error(ssl, read) == SSL_ERROR_ZERO_RETURN { peerClosed = true }
            _ = OpenSSLErrors.drain()
            return
        }
    }

    /// What OpenSSL wrote, cut into datagrams on DTLS record boundaries (RFC 6347 §4.1: 13-byte header, length in
    /// its last two bytes), several records to a datagram up to the MTU.
    private func outgoingDatagrams() -> [[UInt8]] {
        let pending = sb_bio_pending(writeBIO)
        guard pending > 0 else { return [] }
        var bytes = [UInt8](repeating: 0, count: pending)
        let read = Int(BIO_read(writeBIO, &bytes, Int32(pending)))
        guard read > 0 else { return [] }
        var datagrams: [[UInt8]] = []
        var current: [UInt8] = []
        var offset = 0
        while offset + 13 <= read {
            let length = Int(bytes[offset + 11]) << 8 | Int(bytes[offset + 12])
            let end = min(read, offset + 13 + length)
            if !current.isEmpty && current.count + (end - offset) > configuration.mtu {
                datagrams.append(current)
                current = []
            }
            current += bytes[offset..<end]
            offset = end
        }
        if !current.isEmpty { datagrams.append(current) }
        return datagrams
    }

    private func finish() throws(DTLSError) -> SRTPKeyingMaterial {
        guard let peer = SSL_get0_peer_certificate(ssl) else {
            throw DTLSError(.missingCertificate, "the peer presented no certificate")
        }
        peerFingerprints = DTLSFingerprint.Algorithm.allCases.map { DTLSIdentity.fingerprint(of: peer, $0) }
        if let expected = configuration.remoteFingerprint {
            guard DTLSIdentity.fingerprint(of: peer, expected.algorithm).matches(expected) else {
                throw DTLSError(.fingerprintMismatch, "the peer's certificate does not match the signalled fingerprint")
            }
            isPeerVerified = true
        }
        let selected = sb_srtp_profile_id(ssl)
        guard let profile = SRTPProfile.allCases.first(where: { UInt(selected) == UInt($0.identifier) }) else {
            throw DTLSError(.noSRTPProfile, "no SRTP protection profile was negotiated")
        }
        var material = [UInt8](repeating: 0, count: profile.keyingMaterialLength)
        defer {
            // The exported secret is copied into the split keys; the buffer itself does not outlive this call.
            for index in material.indices { material[index] = 0 }
        }
        let label = "EXTRACTOR-dtls_srtp"
        guard SSL_export_keying_material(ssl, &material, material.count, label, label.utf8.count, nil, 0, 0) == 1 else {
            throw DTLSError(.libraryFailure, "keying material export failed", details: OpenSSLErrors.drain())
        }
        // RFC 5764 §4.2: client_write_key | server_write_key | client_write_salt | server_write_salt.
        let keyLength = profile.keyLength
        let saltLength = profile.saltLength
        let clientKey = Array(material[0..<keyLength])
        let serverKey = Array(material[keyLength..<2 * keyLength])
        let clientSalt = Array(material[2 * keyLength..<2 * keyLength + saltLength])
        let serverSalt = Array(material[2 * keyLength + saltLength..<2 * (keyLength + saltLength)])
        switch configuration.role {
        case .client:
            return SRTPKeyingMaterial(
                profile: profile, localKey: clientKey, localSalt: clientSalt, remoteKey: serverKey,
                remoteSalt: serverSalt)
        case .server:
            return SRTPKeyingMaterial(
                profile: profile, localKey: serverKey, localSalt: serverSalt, remoteKey: clientKey,
                remoteSalt: clientSalt)
        }
    }
}
