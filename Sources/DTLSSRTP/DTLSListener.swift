internal import COpenSSL
public import CertificateFingerprint

/// The server side of DTLS-SRTP facing the network: a stateless cookie exchange in front of server engines
/// (RFC 6347 §4.2.1), and a cap on handshakes in progress.
///
/// Every datagram from a peer that has no engine yet goes through ``receive(_:from:remoteFingerprint:now:)``. A
/// ClientHello without a valid cookie is answered with a HelloVerifyRequest carrying
/// `HMAC-SHA256(secret, peer address)` and nothing is kept, so a flood of spoofed ClientHellos costs no memory; only a
/// ClientHello that echoes the cookie, which proves the peer receives at the address it claims, gets a server
/// ``DTLSEngine`` (already fed that ClientHello). The secret is random, rotates every
/// ``Configuration/cookieSecretLifetime`` on the caller's clock, and cookies made with the previous secret still
/// pass. When ``Configuration/maximumHalfOpen`` engines handed out are still handshaking, verified ClientHellos are
/// dropped until one finishes, fails or passes its deadline (the client retransmits meanwhile).
///
/// One listening `SSL` (OpenSSL's `DTLSv1_listen`) serves every peer; all engines it hands out share one `SSL_CTX`.
/// Not thread-safe: drive it from one event loop.
public final class DTLSListener {
    public struct Configuration {
        public var identity: DTLSIdentity
        /// Accepted profiles, most preferred first.
        public var profiles: [SRTPProfile]
        public var mtu: Int
        public var initialRetransmitInterval: Duration
        public var handshakeTimeout: Duration
        /// Engines handed out that may be handshaking at once.
        public var maximumHalfOpen: Int
        /// How long one cookie secret is used; a cookie is valid for up to twice this.
        public var cookieSecretLifetime: Duration

        public init(
            identity: DTLSIdentity,
            profiles: [SRTPProfile] = [.aeadAES128GCM, .aes128CMHMACSHA1_80],
            mtu: Int = 1200,
            initialRetransmitInterval: Duration = .seconds(1),
            handshakeTimeout: Duration = .seconds(20),
            maximumHalfOpen: Int = 256,
            cookieSecretLifetime: Duration = .seconds(30)
        ) {
            self.identity = identity
            self.profiles = profiles
            self.mtu = mtu
            self.initialRetransmitInterval = initialRetransmitInterval
            self.handshakeTimeout = handshakeTimeout
            self.maximumHalfOpen = maximumHalfOpen
            self.cookieSecretLifetime = cookieSecretLifetime
        }
    }

    /// What to do with one datagram.
    public enum Outcome {
        /// Send these back to the peer (a HelloVerifyRequest); nothing was kept.
        case reply([[UInt8]])
        /// The peer echoed a valid cookie: this engine carries on its handshake; send these (the server's flight).
        case accepted(DTLSEngine, [[UInt8]])
        /// Nothing to send.
        case dropped(DropReason)
    }

    /// Why a datagram was dropped.
    public enum DropReason: Sendable, Hashable {
        /// Not a DTLS ClientHello (or malformed): silently ignored, as RFC 6347 §4.1.2.7 asks.
        case notClientHello
        /// A verified ClientHello while ``Configuration/maximumHalfOpen`` handshakes are in progress.
        case tooManyHalfOpen
    }

    public let configuration: Configuration
    private let context: OpaquePointer
    private var listening: (ssl: OpaquePointer, readBIO: OpaquePointer, writeBIO: OpaquePointer)
    private let cookies: CookieJar
    private let peerAddress: OpaquePointer
    private var handedOut: [WeakEngine] = []

    public init(_ configuration: Configuration) throws(DTLSError) {
        guard configuration.maximumHalfOpen > 0, configuration.cookieSecretLifetime > .zero else {
            throw DTLSError(.libraryFailure, "the half-open cap and the cookie lifetime must be positive")
        }
        try DTLSEngine.validate(profiles: configuration.profiles, mtu: configuration.mtu)
        self.configuration = configuration
        let context = try DTLSEngine.makeContext(identity: configuration.identity, profiles: configuration.profiles)
        self.context = context
        SSL_CTX_set_cookie_generate_cb(context) { ssl, cookie, length in
            guard let ssl, let cookie, let length, let jar = CookieJar.attached(to: ssl) else { return 0 }
            let value = jar.cookie(jar.current)
            value.withUnsafeBufferPointer { cookie.update(from: $0.baseAddress!, count: $0.count) }
            length.pointee = UInt32(value.count)
            return 1
        }
        SSL_CTX_set_cookie_verify_cb(context) { ssl, cookie, length in
            guard let ssl else { return 0 }
            if SSL_get_ex_data(ssl, cookieJarIndex) == CookieJar.alreadyVerified { return 1 }
            guard let cookie, let jar = CookieJar.attached(to: ssl) else { return 0 }
            let offered = UnsafeBufferPointer(start: cookie, count: Int(length))
            return jar.verify(offered) ? 1 : 0
        }
        guard let peerAddress = BIO_ADDR_new() else {
            SSL_CTX_free(context)
            throw DTLSError(.libraryFailure, "BIO_ADDR_new failed")
        }
        let cookies = CookieJar()
        do {
            listening = try Self.makeListeningSSL(context: context, configuration: configuration, cookies: cookies)
        } catch {
            BIO_ADDR_free(peerAddress)
            SSL_CTX_free(context)
            throw error
        }
        self.peerAddress = peerAddress
        self.cookies = cookies
    }

    deinit {
        SSL_free(listening.ssl)
        BIO_ADDR_free(peerAddress)
        SSL_CTX_free(context)
    }

    /// Engines handed out that are still handshaking and within their deadline at `now`.
    public func halfOpenCount(now: ContinuousClock.Instant = .now) -> Int {
        handedOut.removeAll { entry in
            guard let engine = entry.engine, case .handshaking = engine.state else { return true }
            if let startedAt = engine.startedAt, now - startedAt >= configuration.handshakeTimeout { return true }
            return false
        }
        return handedOut.count
    }

    /// Takes one datagram from `peer`, a peer that has no engine yet.
    /// - Parameters:
    ///   - peer: the peer's transport address as bytes (address and port, any stable encoding): the cookie is
    ///     bound to it.
    ///   - remoteFingerprint: the fingerprint this peer signalled in SDP, for the engine if one is handed out (nil
    ///     when its SDP has not arrived yet: see ``DTLSEngine/Configuration/remoteFingerprint``).
    public func receive(
        _ datagram: [UInt8], from peer: [UInt8], remoteFingerprint: DTLSFingerprint?,
        now: ContinuousClock.Instant = .now
    ) -> Outcome {
        // RFC 6347 §4.1: a record header is 13 bytes; a handshake record (content type 22) carries a ClientHello.
        guard datagram.count > 13, datagram[0] == 22 else { return .dropped(.notClientHello) }
        cookies.rotate(now: now, lifetime: configuration.cookieSecretLifetime)
        cookies.peer = peer
        defer { cookies.peer = [] }
        _ = sb_bio_reset(listening.readBIO)
        _ = sb_bio_reset(listening.writeBIO)
        _ = datagram.withUnsafeBytes { BIO_write(listening.readBIO, $0.baseAddress, Int32($0.count)) }
        let result = DTLSv1_listen(listening.ssl, peerAddress)
        _ = OpenSSLErrors.drain()
        guard result == 1 else {
            let reply = Self.pendingBytes(listening.writeBIO)
            return reply.isEmpty ? .dropped(.notClientHello) : .reply([reply])
        }
        guard halfOpenCount(now: now) < configuration.maximumHalfOpen else {
            // The next DTLSv1_listen clears the listening SSL, buffered ClientHello and all.
            return .dropped(.tooManyHalfOpen)
        }
        let verified = listening
        do {
            listening = try Self.makeListeningSSL(context: context, configuration: configuration, cookies: cookies)
        } catch {
            return .dropped(.notClientHello)
        }
        // OpenSSL checks the cookie again when the engine processes the buffered ClientHello (and any retransmission
        // of it); it was verified for this peer above.
        SSL_set_ex_data(verified.ssl, cookieJarIndex, CookieJar.alreadyVerified)
        let engine = DTLSEngine(
            takingOwnershipOf: verified.ssl, readBIO: verified.readBIO, writeBIO: verified.writeBIO,
            configuration: DTLSEngine.Configuration(
                role: .server, identity: configuration.identity, remoteFingerprint: remoteFingerprint,
                profiles: configuration.profiles, mtu: configuration.mtu,
                initialRetransmitInterval: configuration.initialRetransmitInterval,
                handshakeTimeout: configuration.handshakeTimeout))
        handedOut.append(WeakEngine(engine: engine))
        do {
            return .accepted(engine, try engine.start(now: now))
        } catch {
            return .accepted(engine, [])
        }
    }

    private static func makeListeningSSL(
        context: OpaquePointer, configuration: Configuration, cookies: CookieJar
    ) throws(DTLSError) -> (ssl: OpaquePointer, readBIO: OpaquePointer, writeBIO: OpaquePointer) {
        let made = try DTLSEngine.makeSSL(
            context: context, mtu: configuration.mtu,
            initialRetransmitInterval: configuration.initialRetransmitInterval)
        SSL_set_accept_state(made.ssl)
        SSL_set_ex_data(made.ssl, cookieJarIndex, Unmanaged.passUnretained(cookies).toOpaque())
        return made
    }

    private static func pendingBytes(_ bio: OpaquePointer) -> [UInt8] {
        let pending = sb_bio_pending(bio)
        guard pending > 0 else { return [] }
        var bytes = [UInt8](repeating: 0, count: pending)
        let read = Int(BIO_read(bio, &bytes, Int32(pending)))
        return read > 0 ? Array(bytes.prefix(read)) : []
    }
}

private let cookieJarIndex = sb_ssl_ex_new_index()

private struct WeakEngine {
    weak var engine: DTLSEngine?
}

/// The cookie secrets and the address of the peer whose datagram is being looked at; reached from OpenSSL's cookie
/// callbacks through the listening SSL's ex_data.
private final class CookieJar {
    private(set) var current: [UInt8] = randomSecret()
    private var previous: [UInt8]?
    private var rotatedAt: ContinuousClock.Instant?
    var peer: [UInt8] = []

    /// The ex_data of an SSL handed to an engine after its peer's cookie was verified.
    static var alreadyVerified: UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: 1)! }

    static func attached(to ssl: OpaquePointer) -> CookieJar? {
        guard let pointer = SSL_get_ex_data(ssl, cookieJarIndex), pointer != alreadyVerified else { return nil }
        return Unmanaged<CookieJar>.fromOpaque(pointer).takeUnretainedValue()
    }

    /// The time of the datagram being looked at.
    private var now: ContinuousClock.Instant?
    /// Until when cookies of the previous secret pass: one lifetime after it was retired, so a cookie lives at most
    /// two lifetimes whenever traffic comes.
    private var previousValidUntil: ContinuousClock.Instant?

    func rotate(now: ContinuousClock.Instant, lifetime: Duration) {
        self.now = now
        guard let rotatedAt else {
            rotatedAt = now
            return
        }
        guard now - rotatedAt >= lifetime else { return }
        // A secret unused for two lifetimes is too old to keep as the previous one.
        previous = now - rotatedAt >= lifetime * 2 ? nil : current
        previousValidUntil = rotatedAt + lifetime * 2
        current = Self.randomSecret()
        self.rotatedAt = now
    }

    /// HMAC-SHA256(secret, peer address).
    func cookie(_ secret: [UInt8]) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        _ = secret.withUnsafeBytes { key in
            peer.withUnsafeBytes { data in
                HMAC(
                    EVP_sha256(), key.baseAddress, Int32(key.count), data.bindMemory(to: UInt8.self).baseAddress,
                    data.count, &digest, &length)
            }
        }
        return digest
    }

    func verify(_ offered: UnsafeBufferPointer<UInt8>) -> Bool {
        var secrets = [current]
        if let previous, let now, let previousValidUntil, now < previousValidUntil { secrets.append(previous) }
        return secrets.contains { secret in
            let expected = cookie(secret)
            return offered.count == expected.count
                && CRYPTO_memcmp(offered.baseAddress, expected, expected.count) == 0
        }
    }

    private static func randomSecret() -> [UInt8] {
        var secret = [UInt8](repeating: 0, count: 32)
        if RAND_bytes(&secret, 32) != 1 {
            var generator = SystemRandomNumberGenerator()
            secret = secret.map { _ in generator.next() }
        }
        return secret
    }
}
