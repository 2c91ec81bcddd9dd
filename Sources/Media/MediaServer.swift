import CertificateFingerprint
public import CoreMetrics
public import DTLSSRTP
public import DatagramPump
import Foundation
public import Logging
public import MediaCore
import NIOConcurrencyHelpers
public import NIOCore
import NIOPosix
public import STUN
public import ServiceLifecycle

/// Where the secure relay's media endpoint listens and what it tells parties.
public struct MediaServerConfiguration: Sendable {
    /// The address the UDP socket binds to.
    public var host: String
    /// Its port; 0 picks a free one.
    public var port: Int
    /// The addresses put in host candidates; nil advertises `host` (which must then not be a wildcard).
    public var advertisedAddresses: [IPAddress]?
    /// How long both legs have, after the answer, to complete ICE and DTLS.
    public var setupTimeout: Duration
    /// A leg with no consent check for this long is gone (RFC 7675 §5.1).
    public var consentTimeout: Duration
    /// DTLS handshakes in progress at once (the listener's half-open cap).
    public var maximumHalfOpen: Int

    public init(
        host: String = "127.0.0.1", port: Int = 3479, advertisedAddresses: [IPAddress]? = nil,
        setupTimeout: Duration = .seconds(20), consentTimeout: Duration = .seconds(30), maximumHalfOpen: Int = 256
    ) {
        self.host = host
        self.port = port
        self.advertisedAddresses = advertisedAddresses
        self.setupTimeout = setupTimeout
        self.consentTimeout = consentTimeout
        self.maximumHalfOpen = maximumHalfOpen
    }
}

/// A caller's offer turned into the callee's: what ``MediaServer/open(_:_:)`` needs once the call exists.
public struct PreparedMediaSession: Sendable {
    public let callerRemote: RemoteTransport
    public let callerLocal: ICECredentials
    public let calleeLocal: ICECredentials
    /// The offer the callee gets: the caller's media sections over Switchboard's transport.
    public let calleeOffer: String
    let origin: UInt64
}

/// One leg as the API shows it.
public struct MediaLegSnapshot: Sendable, Hashable {
    public let party: MediaLeg.Party
    public let ice: MediaLeg.ICEState
    public let dtls: MediaLeg.DTLSState
    public let srtpProfile: String?
    public let fingerprintVerified: Bool
    public let counters: MediaCounters
}

/// The secure relay: one UDP port on which Switchboard is the ICE-lite, DTLS-SRTP peer of every party of every
/// secure-relay call, demultiplexed as RFC 7983 says (STUN → the leg's ICE-lite agent, DTLS → the leg's engine
/// behind one ``DTLSListener``, SRTP/SRTCP → the leg's sessions).
///
/// Every RTP and RTCP packet of one leg is unprotected with that leg's keys — a forgery or a replay is dropped and
/// counted — and protected again with the other leg's keys, SSRCs, sequence numbers and header extensions
/// unchanged. DTLS application data (SCTP of data channels) passes from one leg's DTLS into the other's as is.
/// Nothing is forwarded to or from a leg before its DTLS handshake completed with a certificate that matches the
/// fingerprint its own SDP signalled; a mismatch, a setup that does not complete in time or lost consent fails the
/// session, reported through `onFailure` (never while the caller's own lock is held: always from the event loop).
///
/// The pure parts (ICE-lite agent, leg states, SDP rewriting) are `MediaCore`'s; this class holds the OpenSSL and
/// libsrtp objects and the tables, behind one lock (taken once per read batch), so signaling can call it from any
/// thread. The socket is a ``DatagramPump``'s: batched `recvmmsg`/`sendmmsg` on its own thread, and RTP is
/// unprotected and protected again in the read slot it arrived in, then sent from there (no copy, no allocation).
public final class MediaServer: Service, DatagramHandler, @unchecked Sendable {
    public let configuration: MediaServerConfiguration
    /// The certificate of every leg; its SHA-256 fingerprint goes in every SDP Switchboard writes.
    public let identity: DTLSIdentity
    let eventLoop: any EventLoop
    let logger: Logger
    private let lock = NIOLock()
    // Everything below is guarded by `lock`.
    private var pump: DatagramPump?
    private var advertised: [TransportAddress] = []
    private var sessions: [String: Box] = [:]
    private var byUfrag: [String: Route] = [:]
    private var byAddress: [TransportAddress: Route] = [:]
    /// Addresses of torn-down legs, for a while: their packets count as `after_hangup`.
    private var tombstones: [TransportAddress: ContinuousClock.Instant] = [:]
    private var listener: DTLSListener
    /// Drops and counts not tied to a leg since the last metrics flush (plus the last counts of legs torn down).
    private var tally = MediaCounters()
    /// Drops not tied to a leg since start, for ``unattributedDrops()``.
    private var unattributed: [DropCause: Int] = [:]
    private var onFailure: @Sendable (String, MediaFailure) -> Void = { _, _ in }
    private let metrics: MediaMetrics
    private let bound = MediaReadiness()

    static let tombstoneLifetime: Duration = .seconds(60)

    /// Stops routing `addresses` to `box`'s call (one that moved to another call keeps its route). Under `lock`.
    private func unroute(_ addresses: [TransportAddress], of box: Box) {
        for address in addresses where byAddress[address]?.box === box { byAddress[address] = nil }
    }

    private struct Route {
        let box: Box
        let party: MediaLeg.Party
        var callID: String { box.session.callID }
    }

    private struct Renegotiation {
        let from: MediaLeg.Party
        let remote: RemoteTransport
        /// New local credentials for the offering leg when its offer restarts ICE.
        let restart: ICECredentials?
        /// The offer comes from a new peer connection of the party's (a page reloaded mid-call): a new certificate
        /// and new ICE credentials. Its leg starts over once the other party answered: new ICE, a new DTLS
        /// association verified against the new fingerprint, new SRTP keys.
        let rejoin: Bool
        /// An offer the other party never answers is forgotten after ``renegotiationTimeout``.
        let at: ContinuousClock.Instant
    }

    static let renegotiationTimeout: Duration = .seconds(20)
    /// A validated address moves to another leg only when its leg has had no valid check for this long (a spoofed
    /// check with another leg's credentials cannot take a live party's address).
    static let addressMoveAfter: Duration = .seconds(10)

    /// One value per leg.
    private struct PerParty<Value> {
        var caller: Value
        var callee: Value

        subscript(party: MediaLeg.Party) -> Value {
            get { party == .caller ? caller : callee }
            set {
                if party == .caller { caller = newValue } else { callee = newValue }
            }
        }
    }

    /// The mutable, non-Sendable state of one session (OpenSSL and libsrtp objects), only touched under `lock`.
    private final class Box {
        var session: MediaSession
        var engines = PerParty<DTLSEngine?>(caller: nil, callee: nil)
        var inbound = PerParty<SRTPSession?>(caller: nil, callee: nil)
        var outbound = PerParty<SRTPSession?>(caller: nil, callee: nil)
        var handshakeStarted = PerParty<ContinuousClock.Instant?>(caller: nil, callee: nil)
        /// The address each leg's DTLS handshake came from.
        var engineSource = PerParty<TransportAddress?>(caller: nil, callee: nil)
        /// Torn down: packets still routed here count as after hangup and nothing is forwarded.
        var closed = false
        let origin: UInt64
        /// The `o=` version of the last SDP each party got from Switchboard.
        var versions = PerParty<UInt64>(caller: 2, callee: 2)
        /// A party's mid-call offer that went to the other party, waiting for its answer.
        var renegotiation: Renegotiation?
        /// Every local ufrag this session used (an ICE restart adds one), for the routing table.
        var ufrags: [String] = []

        /// The `o=` session id of what `party` gets.
        func originID(_ party: MediaLeg.Party) -> UInt64 { party == .callee ? origin : origin &+ 1 }

        init(session: MediaSession, origin: UInt64) {
            self.session = session
            self.origin = origin
        }

        /// A leg, changed in place (no copy of its arrays and counters).
        @inline(__always)
        func withLeg<Result>(_ party: MediaLeg.Party, _ body: (inout MediaLeg) -> Result) -> Result {
            switch party {
            case .caller: body(&session.caller)
            case .callee: body(&session.callee)
            }
        }
    }

    public init(
        configuration: MediaServerConfiguration, eventLoop: (any EventLoop)? = nil,
        metricsFactory: (any MetricsFactory)? = nil, logger: Logger = Logger(label: "switchboard.media")
    ) throws {
        self.configuration = configuration
        self.eventLoop = eventLoop ?? MultiThreadedEventLoopGroup.singleton.next()
        self.logger = logger
        identity = try DTLSIdentity.generate(.ecdsaP256, commonName: "switchboard", validityDays: 30)
        listener = try DTLSListener(
            .init(identity: identity, maximumHalfOpen: configuration.maximumHalfOpen))
        metrics = MediaMetrics(factory: metricsFactory ?? MetricsSystem.factory)
    }

    /// Sets where failures go (the signaling plane ends the call `failed`).
    public func setFailureHandler(_ handler: @escaping @Sendable (String, MediaFailure) -> Void) {
        lock.withLock { onFailure = handler }
    }

    /// The bound port, once ``run()`` has bound it.
    public func boundPort() async throws -> Int { try await bound.wait() }

    public func run() async throws {
        let pump: DatagramPump
        do {
            pump = try DatagramPump(host: configuration.host, port: configuration.port)
        } catch {
            bound.fail(error)
            throw error
        }
        let local = pump.localAddress
        let addresses = configuration.advertisedAddresses ?? [local.ip]
        lock.withLock {
            self.pump = pump
            self.advertised = addresses.map { TransportAddress(ip: $0, port: local.port) }
        }
        pump.start(self)
        logger.info(
            "secure media relay listening",
            metadata: ["address": "\(local)", "fingerprint": "\(identity.fingerprint())"])
        bound.succeed(Int(local.port))
        let (stopped, stop) = AsyncStream<Void>.makeStream()
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                for await _ in stopped {}
            } onGracefulShutdown: {
                stop.finish()
            }
        } onCancel: {
            stop.finish()
        }
        pump.stop()
        lock.withLock {
            sessions.removeAll()
            byUfrag.removeAll()
            byAddress.removeAll()
            flushMetrics()
        }
    }

    // MARK: Signaling's side

    /// Reads the caller's offer and writes the callee's (nothing is kept until ``open(_:_:)``).
    public func prepare(callerOffer: String) throws(MediaError) -> PreparedMediaSession {
        let candidates = lock.withLock { advertised }
        guard !candidates.isEmpty else { throw MediaError(.unavailable, "the media endpoint is not listening yet") }
        let remote = try SDPRewriter.remoteTransport(of: callerOffer, setups: ["actpass", "active"])
        let callerLocal = ICECredentials.random()
        let calleeLocal = ICECredentials.random()
        let origin = UInt64.random(in: 1...UInt64(Int64.max))
        let offer = try SDPRewriter.rewrite(
            callerOffer,
            local: LocalTransport(
                credentials: calleeLocal, fingerprint: identity.fingerprint().sdpValue, candidates: candidates),
            setup: "actpass", origin: (origin, 2))
        return PreparedMediaSession(
            callerRemote: remote, callerLocal: callerLocal, calleeLocal: calleeLocal, calleeOffer: offer,
            origin: origin)
    }

    /// The call exists: its legs start listening for checks.
    public func open(_ callID: String, _ prepared: PreparedMediaSession) {
        let session = MediaSession(
            callID: callID,
            caller: MediaLeg(party: .caller, local: prepared.callerLocal, remote: prepared.callerRemote),
            callee: MediaLeg(party: .callee, local: prepared.calleeLocal, remote: nil))
        lock.withLock {
            let box = Box(session: session, origin: prepared.origin)
            box.ufrags = [prepared.callerLocal.ufrag, prepared.calleeLocal.ufrag]
            sessions[callID] = box
            byUfrag[prepared.callerLocal.ufrag] = Route(box: box, party: .caller)
            byUfrag[prepared.calleeLocal.ufrag] = Route(box: box, party: .callee)
        }
    }

    /// Reads the callee's answer and writes the caller's (Switchboard answers `passive`); nothing changes until
    /// ``commitAnswer(_:_:)``.
    public func prepareAnswer(_ callID: String, calleeAnswer: String) throws(MediaError) -> (
        callerAnswer: String, calleeRemote: RemoteTransport
    ) {
        let remote = try SDPRewriter.remoteTransport(of: calleeAnswer, setups: ["active"])
        let found = lock.withLock { () -> (ICECredentials, [TransportAddress], UInt64)? in
            guard let box = sessions[callID] else { return nil }
            return (box.session.caller.ice.local, advertised, box.origin)
        }
        guard let (local, candidates, origin) = found else {
            throw MediaError(.noSession, "the call has no media session")
        }
        let answer = try SDPRewriter.rewrite(
            calleeAnswer,
            local: LocalTransport(
                credentials: local, fingerprint: identity.fingerprint().sdpValue, candidates: candidates),
            setup: "passive", origin: (origin &+ 1, 2))
        return (answer, remote)
    }

    /// The callee accepted: its transport is known, and the setup deadline starts. A callee whose handshake
    /// already completed (Chrome's order) has its certificate checked now.
    public func commitAnswer(_ callID: String, _ calleeRemote: RemoteTransport) {
        let now = ContinuousClock.now
        let failure = lock.withLock { () -> MediaFailure? in
            guard let box = sessions[callID] else { return nil }
            // Checks and a handshake from another of the callee's devices (before the answer said which device
            // answered) are forgotten: the answering device's own checks and handshake take the leg.
            let others = box.session.callee.learn(calleeRemote)
            unroute(others, of: box)
            if let source = box.engineSource.callee, others.contains(source) {
                box.engines.callee = nil
                box.engineSource.callee = nil
                box.inbound.callee = nil
                box.outbound.callee = nil
                box.session.callee.dtlsState = .new
            }
            box.session.answered(now: now)
            return verifyIfPossible(box, .callee)
        }
        if let failure { report(callID, failure) }
    }

    /// A party's offer mid-call (renegotiation, RFC 3264 §8): the other party gets Switchboard's offer made from it,
    /// over that party's leg. An offer with new ICE credentials restarts ICE on the offering party's leg only:
    /// Switchboard's answer to it will carry new credentials too. The DTLS association stays; an offer with a new
    /// certificate is a rejoin (the party's new peer connection, after a page reload) and must come with new ICE
    /// credentials too (a new certificate on the same ICE session is refused): its leg starts over when the answer
    /// comes, and the other party's leg carries on untouched.
    public func reoffer(_ callID: String, from party: MediaLeg.Party, sdp: String) throws(MediaError) -> String {
        let remote = try SDPRewriter.remoteTransport(of: sdp, setups: ["actpass", "active"])
        return try locked { () throws(MediaError) -> String in
            guard let box = sessions[callID] else { throw MediaError(.noSession, "the call has no media session") }
            let current = box.session[party].remote?.credentials
            let rejoin = try Self.isRejoin(box.session[party].remote, remote)
            // The other party's offer waiting for an answer: glare, this one is refused (its sender rolls back). The
            // same party offering again replaces its own, and so does a rejoin the other party's: the page that
            // would have answered it is gone.
            if let pending = box.renegotiation, pending.from != party, !rejoin {
                throw MediaError(.conflict, "an offer from the other party is waiting for its answer on this call")
            }
            let restart = current == remote.credentials ? nil : ICECredentials.random()
            let other = party.other
            let offer = try SDPRewriter.rewrite(
                sdp,
                local: LocalTransport(
                    credentials: box.session[other].ice.local, fingerprint: identity.fingerprint().sdpValue,
                    candidates: advertised),
                setup: "actpass", origin: (box.originID(other), box.versions[other] + 1))
            box.versions[other] += 1
            box.renegotiation = Renegotiation(
                from: party, remote: remote, restart: restart, rejoin: rejoin, at: .now)
            // The old peer connection sends no more consent checks: the leg gets a consent period from now for the
            // other party to answer (it starts over then; without an answer it loses consent as before).
            if rejoin { box.withLeg(party) { $0.refreshConsent(now: .now) } }
            return offer
        }
    }

    /// The other party's answer to a mid-call offer: the offering party gets Switchboard's answer made from it (with
    /// new ICE credentials after a restart), and both legs take the new descriptions. A leg whose party rejoined (its
    /// offer, or its answer, from a new peer connection) starts over.
    public func reanswer(_ callID: String, from party: MediaLeg.Party, sdp: String) throws(MediaError) -> String {
        let remote = try SDPRewriter.remoteTransport(of: sdp, setups: ["active"])
        return try locked { () throws(MediaError) -> String in
            guard let box = sessions[callID] else { throw MediaError(.noSession, "the call has no media session") }
            guard let pending = box.renegotiation, pending.from == party.other else {
                throw MediaError(.conflict, "no offer from the other party is waiting for this answer")
            }
            // An answer from a new peer connection (a new certificate and new ICE credentials: the party could not
            // take the offer on its old one, e.g. Firefox refusing extension ids the rejoining party's offer changed)
            // starts its own leg over too, on Switchboard's same credentials for it.
            let answererRejoins = try Self.isRejoin(box.session[party].remote, remote)
            let offering = pending.from
            let answer = try SDPRewriter.rewrite(
                sdp,
                local: LocalTransport(
                    credentials: pending.restart ?? box.session[offering].ice.local,
                    fingerprint: identity.fingerprint().sdpValue, candidates: advertised),
                setup: "passive", origin: (box.originID(offering), box.versions[offering] + 1))
            box.versions[offering] += 1
            box.renegotiation = nil
            var gone: [TransportAddress]
            if answererRejoins {
                gone = startOver(party, of: box, local: box.session[party].ice.local, remote: remote)
            } else {
                gone = box.withLeg(party) { $0.learn(remote) }
            }
            if pending.rejoin, let restart = pending.restart {
                for old in [box.session[offering].ice, box.session[offering].previousICE].compactMap(\.self) {
                    byUfrag[old.local.ufrag] = nil
                }
                gone += startOver(offering, of: box, local: restart, remote: pending.remote)
                byUfrag[restart.ufrag] = Route(box: box, party: offering)
                box.ufrags.append(restart.ufrag)
            } else if let restart = pending.restart {
                box.withLeg(offering) { $0.restartICE(local: restart, remote: pending.remote) }
                byUfrag[restart.ufrag] = Route(box: box, party: offering)
                box.ufrags.append(restart.ufrag)
            } else {
                gone += box.withLeg(offering) { $0.learn(pending.remote) }
            }
            unroute(gone, of: box)
            return answer
        }
    }

    /// A leg whose party is on a new peer connection (a rejoin, in its offer or its answer) starts over with `local`
    /// and the party's new `remote`: its ICE state, DTLS engine and SRTP sessions go, and a new handshake must match
    /// the new fingerprint before anything is forwarded again. Returns the addresses the old leg had validated.
    /// Under `lock`.
    private func startOver(
        _ party: MediaLeg.Party, of box: Box, local: ICECredentials, remote: RemoteTransport
    ) -> [TransportAddress] {
        let gone = box.session.rejoin(party, local: local, remote: remote, now: .now)
        box.engines[party] = nil
        box.inbound[party] = nil
        box.outbound[party] = nil
        box.handshakeStarted[party] = nil
        box.engineSource[party] = nil
        logger.info(
            "a party is on a new peer connection: its leg starts over",
            metadata: ["call": "\(box.session.callID)", "leg": "\(party.rawValue)"])
        return gone
    }

    /// `body` under the lock, with its typed error.
    private func locked<T>(_ body: () throws(MediaError) -> T) throws(MediaError) -> T {
        let result = lock.withLock { () -> Result<T, MediaError> in
            do throws(MediaError) {
                return .success(try body())
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// Whether a party's mid-call offer or answer is a rejoin: a new certificate, which needs new ICE credentials as well (a
    /// new peer connection has both; a new certificate on the same ICE session is refused).
    private static func isRejoin(_ current: RemoteTransport?, _ new: RemoteTransport) throws(MediaError) -> Bool {
        guard let current else { return false }
        let old = try? DTLSFingerprint.parse(current.fingerprint)
        let next = try? DTLSFingerprint.parse(new.fingerprint)
        guard let old, let next else {
            throw MediaError(.unsupportedSDP, "the SDP's DTLS fingerprint cannot be read")
        }
        if old == next { return false }
        guard current.credentials.ufrag != new.credentials.ufrag else {
            throw MediaError(
                .unsupportedSDP,
                "a new DTLS certificate needs new ICE credentials (a new peer connection): restart ICE with it")
        }
        return true
    }

    /// Tears both legs down (hangup, decline, timeout, failure): nothing is forwarded for the call from now on.
    public func close(_ callID: String) {
        let now = ContinuousClock.now
        lock.withLock {
            guard let box = sessions.removeValue(forKey: callID) else { return }
            box.closed = true
            for ufrag in box.ufrags { byUfrag[ufrag] = nil }
            // Every address routed to the call, also ones its legs no longer list.
            for (address, route) in byAddress where route.box === box {
                byAddress[address] = nil
                tombstones[address] = now
            }
            for party in MediaLeg.Party.allCases {
                let leg = box.session[party]
                // What the leg counted since the last flush still reaches the metrics.
                let key = "\(callID)/\(party.rawValue)"
                tally.add(leg.counters, since: reported.removeValue(forKey: key) ?? MediaCounters())
            }
        }
    }

    /// Both legs of a call, for the API.
    public func snapshot(_ callID: String) -> [MediaLegSnapshot]? {
        lock.withLock {
            guard let box = sessions[callID] else { return nil }
            return MediaLeg.Party.allCases.map { party in
                let leg = box.session[party]
                return MediaLegSnapshot(
                    party: party, ice: leg.iceState, dtls: leg.dtlsState, srtpProfile: leg.srtpProfile,
                    fingerprintVerified: leg.fingerprintVerified, counters: leg.counters)
            }
        }
    }

    /// Datagrams dropped before they could be tied to a leg, by cause (the rest are in each leg's counters).
    public func unattributedDrops() -> [DropCause: Int] {
        lock.withLock { unattributed }
    }

    private func dropUnattributed(_ cause: DropCause) {
        tally.drop(cause)
        unattributed[cause, default: 0] += 1
    }

    // MARK: Datagrams (on the pump's thread)

    public func receive(_ batch: inout DatagramBatch) {
        let now = ContinuousClock.now
        var failures: [(String, MediaFailure)] = []
        lock.withLock {
            for datagram in batch.datagrams {
                guard datagram.length > 0, !datagram.truncated else {
                    dropUnattributed(.malformed)
                    continue
                }
                let buffer = batch.buffer(datagram.slot)
                switch PacketClass(firstByte: buffer[0]) {
                case .stun:
                    stun(Array(buffer[0..<datagram.length]), from: datagram.source, now: now, batch: &batch)
                case .dtls:
                    dtls(
                        Array(buffer[0..<datagram.length]), from: datagram.source, now: now, batch: &batch,
                        failures: &failures)
                case .rtpOrRTCP:
                    media(slot: datagram.slot, length: datagram.length, from: datagram.source, batch: &batch)
                default:
                    dropUnattributed(.malformed)
                }
            }
        }
        for (callID, failure) in failures { report(callID, failure) }
    }

    public func dropped(writes: Int) {
        lock.withLock { tally.drop(.congested, count: writes) }
    }

    private func route(_ source: TransportAddress) -> Route? {
        guard let route = byAddress[source] else {
            dropUnattributed(tombstones[source] != nil ? .afterHangup : .unknownSource)
            return nil
        }
        guard !route.box.closed else {
            dropUnattributed(.afterHangup)
            return nil
        }
        guard route.box.withLeg(route.party, { $0.accepts(source) }) else {
            byAddress[source] = nil
            dropUnattributed(.unknownSource)
            return nil
        }
        return route
    }

    private func stun(
        _ bytes: [UInt8], from source: TransportAddress, now: ContinuousClock.Instant, batch: inout DatagramBatch
    ) {
        guard let message = try? STUNMessage(decoding: bytes) else {
            dropUnattributed(.malformed)
            return
        }
        // Responses and indications need no answer from an ICE-lite agent (a client's keepalive indications).
        guard message.type.messageClass == .request else { return }
        guard let ufrag = ICELiteResponder.localUfrag(of: message), let route = byUfrag[ufrag] else {
            logger.debug("ICE check for no leg", metadata: ["source": "\(source)"])
            dropUnattributed(tombstones[source] != nil ? .afterHangup : .unknownSource)
            return
        }
        let box = route.box
        if let previous = byAddress[source], previous.box !== box || previous.party != route.party {
            // One 5-tuple belongs to one leg. Another leg's valid check proves only that its sender knows that
            // leg's password, not that it owns the address: the address moves only off a leg that has had no valid
            // check for a while (a party gone, its port reused for a new call) or that failed.
            let stale = previous.box.withLeg(previous.party) { leg in
                leg.lastCheck.map { now - $0 >= Self.addressMoveAfter } ?? true
            }
            guard stale || previous.box.session.failure != nil || previous.box.closed else {
                box.withLeg(route.party) { $0.counters.drop(.stunRefused) }
                return
            }
            previous.box.withLeg(previous.party) { $0.forget(source) }
            byAddress[source] = nil
        }
        switch box.withLeg(route.party, { $0.check(message, from: source, now: now) }) {
        case .answered(let response, _):
            unroute(box.withLeg(route.party, { $0.evicted }).map { [$0] } ?? [], of: box)
            if byAddress[source] == nil {
                logger.debug(
                    "ICE check validated a source",
                    metadata: ["call": "\(route.callID)", "leg": "\(route.party.rawValue)", "source": "\(source)"])
            }
            byAddress[source] = route
            tombstones[source] = nil
            batch.send(response, to: source)
        case .refused(let response, let code):
            logger.debug(
                "ICE check refused",
                metadata: [
                    "call": "\(route.callID)", "leg": "\(route.party.rawValue)", "code": "\(code)",
                    "source": "\(source)",
                ])
            batch.send(response, to: source)
        case .ignored:
            break
        }
    }

    private func dtls(
        _ bytes: [UInt8], from source: TransportAddress, now: ContinuousClock.Instant, batch: inout DatagramBatch,
        failures: inout [(String, MediaFailure)]
    ) {
        guard let route = route(source) else { return }
        let box = route.box
        let party = route.party
        box.withLeg(party) {
            $0.counters.packetsIn += 1
            $0.counters.bytesIn += bytes.count
        }
        if let engine = box.engines[party] {
            do {
                let wasHandshaking = !engine.isEstablished
                let received = try engine.process(bytes, now: now)
                for datagram in received.datagrams { batch.send(datagram, to: source) }
                if wasHandshaking && engine.isEstablished {
                    if let failure = established(box, party, engine, now: now) {
                        failures.append((box.session.callID, failure))
                        return
                    }
                }
                for record in received.applicationData {
                    forwardApplicationData(record, from: party, in: box, batch: &batch)
                }
            } catch {
                box.withLeg(party) { $0.dtlsState = .failed }
                let failure: MediaFailure = error.code == .fingerprintMismatch ? .fingerprintMismatch : .dtlsFailed
                if let failure = box.session.fail(failure) { failures.append((box.session.callID, failure)) }
            }
            return
        }
        let remote = box.session[party].remote.flatMap { try? DTLSFingerprint.parse($0.fingerprint) }
        switch listener.receive(bytes, from: Self.addressBytes(source), remoteFingerprint: remote, now: now) {
        case .reply(let datagrams):
            for datagram in datagrams { batch.send(datagram, to: source) }
        case .accepted(let engine, let datagrams):
            box.engines[party] = engine
            box.engineSource[party] = source
            box.handshakeStarted[party] = now
            box.withLeg(party) { $0.dtlsState = .handshaking }
            for datagram in datagrams { batch.send(datagram, to: source) }
            if engine.isEstablished, let failure = established(box, party, engine, now: now) {
                failures.append((box.session.callID, failure))
            }
        case .dropped(let reason):
            // Chrome's post-quantum ClientHello spans two records: its second fragment lands here before the
            // cookie exchange hands out an engine (the exchange itself works from the first fragment).
            logger.debug(
                "DTLS datagram dropped by the listener",
                metadata: ["call": "\(box.session.callID)", "leg": "\(party.rawValue)", "reason": "\(reason)"])
            box.withLeg(party) { $0.counters.drop(.dtls) }
        }
    }

    /// A leg's handshake completed: its SRTP sessions exist from now on; it forwards once its certificate is
    /// verified (now, or when its SDP arrives).
    private func established(
        _ box: Box, _ party: MediaLeg.Party, _ engine: DTLSEngine, now: ContinuousClock.Instant
    ) -> MediaFailure? {
        guard case .established(let material) = engine.state else { return nil }
        box.withLeg(party) {
            $0.dtlsState = .established
            $0.srtpProfile = material.profile.openSSLName
        }
        if let started = box.handshakeStarted[party] { metrics.recordHandshake(now - started) }
        do {
            let (outbound, inbound) = try material.makeSessions(allowRepeatTransmission: true)
            box.outbound[party] = outbound
            box.inbound[party] = inbound
        } catch {
            box.withLeg(party) { $0.dtlsState = .failed }
            return box.session.fail(.dtlsFailed)
        }
        return verifyIfPossible(box, party)
    }

    /// Checks a leg's certificate against its SDP's fingerprint once both are there.
    private func verifyIfPossible(_ box: Box, _ party: MediaLeg.Party) -> MediaFailure? {
        guard let engine = box.engines[party], engine.isEstablished, !box.session[party].fingerprintVerified,
            let remote = box.session[party].remote
        else { return nil }
        guard let expected = try? DTLSFingerprint.parse(remote.fingerprint), engine.verifyPeer(expected) else {
            box.withLeg(party) { $0.dtlsState = .failed }
            return box.session.fail(.fingerprintMismatch)
        }
        box.withLeg(party) { $0.fingerprintVerified = true }
        return nil
    }

    private func forwardApplicationData(
        _ record: [UInt8], from party: MediaLeg.Party, in box: Box, batch: inout DatagramBatch
    ) {
        let other = party.other
        guard box.session.failure == nil, box.withLeg(party, { $0.isForwarding }),
            box.withLeg(other, { $0.isForwarding }), let engine = box.engines[other],
            let destination = box.withLeg(other, { $0.destination })
        else {
            box.withLeg(party) { $0.counters.drop(.notReady) }
            return
        }
        guard let datagrams = try? engine.write(record) else {
            box.withLeg(party) { $0.counters.drop(.dtls) }
            return
        }
        for datagram in datagrams {
            batch.send(datagram, to: destination)
            box.withLeg(other) {
                $0.counters.packetsOut += 1
                $0.counters.bytesOut += datagram.count
            }
        }
    }

    /// One SRTP or SRTCP packet: unprotected with its leg's keys and protected with the other leg's, in its read
    /// slot, then sent from there.
    private func media(slot: Int, length: Int, from source: TransportAddress, batch: inout DatagramBatch) {
        guard let route = route(source) else { return }
        let box = route.box
        let party = route.party
        let other = party.other
        box.withLeg(party) {
            $0.counters.packetsIn += 1
            $0.counters.bytesIn += length
        }
        guard box.session.failure == nil, box.withLeg(party, { $0.isForwarding }),
            let destination = box.withLeg(other, { $0.isForwarding ? $0.destination : nil }),
            let inbound = box.inbound[party], let outbound = box.outbound[other]
        else {
            box.withLeg(party) { $0.counters.drop(.notReady) }
            return
        }
        let buffer = batch.buffer(slot)
        // RFC 5761 §4: RTCP packet types 192–223 in the second byte.
        let rtcp = length > 1 && (192...223).contains(buffer[1])
        let plain: Int
        do {
            plain =
                try rtcp ? inbound.unprotectRTCP(buffer, length: length) : inbound.unprotectRTP(buffer, length: length)
        } catch {
            box.withLeg(party) {
                switch error.code {
                case .authenticationFailed: $0.counters.drop(.authentication)
                case .replayed: $0.counters.drop(.replay)
                default: $0.counters.drop(.malformed)
                }
            }
            return
        }
        let protected: Int
        do {
            protected =
                try rtcp ? outbound.protectRTCP(buffer, length: plain) : outbound.protectRTP(buffer, length: plain)
        } catch {
            box.withLeg(party) { $0.counters.drop(error.code == .replayed ? .replay : .malformed) }
            return
        }
        box.withLeg(other) {
            $0.counters.packetsOut += 1
            $0.counters.bytesOut += protected
        }
        batch.send(slot: slot, length: protected, to: destination)
    }

    // MARK: Timers

    private var lastMetrics = ContinuousClock.now

    public func tick(_ batch: inout DatagramBatch) {
        let now = ContinuousClock.now
        var failures: [(String, MediaFailure)] = []
        lock.withLock {
            for box in sessions.values {
                for party in MediaLeg.Party.allCases {
                    guard let engine = box.engines[party], !engine.isEstablished,
                        let delay = engine.retransmissionDelay, delay < DatagramPump.tickInterval
                    else { continue }
                    do {
                        let datagrams = try engine.handleTimeout(now: now)
                        if let destination = box.withLeg(party, { $0.destination }) {
                            for datagram in datagrams { batch.send(datagram, to: destination) }
                        }
                    } catch {
                        box.withLeg(party) { $0.dtlsState = .failed }
                        if let failure = box.session.fail(.dtlsFailed) {
                            failures.append((box.session.callID, failure))
                        }
                    }
                }
                if let pending = box.renegotiation, now - pending.at >= Self.renegotiationTimeout {
                    box.renegotiation = nil
                }
                if let failure = box.session.evaluate(
                    now: now, setupTimeout: configuration.setupTimeout, consentTimeout: configuration.consentTimeout)
                {
                    failures.append((box.session.callID, failure))
                }
            }
            tombstones = tombstones.filter { now - $0.value < Self.tombstoneLifetime }
            if now - lastMetrics >= .seconds(1) {
                lastMetrics = now
                flushMetrics()
            }
        }
        for (callID, failure) in failures { report(callID, failure) }
    }

    /// Adds the counters since the last flush to swift-metrics (legs' counters are cumulative: only their growth).
    private var reported: [String: MediaCounters] = [:]

    private func flushMetrics() {
        var total = tally
        tally = MediaCounters()
        var states: [String: Int] = [:]
        var seen: [String: MediaCounters] = [:]
        for box in sessions.values {
            for party in MediaLeg.Party.allCases {
                let leg = box.session[party]
                let key = "\(box.session.callID)/\(party.rawValue)"
                let before = reported[key] ?? MediaCounters()
                total.packetsIn += leg.counters.packetsIn - before.packetsIn
                total.bytesIn += leg.counters.bytesIn - before.bytesIn
                total.packetsOut += leg.counters.packetsOut - before.packetsOut
                total.bytesOut += leg.counters.bytesOut - before.bytesOut
                for (cause, count) in leg.counters.drops {
                    total.drop(cause, count: count - (before.drops[cause] ?? 0))
                }
                seen[key] = leg.counters
                let state: String
                if leg.dtlsState == .failed {
                    state = "failed"
                } else if leg.isForwarding {
                    state = "forwarding"
                } else {
                    state = leg.iceState.rawValue
                }
                states[state, default: 0] += 1
            }
        }
        reported = seen
        total.drops = total.drops.filter { $0.value > 0 }
        metrics.record(total, legs: states)
    }

    private func report(_ callID: String, _ failure: MediaFailure) {
        let handler = lock.withLock { onFailure }
        logger.notice("secure relay leg failed", metadata: ["call": "\(callID)", "failure": "\(failure.rawValue)"])
        eventLoop.execute { handler(callID, failure) }
    }

    static func addressBytes(_ address: TransportAddress) -> [UInt8] {
        address.ip.bytes + [UInt8(address.port >> 8), UInt8(address.port & 0xFF)]
    }
}

/// Resolves once the socket is bound.
final class MediaReadiness: Sendable {
    private let state = NIOLockedValueBox<
        (port: Int?, error: (any Error)?, waiters: [CheckedContinuation<Int, any Error>])
    >(
        (nil, nil, []))

    func wait() async throws -> Int {
        try await withCheckedThrowingContinuation { continuation in
            state.withLockedValue { state in
                if let port = state.port {
                    continuation.resume(returning: port)
                } else if let error = state.error {
                    continuation.resume(throwing: error)
                } else {
                    state.waiters.append(continuation)
                }
            }
        }
    }

    func succeed(_ port: Int) {
        let waiters = state.withLockedValue { state in
            state.port = port
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: port) }
    }

    func fail(_ error: any Error) {
        let waiters = state.withLockedValue { state in
            state.error = error
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(throwing: error) }
    }
}
