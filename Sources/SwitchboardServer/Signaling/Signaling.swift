import Crypto
import Foundation
import Logging
import Media
import MediaCore
import NIOCore
import Relay
import Store
import SwitchboardAPI
import SwitchboardCore
import Synchronization

/// The signaling plane of one node: transitions go to the call store, and the events it commits come back on the
/// store's bus to this node's SSE streams.
///
/// Every input runs through ``CallStore/apply(_:now:)``, which decides in the pure registry and commits the changed
/// calls with their events; what else a transition causes here (metrics, closing a secure-relay session) derives
/// from the returned events. Streams are this node's own: a stream hears the stored events addressed to its user
/// and device, and a `Last-Event-ID` resumes from the store, so a device may reconnect to any node of a cluster.
/// Nothing here waits on a stream: one that cannot take a frame is cut.
final class Signaling: Sendable {
    /// What a stream ticket stands for, as the store keeps it (by the hash of the ticket, never the ticket).
    struct Ticket: Codable, Sendable {
        let user: String
        let isAdmin: Bool
        /// The token's device claim.
        let tokenDevice: String?
        /// The device the ticket was asked for.
        let device: String?

        var identity: Identity { Identity(user: user, isAdmin: isAdmin, device: tokenDevice) }
    }

    private struct State {
        var users: [String: [String: EventStream]] = [:]
        var watchers: [Int: EventStream] = [:]
        var nextSerial = 0
        var openStreams = 0
        var nextHeartbeat: Date
        var nextPrune: Date
        var shuttingDown = false
        var draining = false
    }

    let configuration: ServerConfiguration
    let metrics: SignalingMetrics
    let clock: @Sendable () -> Date
    let store: any CallStore
    private let state: Mutex<State>

    /// The secure relay's media endpoint, when this server runs one.
    let media: MediaServer?
    /// The TURN relay in this process, when there is one: a call that ends ends its call-scoped allocations.
    let relay: RelayServer?
    /// Requests this node carried to another node's media endpoint, waiting for their replies.
    let forwarding = MediaForwarding()

    init(
        configuration: ServerConfiguration, metrics: SignalingMetrics, media: MediaServer? = nil,
        relay: RelayServer? = nil, store: any CallStore, clock: @escaping @Sendable () -> Date
    ) {
        self.configuration = configuration
        self.media = media
        self.relay = relay
        self.metrics = metrics
        self.clock = clock
        self.store = store
        let now = clock()
        self.state = Mutex(
            State(
                nextHeartbeat: now.addingTimeInterval(configuration.heartbeatInterval),
                nextPrune: now.addingTimeInterval(1)))
        store.bus.subscribe { [weak self] events in self?.deliver(events) }
    }

    /// The registry's limits as this server's configuration sets them.
    static func registryConfiguration(_ configuration: ServerConfiguration) -> CallRegistry.Configuration {
        CallRegistry.Configuration(ringTimeout: configuration.ringTimeout)
    }

    // MARK: Calls

    /// The media path of a new call: the operator's policy, or the caller's choice (`direct` when absent).
    func mediaPath(requested: MediaPath?) -> MediaPath {
        switch configuration.mediaPolicy {
        case .direct: .direct
        case .secureRelay: .secureRelay
        case .callerChoice: requested ?? .direct
        }
    }

    func invite(
        _ identity: Identity, device: String, to callee: String, offer: SessionDescription?,
        media requested: MediaPath? = nil
    ) async throws(CallError) -> Call {
        let id = Self.makeCallID()
        let path = mediaPath(requested: requested)
        if configuration.mediaPolicy == .direct, requested == .secureRelay {
            throw CallError(.mediaUnavailable, "this server sends every call direct (--media direct)")
        }
        guard path == .secureRelay else {
            return try await transition(
                .invite(id: id, caller: identity.user, device: device, callee: callee, offer: offer, media: .direct))
        }
        // Secure relay: the caller's offer is checked as it came, then the callee gets Switchboard's offer.
        guard let media else { throw CallError(.mediaUnavailable, "this server runs no secure media relay") }
        guard let offer, offer.type == .offer else {
            throw CallError(.badRequest, "a secure-relay call needs the caller's sdp offer")
        }
        try SDPKeyingCheck.validate(offer.sdp, as: .offer)
        let prepared = try Self.mapped { () throws(MediaError) in try media.prepare(callerOffer: offer.sdp) }
        let calleeOffer = SessionDescription(type: .offer, sdp: prepared.calleeOffer)
        // Open before the invite is committed: a callee device may accept as soon as it hears it.
        media.open(id, prepared)
        do {
            return try await transition(
                .invite(
                    id: id, caller: identity.user, device: device, callee: callee, offer: calleeOffer,
                    media: .secureRelay, mediaNode: configuration.nodeID))
        } catch {
            media.close(id)
            throw error
        }
    }

    static func mapped<T>(_ body: () throws(MediaError) -> T) throws(CallError) -> T {
        do {
            return try body()
        } catch {
            switch error.code {
            case .unavailable: throw CallError(.mediaUnavailable, error.message)
            case .noSession, .conflict: throw CallError(.invalidTransition, error.message)
            default: throw CallError(.unsupportedSDP, error.message)
            }
        }
    }

    /// A secure-relay leg failed: the call ends `failed` with the reason.
    func mediaFailed(_ id: String, _ failure: MediaFailure) {
        Task { _ = try? await apply(.fail(id: id, failure: failure.rawValue)) }
    }

    /// The secure relay's legs of a call, for `GET /v1/calls/{id}`: from this node's media endpoint, or asked of
    /// the node that holds them (nil if it does not answer).
    func mediaLegs(_ call: Call) async -> [MediaLegJSON]? {
        guard call.media == .secureRelay else { return nil }
        if let node = remoteMediaNode(of: call) {
            guard call.state != .ended else { return nil }
            let request = MediaRequest(
                id: Base64URL.random(bytes: 12), from: configuration.nodeID, operation: .legs, callID: call.id,
                user: call.caller, device: call.callerDevice, sdp: nil)
            return try? await forward(request, to: node).legs
        }
        return media?.snapshot(call.id)?.map(MediaLegJSON.init)
    }

    /// The node holding a secure-relay call's legs, when it is another node.
    private func remoteMediaNode(of call: Call) -> String? {
        guard let node = call.mediaNode, node != configuration.nodeID else { return nil }
        return node
    }

    func ring(_ id: String, _ identity: Identity, device: String) async throws(CallError) -> Call {
        try await transition(.ring(id: id, user: identity.user, device: device))
    }

    /// Accepts a call. A direct call's accept goes straight to the store; the registry refuses a secure-relay
    /// call's answer that the media endpoint did not write (``CallError/Code/needsMediaRelay``), and only then is
    /// the call read, to send the answer through this node's media endpoint or the one of the node holding the
    /// call's legs. `forwarded` when another node carried the accept here: it is not carried on again.
    func accept(
        _ id: String, _ identity: Identity, device: String, answer: SessionDescription?, forwarded: Bool = false
    )
        async throws(CallError) -> Call
    {
        do {
            return try await transition(.accept(id: id, user: identity.user, device: device, answer: answer))
        } catch {
            guard error.code == .needsMediaRelay else { throw error }
        }
        guard let call = try await store.call(id) else { throw CallError(.callNotFound, "no call \(id)") }
        // Secure relay: the callee's answer is checked as it came; the caller gets Switchboard's answer.
        guard let answer, answer.type == .answer else {
            throw CallError(.badRequest, "accepting a secure-relay call needs the callee's sdp answer")
        }
        if let node = remoteMediaNode(of: call), !forwarded {
            // The legs live on another node's media endpoint: the accept runs there, and the result is read back.
            let request = MediaRequest(
                id: Base64URL.random(bytes: 12), from: configuration.nodeID, operation: .accept, callID: id,
                user: identity.user, device: device, sdp: answer.sdp)
            try await forward(request, to: node)
            guard let accepted = try await store.call(id) else { throw CallError(.callNotFound, "no call \(id)") }
            return accepted
        }
        guard let media, remoteMediaNode(of: call) == nil else {
            throw CallError(.mediaUnavailable, "this server runs no secure media relay")
        }
        try SDPKeyingCheck.validate(answer.sdp, as: .answer)
        let prepared = try Self.mapped { () throws(MediaError) in
            try media.prepareAnswer(id, calleeAnswer: answer.sdp)
        }
        let accepted = try await transition(
            .accept(
                id: id, user: identity.user, device: device,
                answer: SessionDescription(type: .answer, sdp: prepared.callerAnswer), relayed: true))
        media.commitAnswer(id, prepared.calleeRemote)
        return accepted
    }

    func decline(_ id: String, _ identity: Identity, device: String) async throws(CallError) -> Call {
        try await transition(.decline(id: id, user: identity.user, device: device))
    }

    func hangup(_ id: String, _ identity: Identity, device: String) async throws(CallError) -> Call {
        try await transition(.hangup(id: id, user: identity.user, device: device))
    }

    /// Routes a signal straight to the store (the registry keeps a secure-relay call's candidates from the other
    /// party). Only a secure-relay call's offer or answer, which the registry refuses as it came
    /// (``CallError/Code/needsMediaRelay``), reads the call, to have the media endpoint rewrite it here or on the
    /// node holding the call's legs.
    func signal(_ signal: Signal, forwarded: Bool = false) async throws(CallError) {
        do {
            _ = try await apply(.signal(signal))
            return
        } catch {
            guard error.code == .needsMediaRelay else { throw error }
        }
        guard let call = try await store.call(signal.callID) else {
            throw CallError(.callNotFound, "no call \(signal.callID)")
        }
        if let node = remoteMediaNode(of: call), !forwarded {
            let request = MediaRequest(
                id: Base64URL.random(bytes: 12), from: configuration.nodeID,
                operation: signal.kind == .offer ? .offer : .answer, callID: call.id, user: signal.fromUser,
                device: signal.fromDevice, sdp: signal.sdp)
            try await forward(request, to: node)
            return
        }
        try await secureRelayRenegotiation(signal, call: call)
    }

    /// An offer or answer in a secure-relay call. Switchboard is each party's peer: a mid-call offer goes to the
    /// other party as Switchboard's offer over that party's leg, and its answer comes back as Switchboard's answer.
    private func secureRelayRenegotiation(_ signal: Signal, call: Call) async throws(CallError) {
        guard call.state == .active else {
            throw CallError(.invalidTransition, "a secure-relay call renegotiates only once it is answered")
        }
        guard let media, remoteMediaNode(of: call) == nil else {
            throw CallError(.mediaUnavailable, "this server runs no secure media relay")
        }
        // The party's own signal is checked (who may signal, the SDP's keying) before the media session sees it.
        var check = CallRegistry(configuration: Self.registryConfiguration(configuration), calls: [call])
        _ = try check.signal(
            Signal(
                callID: signal.callID, fromUser: signal.fromUser, fromDevice: signal.fromDevice, kind: signal.kind,
                sdp: signal.sdp, relayed: true),
            now: clock())
        let party: MediaLeg.Party = signal.fromUser == call.caller ? .caller : .callee
        let sdp = signal.sdp ?? ""
        let rewritten = try Self.mapped { () throws(MediaError) in
            signal.kind == .offer
                ? try media.reoffer(call.id, from: party, sdp: sdp) : try media.reanswer(call.id, from: party, sdp: sdp)
        }
        _ = try await apply(
            .signal(
                Signal(
                    callID: signal.callID, fromUser: signal.fromUser, fromDevice: signal.fromDevice, kind: signal.kind,
                    sdp: rewritten, relayed: true)))
    }

    func call(_ id: String, for identity: Identity) async throws(CallError) -> Call {
        guard let call = try await store.call(id), identity.isAdmin || call.isParty(identity.user) else {
            throw CallError(.callNotFound, "no call \(id)")
        }
        return call
    }

    func calls(for identity: Identity, states: Set<CallState>?, before: HistoryCursor?, limit: Int)
        async throws(CallError) -> [Call]
    {
        try await store.calls(of: identity.isAdmin ? nil : identity.user, states: states, before: before, limit: limit)
    }

    func callCounts() async throws(CallError) -> [CallState: Int] {
        try await store.countsByState()
    }

    /// Runs an input whose result is a call.
    private func transition(_ input: CallInput) async throws(CallError) -> Call {
        let applied = try await apply(input)
        guard let call = applied.call else { throw CallError(.callNotFound, "no such call") }
        return call
    }

    /// Runs an input in the store, then counts what its events mean (the bus delivers them, and closes the media
    /// session of a secure-relay call that ended on whichever node holds it).
    private func apply(_ input: CallInput) async throws(CallError) -> Applied {
        let started = ContinuousClock.now
        let applied: Applied
        do {
            applied = try await store.apply(input, now: clock())
        } catch {
            if error.code == .storeUnavailable { metrics.storeFailures.increment() }
            throw error
        }
        metrics.recordStoreLatency(ContinuousClock.now - started)
        for event in applied.events {
            switch event.kind {
            case .accepted: metrics.callSetups.increment()
            case .ended:
                if let reason = event.call.endReason { metrics.callEnded(reason) }
            default: break
            }
        }
        return applied
    }

    // MARK: Events

    /// The envelopes a call event is stored as: one per recipient, plus one for admin watchers of a lifecycle
    /// change (with the call as the event left it).
    @Sendable static func envelopes(for event: CallEvent) -> [Envelope] {
        var envelopes = event.deliveries.map { delivery in
            Envelope(
                user: delivery.user, devices: delivery.devices, name: delivery.event.name, callID: event.callID,
                data: payload(of: delivery.event))
        }
        if case .signal = event.kind {
        } else {
            envelopes.append(
                Envelope(
                    user: Envelope.watchers, devices: .all, name: event.name, callID: event.callID,
                    data: JSON.encode(CallEventJSON(call: CallJSON(event.call), sdp: nil))))
        }
        return envelopes
    }

    static func payload(of event: DeviceEvent) -> [UInt8] {
        switch event {
        case .invite(let call, let offer): JSON.encode(CallEventJSON(call: CallJSON(call), sdp: offer))
        case .accepted(let call, let answer): JSON.encode(CallEventJSON(call: CallJSON(call), sdp: answer))
        case .ringing(let call), .ended(let call): JSON.encode(CallEventJSON(call: CallJSON(call), sdp: nil))
        case .signal(let signal): JSON.encode(SignalEventJSON(signal))
        }
    }

    static func frame(_ event: StoredEvent) -> ByteBuffer {
        SSE.event(id: String(event.id), name: event.envelope.name, bytes: event.envelope.data)
    }

    /// Hands events from the store's bus to the streams they address; a call that ended closes its media session
    /// here (if this node holds it) and the relay allocations scoped to it (every node's relay sees every event),
    /// and messages to this node go to the media forwarding.
    private func deliver(_ events: [StoredEvent]) {
        let own = MediaForwarding.address(of: configuration.nodeID)
        for event in events where event.envelope.user.hasPrefix("@") {
            guard event.envelope.user == own else { continue }
            receive(event.envelope)
        }
        state.withLock { state in
            for event in events where !event.envelope.user.hasPrefix("@") {
                let frame = Self.frame(event)
                let user = event.envelope.user
                if user == Envelope.watchers {
                    for (serial, stream) in state.watchers where push(frame, id: event.id, to: stream) == false {
                        state.watchers[serial] = nil
                    }
                    continue
                }
                guard var streams = state.users[user] else { continue }
                for (device, stream) in streams where event.envelope.devices.includes(device) {
                    if !push(frame, id: event.id, to: stream) { streams[device] = nil }
                }
                state.users[user] = streams.isEmpty ? nil : streams
            }
        }
        let ended = CallScopedRelay.endedCalls(in: events)
        if let media { for id in ended { media.close(id) } }
        if let relay { for id in ended { relay.endCall(id) } }
    }

    // MARK: Media on another node

    /// Carries a request to the node holding a call's media legs and waits for its reply; that node's refusal
    /// comes back as its error, and silence (the node is gone) as `media_unavailable`.
    @discardableResult
    private func forward(_ request: MediaRequest, to node: String) async throws(CallError) -> MediaReply {
        let envelope = Envelope(
            user: MediaForwarding.address(of: node), devices: .all, name: MediaForwarding.requestName,
            callID: request.callID, data: JSON.encode(request))
        forwarding.sent(request.id)
        do {
            _ = try await store.append([envelope], now: clock())
        } catch {
            forwarding.giveUp(request.id)
            throw error
        }
        guard let reply = await forwarding.reply(to: request.id, timeout: configuration.mediaForwardingTimeout) else {
            metrics.mediaForwardingTimeouts.increment()
            throw CallError(.mediaUnavailable, "node \(node), which holds this call's media, did not answer")
        }
        if let failure = reply.failure {
            // A code this node does not know (a newer node's) reads as the media being unavailable.
            throw CallError(CallError.Code(rawValue: failure.code) ?? .mediaUnavailable, failure.message)
        }
        return reply
    }

    /// A message addressed to this node: a request to run here, or a reply this node waits for.
    private func receive(_ envelope: Envelope) {
        let decoder = JSONDecoder()
        switch envelope.name {
        case MediaForwarding.replyName:
            if let reply = try? decoder.decode(MediaReply.self, from: Data(envelope.data)) {
                forwarding.answered(reply)
            }
        case MediaForwarding.requestName:
            guard let request = try? decoder.decode(MediaRequest.self, from: Data(envelope.data)) else { return }
            Task { await self.run(request) }
        default:
            break
        }
    }

    /// Runs another node's request as if it had come here, and sends the reply back.
    private func run(_ request: MediaRequest) async {
        var reply = MediaReply(id: request.id)
        do throws(CallError) {
            let identity = Identity(user: request.user)
            switch request.operation {
            case .accept:
                _ = try await accept(
                    request.callID, identity, device: request.device,
                    answer: request.sdp.map { SessionDescription(type: .answer, sdp: $0) }, forwarded: true)
            case .offer, .answer:
                try await signal(
                    Signal(
                        callID: request.callID, fromUser: request.user, fromDevice: request.device,
                        kind: request.operation == .offer ? .offer : .answer, sdp: request.sdp),
                    forwarded: true)
            case .legs:
                reply.legs = media?.snapshot(request.callID)?.map(MediaLegJSON.init)
            }
        } catch {
            reply.failure = MediaReply.Failure(code: error.code.rawValue, message: error.message)
        }
        let envelope = Envelope(
            user: MediaForwarding.address(of: request.from), devices: .all, name: MediaForwarding.replyName,
            callID: request.callID, data: JSON.encode(reply))
        _ = try? await store.append([envelope], now: clock())
    }

    /// Secure-relay calls whose legs were on this node's media endpoint before it started cannot go on: their
    /// sessions died with the process. They end `failed` (`media_node_restarted`). On a store no other node
    /// shares, that is every live secure-relay call.
    func endStrandedMediaCalls() async throws(CallError) {
        var cursor: HistoryCursor?
        let pageSize = 200
        while true {
            let page = try await store.calls(
                of: nil, states: [.inviting, .ringing, .active], before: cursor, limit: pageSize)
            for call in page where call.media == .secureRelay {
                guard !store.isShared || call.mediaNode == configuration.nodeID else { continue }
                _ = try await apply(.fail(id: call.id, failure: Self.mediaNodeRestarted))
            }
            guard page.count == pageSize, let last = page.last else { return }
            cursor = HistoryCursor(last)
        }
    }

    /// The failure of a secure-relay call whose media node restarted under it.
    static let mediaNodeRestarted = "media_node_restarted"

    /// Queues a frame; false when the stream is gone (and was cut now, if it overflowed).
    private func push(_ frame: ByteBuffer, id: Int64, to stream: EventStream) -> Bool {
        switch stream.enqueue(frame, id: id) {
        case .queued:
            metrics.sseEventsSent.increment()
            return true
        case .ended:
            return false
        case .overflowed:
            metrics.sseSlowReadersDropped.increment()
            return false
        }
    }

    // MARK: Streams

    enum OpenResult {
        case opened(EventStream)
        case shuttingDown
        case tooManyStreams
        case storeUnavailable
    }

    /// Registers a stream for `identity` on `device` and queues what it must see first: `retry`, `hello`, then
    /// either the events after `lastEventID`, or `resync` when they are gone, or (on a fresh connection) the
    /// invites still pending for this user. Events published meanwhile wait behind that and are not repeated.
    func openStream(
        _ identity: Identity,
        device: String,
        lastEventID: String?,
        watchAll: Bool,
        channel: (any Channel)?
    ) async -> OpenResult {
        let registered = state.withLock { state -> EventStream? in
            guard !state.shuttingDown else { return nil }
            var streams = state.users[identity.user] ?? [:]
            if !watchAll, streams[device] == nil, streams.count >= configuration.maxStreamsPerUser { return nil }
            state.nextSerial += 1
            let stream = EventStream(
                serial: state.nextSerial, user: identity.user, device: device, watchesAll: watchAll, channel: channel,
                maxFrames: configuration.streamBufferFrames, maxBytes: configuration.streamBufferBytes)
            state.openStreams += 1
            metrics.sseStreamsOpen.record(state.openStreams)
            if watchAll {
                state.watchers[stream.serial] = stream
                return stream
            }
            if let previous = streams[device] {
                previous.finish(
                    .superseded, final: SSE.event(id: nil, name: "superseded", data: StreamNoticeJSON.superseded))
            }
            streams[device] = stream
            state.users[identity.user] = streams
            return stream
        }
        guard let stream = registered else {
            return state.withLock { $0.shuttingDown } ? .shuttingDown : .tooManyStreams
        }
        do throws(CallError) {
            try await catchUp(stream, identity, device: device, lastEventID: lastEventID, watchAll: watchAll)
            return .opened(stream)
        } catch {
            stream.finish(.finished, final: nil)
            closeStream(stream)
            return .storeUnavailable
        }
    }

    private func catchUp(
        _ stream: EventStream, _ identity: Identity, device: String, lastEventID: String?, watchAll: Bool
    ) async throws(CallError) {
        let retry = SSE.retry(configuration.retryMilliseconds)
        let hello = HelloJSON(user: identity.user, device: device)
        if watchAll {
            let head = try await store.events(for: Envelope.watchers, after: .max, limit: 0).head
            stream.catchUp(
                first: [retry, SSE.event(id: String(head), name: "hello", data: hello)], replay: [], after: head)
            return
        }
        // A resume: the events the device missed, if the store still has all of them and the stream holds them.
        if let lastEventID, let lastID = Int64(lastEventID) {
            let limit = configuration.backlogSize + 1
            let page = try await store.events(for: identity.user, after: lastID, limit: limit)
            if case .replay(let missed) = EventHub.resume(after: lastID, page: page, device: device, limit: limit) {
                let frames = missed.map { (id: $0.id, frame: Self.frame($0)) }
                if frames.count + 3 <= configuration.streamBufferFrames,
                    frames.reduce(0, { $0 + $1.frame.readableBytes }) + 4096 <= configuration.streamBufferBytes
                {
                    stream.catchUp(
                        first: [retry, SSE.event(id: lastEventID, name: "hello", data: hello)], replay: frames,
                        after: lastID)
                    return
                }
            }
        }
        // A fresh start (or a resync): the pending invites, stored again for this device so that a resume right
        // after them does not lose them.
        let head = try await store.events(for: identity.user, after: .max, limit: 0).head
        var first = [retry, SSE.event(id: String(head), name: "hello", data: hello)]
        if lastEventID != nil {
            metrics.sseResyncs.increment()
            first.append(SSE.event(id: String(head), name: "resync", data: EmptyJSON()))
        }
        let budget = max(0, configuration.streamBufferFrames - 3)
        let pending = try await store.pendingInvites(to: identity.user).suffix(budget)
        let invites = pending.map { call in
            Envelope(
                user: identity.user, devices: .only(device), name: "call.invite", callID: call.id,
                data: Self.payload(of: .invite(call, offer: call.offer)))
        }
        let stored = invites.isEmpty ? [] : try await store.append(invites, now: clock())
        stream.catchUp(first: first, replay: stored.map { (id: $0.id, frame: Self.frame($0)) }, after: head)
    }

    /// Forgets a stream whose response ended.
    func closeStream(_ stream: EventStream) {
        stream.finish(.finished, final: nil)
        guard stream.markForgotten() else { return }
        state.withLock { state in
            if stream.watchesAll {
                state.watchers[stream.serial] = nil
            } else if state.users[stream.user]?[stream.device] === stream {
                state.users[stream.user]?[stream.device] = nil
                if state.users[stream.user]?.isEmpty == true { state.users[stream.user] = nil }
            }
            state.openStreams -= 1
            metrics.sseStreamsOpen.record(state.openStreams)
        }
    }

    /// The devices of `user` with an open stream on this node.
    func onlineDevices(of user: String) -> [String] {
        state.withLock { state in (state.users[user]?.keys).map { Array($0).sorted() } ?? [] }
    }

    // MARK: Tickets

    /// A single-use ticket for `GET /v1/events`, kept in the store so that any node of a cluster can take it.
    func issueTicket(for identity: Identity, device: String?) async throws(CallError) -> String {
        let ticket = Base64URL.random(bytes: 24)
        let payload = Ticket(
            user: identity.user, isAdmin: identity.isAdmin, tokenDevice: identity.device, device: device)
        try await store.storeTicket(
            Self.ticketHash(ticket), JSON.encode(payload),
            expires: clock().addingTimeInterval(configuration.ticketLifetime))
        return ticket
    }

    /// Takes a ticket: it works once, before it expires, on any node.
    func redeemTicket(_ ticket: String) async -> Ticket? {
        guard let payload = try? await store.redeemTicket(Self.ticketHash(ticket), now: clock()) else { return nil }
        return try? JSONDecoder().decode(Ticket.self, from: Data(payload))
    }

    /// Tickets are kept by their SHA-256: a copy of the store holds nothing that opens a stream.
    static func ticketHash(_ ticket: String) -> String {
        SHA256.hash(data: Data(ticket.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    // MARK: Time and shutdown

    /// Runs the timers: ring timeouts, heartbeats, ticket expiry and the store's pruning. Returns when it next
    /// needs to run.
    @discardableResult
    func tick() async -> Date {
        let now = clock()
        var deadline = try? await store.nextDeadline()
        if let due = deadline, due <= now {
            _ = try? await apply(.expire)
            deadline = try? await store.nextDeadline()
        }
        let prune = state.withLock { state -> Bool in
            if now >= state.nextHeartbeat {
                state.nextHeartbeat = now.addingTimeInterval(configuration.heartbeatInterval)
                broadcast(SSE.comment("heartbeat"), &state)
            }
            guard now >= state.nextPrune else { return false }
            state.nextPrune = now.addingTimeInterval(configuration.pruneInterval)
            return true
        }
        if prune {
            try? await store.prune(
                eventsBefore: now.addingTimeInterval(-configuration.backlogTTL),
                callsEndedBefore: now.addingTimeInterval(-configuration.historyRetention), ticketsExpiredBefore: now)
            if let counts = try? await store.countsByState() { metrics.setCallCounts(counts) }
        }
        var next = state.withLock { min($0.nextHeartbeat, $0.nextPrune) }
        if let deadline { next = min(next, deadline) }
        return next
    }

    /// Queues `frame` on every open stream; a stream that cannot take it is cut and forgotten.
    private func broadcast(_ frame: ByteBuffer, _ state: inout State) {
        for (name, var streams) in state.users {
            for (device, stream) in streams where stream.enqueue(frame) != .queued {
                if stream.ending == .slowReader { metrics.sseSlowReadersDropped.increment() }
                streams[device] = nil
            }
            state.users[name] = streams.isEmpty ? nil : streams
        }
        for (serial, stream) in state.watchers where stream.enqueue(frame) != .queued {
            state.watchers[serial] = nil
        }
    }

    /// Whether this node is draining (`--drain-timeout`): it places no new call.
    var isDraining: Bool { state.withLock { $0.draining } }

    /// Starts a drain: new calls are refused from now on, and every open stream hears `reconnect` (a client behind
    /// a balancer reconnects to another node; one that stays keeps its stream until the drain ends).
    func beginDrain() {
        state.withLock { state in
            state.draining = true
            broadcast(SSE.event(id: nil, name: "reconnect", data: StreamNoticeJSON.draining), &state)
        }
    }

    /// Whether calls this node carries are still under way: with a store of its own (memory, SQLite), any call
    /// not ended; with a shared one, a call whose secure-relay legs are here or a party of which has a stream
    /// here (read a page at a time, newest first, until one is found). A store that cannot answer counts as calls
    /// under way: the drain waits for it, up to its timeout.
    func callsInProgress() async -> Bool {
        let shared = if case .postgres = configuration.store { true } else { false }
        let local = shared ? state.withLock { Set($0.users.keys) } : []
        // A store of its own answers with its first call; a shared one a page at a time.
        let pageSize = shared ? 500 : 1
        var before: HistoryCursor?
        while true {
            guard
                let page = try? await store.calls(
                    of: nil, states: [.inviting, .ringing, .active], before: before, limit: pageSize)
            else { return true }
            if page.contains(where: {
                !shared || $0.mediaNode == configuration.nodeID || local.contains($0.caller)
                    || local.contains($0.callee)
            }) {
                return true
            }
            guard page.count == pageSize, let last = page.last else { return false }
            before = HistoryCursor(last)
        }
    }

    /// Sends every open stream a final `shutdown` event and ends it; new streams are refused from now on.
    func shutdown() {
        state.withLock { state in
            state.shuttingDown = true
            let frame = SSE.event(id: nil, name: "shutdown", data: StreamNoticeJSON.shutdown)
            for streams in state.users.values {
                for stream in streams.values { stream.finish(.finished, final: frame) }
            }
            for stream in state.watchers.values { stream.finish(.finished, final: frame) }
        }
    }

    static func makeCallID() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567".utf8)
        var generator = SystemRandomNumberGenerator()
        return "c"
            + String(decoding: (0..<20).map { _ in alphabet[Int.random(in: 0..<32, using: &generator)] }, as: UTF8.self)
    }
}

struct HelloJSON: Encodable {
    let user: String
    let device: String
}

struct EmptyJSON: Encodable {}

/// The data of the events that tell a stream it ends or should move: `superseded`, `reconnect` and `shutdown`.
struct StreamNoticeJSON: Encodable {
    let reason: String
    /// Whether the client should open a new stream.
    let reconnect: Bool

    static let superseded = StreamNoticeJSON(reason: "another stream opened for this device", reconnect: false)
    static let draining = StreamNoticeJSON(reason: "server draining", reconnect: true)
    static let shutdown = StreamNoticeJSON(reason: "server shutting down", reconnect: true)
}

/// Server-Sent Events framing (HTML Living Standard §9.2).
enum SSE {
    /// An event; without an `id`, the stream's last event id stays as it was.
    static func event(id: String?, name: String, data: some Encodable) -> ByteBuffer {
        event(id: id, name: name, bytes: JSON.encode(data))
    }

    static func event(id: String?, name: String, bytes: [UInt8]) -> ByteBuffer {
        var buffer = ByteBuffer()
        if let id { buffer.writeString("id: \(id)\n") }
        buffer.writeString("event: \(name)\ndata: ")
        buffer.writeBytes(bytes)
        buffer.writeString("\n\n")
        return buffer
    }

    static func comment(_ text: String) -> ByteBuffer {
        ByteBuffer(string: ": \(text)\n\n")
    }

    static func retry(_ milliseconds: Int) -> ByteBuffer {
        ByteBuffer(string: "retry: \(milliseconds)\n\n")
    }
}
