import DequeModule
import Foundation
import Logging
import Media
import MediaCore
import NIOCore
import SwitchboardCore
import Synchronization

/// The signaling plane's state: the call registry and the SSE hub behind one lock, so that event ids follow the
/// order of transitions exactly.
///
/// Every input runs the pure ``CallRegistry`` and then carries out its deliveries: each becomes one SSE frame with
/// a fresh id, kept in the addressed user's bounded backlog and queued on the addressed devices' streams. Nothing
/// here waits: a stream that cannot take a frame is cut.
final class Signaling: Sendable {
    struct Ticket: Sendable {
        let identity: Identity
        let device: String?
        let expires: Date
    }

    private struct BacklogEntry {
        let seq: UInt64
        let devices: Delivery.Devices
        let frame: ByteBuffer
        let at: Date
    }

    private struct UserStreams {
        var streams: [String: EventStream] = [:]
        var backlog = Deque<BacklogEntry>()
        var backlogBytes = 0
        /// The highest event id no longer in the backlog: a resume from before it needs a `resync`.
        var evictedThrough: UInt64
        /// When a stream of this user was last open; a backlog is kept only for users seen within its TTL.
        var lastSeen: Date?

        init(evictedThrough: UInt64) {
            self.evictedThrough = evictedThrough
        }

        /// Keeps an event for resumption, forgetting the oldest past `maxCount` events or `maxBytes`.
        mutating func keep(_ entry: BacklogEntry, maxCount: Int, maxBytes: Int) {
            backlog.append(entry)
            backlogBytes += entry.frame.readableBytes
            while backlog.count > maxCount || backlogBytes > maxBytes { evictOldest() }
        }

        mutating func evictOldest() {
            guard let evicted = backlog.popFirst() else { return }
            evictedThrough = evicted.seq
            backlogBytes -= evicted.frame.readableBytes
        }
    }

    private struct State {
        var registry: CallRegistry
        var seq: UInt64 = 0
        var users: [String: UserStreams] = [:]
        var watchers: [Int: EventStream] = [:]
        var nextSerial = 0
        var openStreams = 0
        var tickets: [String: Ticket] = [:]
        /// Every event id up to this one was in a backlog that has since been dropped with its user entry: a new
        /// entry starts from here, so a resume from before it resyncs instead of silently skipping events.
        var prunedThrough: UInt64 = 0
        var nextHeartbeat: Date
        var nextPrune: Date
        var shuttingDown = false
    }

    let configuration: ServerConfiguration
    let metrics: SignalingMetrics
    let clock: @Sendable () -> Date
    /// Distinguishes this process's event ids from another's, so a `Last-Event-ID` from before a restart resyncs.
    let epoch: String
    private let state: Mutex<State>

    /// The secure relay's media endpoint, when this server runs one.
    let media: MediaServer?

    init(
        configuration: ServerConfiguration, metrics: SignalingMetrics, media: MediaServer? = nil,
        clock: @escaping @Sendable () -> Date
    ) {
        self.configuration = configuration
        self.media = media
        self.metrics = metrics
        self.clock = clock
        self.epoch = String(UInt32.random(in: 0x1000_0000...UInt32.max), radix: 36)
        let now = clock()
        let registry = CallRegistry(
            configuration: .init(ringTimeout: configuration.ringTimeout))
        self.state = Mutex(
            State(
                registry: registry, nextHeartbeat: now.addingTimeInterval(configuration.heartbeatInterval),
                nextPrune: now.addingTimeInterval(1)))
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
    ) throws(CallError) -> Call {
        let id = Self.makeCallID()
        let path = mediaPath(requested: requested)
        if configuration.mediaPolicy == .direct, requested == .secureRelay {
            throw CallError(.mediaUnavailable, "this server sends every call direct (--media direct)")
        }
        guard path == .secureRelay else {
            return try transition { registry, now throws(CallError) in
                try registry.invite(id: id, from: identity.user, device: device, to: callee, offer: offer, now: now)
            }
        }
        // Secure relay: the caller's offer is checked as it came, then the callee gets Switchboard's offer.
        guard let media else { throw CallError(.mediaUnavailable, "this server runs no secure media relay") }
        guard let offer, offer.type == .offer else {
            throw CallError(.badRequest, "a secure-relay call needs the caller's sdp offer")
        }
        try SDPKeyingCheck.validate(offer.sdp, as: .offer)
        let prepared = try Self.mapped { () throws(MediaError) in try media.prepare(callerOffer: offer.sdp) }
        let calleeOffer = SessionDescription(type: .offer, sdp: prepared.calleeOffer)
        return try transition { registry, now throws(CallError) in
            let outcome = try registry.invite(
                id: id, from: identity.user, device: device, to: callee, offer: calleeOffer, media: .secureRelay,
                now: now)
            if outcome.call.state != .ended { media.open(id, prepared) }
            return outcome
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
        let now = clock()
        state.withLock { state in
            guard let outcome = state.registry.fail(id, failure: failure.rawValue, now: now) else { return }
            apply(outcome.deliveries, in: &state, now: now)
        }
    }

    /// The secure relay's legs of call `id`, for `GET /v1/calls/{id}`.
    func mediaLegs(_ call: Call) -> [MediaLegSnapshot]? {
        guard call.media == .secureRelay else { return nil }
        return media?.snapshot(call.id)
    }

    func ring(_ id: String, _ identity: Identity, device: String) throws(CallError) -> Call {
        try transition { registry, now throws(CallError) in
            try registry.ring(id, user: identity.user, device: device, now: now)
        }
    }

    func accept(_ id: String, _ identity: Identity, device: String, answer: SessionDescription?) throws(CallError)
        -> Call
    {
        try transition { registry, now throws(CallError) in
            guard let call = registry.calls[id], call.media == .secureRelay, call.isParty(identity.user),
                let media
            else {
                return try registry.accept(id, user: identity.user, device: device, answer: answer, now: now)
            }
            // Secure relay: the callee's answer is checked as it came; the caller gets Switchboard's answer.
            guard let answer, answer.type == .answer else {
                throw CallError(.badRequest, "accepting a secure-relay call needs the callee's sdp answer")
            }
            try SDPKeyingCheck.validate(answer.sdp, as: .answer)
            let prepared = try Self.mapped { () throws(MediaError) in
                try media.prepareAnswer(id, calleeAnswer: answer.sdp)
            }
            let outcome = try registry.accept(
                id, user: identity.user, device: device,
                answer: SessionDescription(type: .answer, sdp: prepared.callerAnswer), now: now)
            media.commitAnswer(id, prepared.calleeRemote)
            return outcome
        }
    }

    func decline(_ id: String, _ identity: Identity, device: String) throws(CallError) -> Call {
        try transition { registry, now throws(CallError) in
            try registry.decline(id, user: identity.user, device: device, now: now)
        }
    }

    func hangup(_ id: String, _ identity: Identity, device: String) throws(CallError) -> Call {
        try transition { registry, now throws(CallError) in
            try registry.hangup(id, user: identity.user, device: device, now: now)
        }
    }

    func signal(_ signal: Signal) throws(CallError) {
        let now = clock()
        try state.withLock { state throws(CallError) in
            if let call = state.registry.calls[signal.callID], call.media == .secureRelay, call.isParty(signal.fromUser)
            {
                try secureRelaySignal(signal, call: call, in: &state, now: now)
                return
            }
            let deliveries = try state.registry.signal(signal, now: now).deliveries
            for delivery in deliveries { deliver(delivery, in: &state, now: now) }
        }
    }

    /// A signal in a secure-relay call. Switchboard is each party's peer: candidates are checked and kept from the
    /// other party (the server learns addresses from ICE checks); a mid-call offer goes to the other party as
    /// Switchboard's offer over that party's leg, and its answer comes back as Switchboard's answer.
    private func secureRelaySignal(_ signal: Signal, call: Call, in state: inout State, now: Date) throws(CallError) {
        guard signal.kind == .offer || signal.kind == .answer else {
            _ = try state.registry.signal(signal, now: now)
            return
        }
        guard call.state == .active else {
            throw CallError(.invalidTransition, "a secure-relay call renegotiates only once it is answered")
        }
        guard let media else { throw CallError(.mediaUnavailable, "this server runs no secure media relay") }
        let deliveries = try state.registry.signal(signal, now: now).deliveries
        let party: MediaLeg.Party = signal.fromUser == call.caller ? .caller : .callee
        let sdp = signal.sdp ?? ""
        let rewritten = try Self.mapped { () throws(MediaError) in
            signal.kind == .offer
                ? try media.reoffer(call.id, from: party, sdp: sdp) : try media.reanswer(call.id, from: party, sdp: sdp)
        }
        for delivery in deliveries {
            guard case .signal(let original) = delivery.event else { continue }
            let relayed = Signal(
                callID: original.callID, fromUser: original.fromUser, fromDevice: original.fromDevice,
                kind: original.kind, sdp: rewritten)
            deliver(
                Delivery(user: delivery.user, devices: delivery.devices, event: .signal(relayed)), in: &state, now: now)
        }
    }

    func call(_ id: String, for identity: Identity) throws(CallError) -> Call {
        try state.withLock { state throws(CallError) in
            try state.registry.call(id, visibleTo: identity.user, isAdmin: identity.isAdmin)
        }
    }

    func calls(for identity: Identity, states: Set<CallState>?) -> [Call] {
        state.withLock { state in state.registry.calls(of: identity.isAdmin ? nil : identity.user, states: states) }
    }

    func callCounts() -> [CallState: Int] {
        state.withLock { $0.registry.countsByState() }
    }

    private func transition(
        _ input: (inout CallRegistry, Date) throws(CallError) -> CallRegistry.Outcome
    ) throws(CallError) -> Call {
        let now = clock()
        return try state.withLock { state throws(CallError) in
            let outcome = try input(&state.registry, now)
            apply(outcome.deliveries, in: &state, now: now)
            if outcome.call.state == .ended, outcome.call.media == .secureRelay { media?.close(outcome.call.id) }
            if outcome.deliveries.isEmpty, outcome.call.state == .ended, let reason = outcome.call.endReason {
                // A call that ended as it was made (busy) tells no device, but it is still counted and watched.
                metrics.callEnded(reason)
                notifyWatchers("call.ended", outcome.call, in: &state)
            }
            return outcome.call
        }
    }

    private func apply(_ deliveries: [Delivery], in state: inout State, now: Date) {
        var watched: Set<String> = []
        for delivery in deliveries {
            deliver(delivery, in: &state, now: now)
            // The callee's other devices hear "answered elsewhere"; for everyone else that call is active.
            if case .ended(let view) = delivery.event, view.endReason == .answeredElsewhere { continue }
            guard case let name = delivery.event.name, name != "call.signal",
                watched.insert(name + " " + delivery.event.callID).inserted,
                let call = state.registry.calls[delivery.event.callID]
            else { continue }
            if case .accepted = delivery.event { metrics.callSetups.increment() }
            if case .ended = delivery.event, let reason = call.endReason {
                metrics.callEnded(reason)
                if call.media == .secureRelay { media?.close(call.id) }
            }
            notifyWatchers(name, call, in: &state)
        }
    }

    /// Admin watchers get each lifecycle change once, with the call as the registry holds it.
    private func notifyWatchers(_ name: String, _ call: Call, in state: inout State) {
        guard !state.watchers.isEmpty else { return }
        state.seq += 1
        let frame = SSE.event(id: eventID(state.seq), name: name, data: CallEventJSON(call: CallJSON(call), sdp: nil))
        for (serial, stream) in state.watchers where push(frame, to: stream) == false {
            state.watchers[serial] = nil
        }
    }

    /// Turns one delivery into a frame, keeps it in the user's backlog and queues it on the addressed streams.
    private func deliver(_ delivery: Delivery, in state: inout State, now: Date) {
        state.seq += 1
        let seq = state.seq
        let frame = Self.frame(for: delivery.event, id: eventID(seq))
        var user = state.users[delivery.user] ?? UserStreams(evictedThrough: state.prunedThrough)
        for (device, stream) in user.streams where delivery.devices.includes(device) {
            if !push(frame, to: stream) { user.streams[device] = nil }
        }
        // Keep the event for resumption only for users who had a stream lately: nobody resumes for a user who
        // never connected, and pending invites are re-sent from the registry anyway.
        let recentlySeen =
            !user.streams.isEmpty
            || (user.lastSeen.map { now.timeIntervalSince($0) < configuration.backlogTTL } ?? false)
        if recentlySeen {
            keep(BacklogEntry(seq: seq, devices: delivery.devices, frame: frame, at: now), for: &user)
        } else {
            user.evictedThrough = seq
        }
        state.users[delivery.user] = user
    }

    private func keep(_ entry: BacklogEntry, for user: inout UserStreams) {
        user.keep(entry, maxCount: configuration.backlogSize, maxBytes: configuration.streamBufferBytes)
    }

    /// Queues a frame; false when the stream is gone (and was cut now, if it overflowed).
    private func push(_ frame: ByteBuffer, to stream: EventStream) -> Bool {
        switch stream.enqueue(frame) {
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

    static func frame(for event: DeviceEvent, id: String) -> ByteBuffer {
        switch event {
        case .invite(let call, let offer):
            SSE.event(id: id, name: event.name, data: CallEventJSON(call: CallJSON(call), sdp: offer))
        case .accepted(let call, let answer):
            SSE.event(id: id, name: event.name, data: CallEventJSON(call: CallJSON(call), sdp: answer))
        case .ringing(let call), .ended(let call):
            SSE.event(id: id, name: event.name, data: CallEventJSON(call: CallJSON(call), sdp: nil))
        case .signal(let signal):
            SSE.event(id: id, name: event.name, data: SignalEventJSON(signal))
        }
    }

    private func eventID(_ seq: UInt64) -> String { "\(epoch)-\(seq)" }

    private func parseEventID(_ text: String) -> UInt64? {
        let parts = text.split(separator: "-")
        guard parts.count == 2, parts[0] == epoch else { return nil }
        return UInt64(parts[1])
    }

    // MARK: Streams

    /// Registers a stream for `identity` on `device` and queues what it must see first: `retry`, `hello`, then
    /// either the events after `lastEventID`, or `resync` when they are gone, or (on a fresh connection) the
    /// invites still pending for this user.
    enum OpenResult {
        case opened(EventStream)
        case shuttingDown
        case tooManyStreams
    }

    func openStream(
        _ identity: Identity,
        device: String,
        lastEventID: String?,
        watchAll: Bool,
        channel: (any Channel)?
    ) -> OpenResult {
        let now = clock()
        return state.withLock { state -> OpenResult in
            guard !state.shuttingDown else { return .shuttingDown }
            var user = state.users[identity.user] ?? UserStreams(evictedThrough: state.prunedThrough)
            if !watchAll, user.streams[device] == nil, user.streams.count >= configuration.maxStreamsPerUser {
                return .tooManyStreams
            }
            state.nextSerial += 1
            let stream = EventStream(
                serial: state.nextSerial, user: identity.user, device: device, watchesAll: watchAll, channel: channel,
                maxFrames: configuration.streamBufferFrames, maxBytes: configuration.streamBufferBytes)
            state.openStreams += 1
            metrics.sseStreamsOpen.record(state.openStreams)
            stream.enqueue(SSE.retry(configuration.retryMilliseconds))
            let hello = HelloJSON(user: identity.user, device: device)
            if watchAll {
                state.watchers[stream.serial] = stream
                stream.enqueue(SSE.event(id: eventID(state.seq), name: "hello", data: hello))
                return .opened(stream)
            }

            if let previous = user.streams[device] {
                let notice = SSE.event(id: eventID(state.seq), name: "superseded", data: SupersededJSON())
                previous.finish(.superseded, final: notice)
            }
            user.streams[device] = stream
            user.lastSeen = now

            // What a resume must replay; a replay that would not fit the stream's own queue resyncs instead.
            var replay: [ByteBuffer]?
            if let lastEventID, let resumeFrom = parseEventID(lastEventID), resumeFrom <= state.seq,
                resumeFrom >= user.evictedThrough
            {
                let frames = user.backlog.filter { $0.seq > resumeFrom && $0.devices.includes(device) }.map(\.frame)
                if frames.count + 3 <= configuration.streamBufferFrames,
                    frames.reduce(0, { $0 + $1.readableBytes }) + 4096 <= configuration.streamBufferBytes
                {
                    replay = frames
                }
            }
            if let replay, let lastEventID {
                stream.enqueue(SSE.event(id: lastEventID, name: "hello", data: hello))
                for frame in replay { stream.enqueue(frame) }
            } else {
                stream.enqueue(SSE.event(id: eventID(state.seq), name: "hello", data: hello))
                if lastEventID != nil {
                    metrics.sseResyncs.increment()
                    stream.enqueue(SSE.event(id: eventID(state.seq), name: "resync", data: EmptyJSON()))
                }
                // Pending invites, as many as the stream holds; kept in the backlog for this device, so that a
                // resume right after them does not lose them.
                let budget = max(0, configuration.streamBufferFrames - 3)
                for call in state.registry.pendingInvites(to: identity.user).suffix(budget) {
                    state.seq += 1
                    let frame = Self.frame(for: .invite(call, offer: call.offer), id: eventID(state.seq))
                    guard stream.enqueue(frame) == .queued else { break }
                    keep(BacklogEntry(seq: state.seq, devices: .only(device), frame: frame, at: now), for: &user)
                }
            }
            state.users[identity.user] = user
            return .opened(stream)
        }
    }

    /// Forgets a stream whose response ended.
    func closeStream(_ stream: EventStream) {
        stream.finish(.finished, final: nil)
        guard stream.markForgotten() else { return }
        state.withLock { state in
            if stream.watchesAll {
                state.watchers[stream.serial] = nil
            } else if state.users[stream.user]?.streams[stream.device] === stream {
                state.users[stream.user]?.streams[stream.device] = nil
                state.users[stream.user]?.lastSeen = clock()
            }
            state.openStreams -= 1
            metrics.sseStreamsOpen.record(state.openStreams)
        }
    }

    /// The devices of `user` with an open stream.
    func onlineDevices(of user: String) -> [String] {
        state.withLock { state in (state.users[user]?.streams.keys).map { Array($0).sorted() } ?? [] }
    }

    // MARK: Tickets

    func issueTicket(for identity: Identity, device: String?) -> String {
        let ticket = Base64URL.random(bytes: 24)
        let expires = clock().addingTimeInterval(configuration.ticketLifetime)
        state.withLock { $0.tickets[ticket] = Ticket(identity: identity, device: device, expires: expires) }
        return ticket
    }

    /// Takes a ticket: it works once, before it expires.
    func redeemTicket(_ ticket: String) -> Ticket? {
        let now = clock()
        return state.withLock { state in
            guard let found = state.tickets.removeValue(forKey: ticket), found.expires > now else { return nil }
            return found
        }
    }

    // MARK: Time and shutdown

    /// Runs the timers: ring timeouts, heartbeats, backlog and ticket expiry. Returns when it next needs to run.
    @discardableResult
    func tick() -> Date {
        let now = clock()
        return state.withLock { state in
            for outcome in state.registry.expire(now: now) { apply(outcome.deliveries, in: &state, now: now) }
            if now >= state.nextHeartbeat {
                state.nextHeartbeat = now.addingTimeInterval(configuration.heartbeatInterval)
                let frame = SSE.comment("heartbeat")
                for (name, var user) in state.users where !user.streams.isEmpty {
                    for (device, stream) in user.streams where stream.enqueue(frame) != .queued {
                        if stream.ending == .slowReader { metrics.sseSlowReadersDropped.increment() }
                        user.streams[device] = nil
                    }
                    state.users[name] = user
                }
                for (serial, stream) in state.watchers where stream.enqueue(frame) != .queued {
                    state.watchers[serial] = nil
                }
            }
            if now >= state.nextPrune {
                state.nextPrune = now.addingTimeInterval(1)
                let oldest = now.addingTimeInterval(-configuration.backlogTTL)
                for (name, var user) in state.users {
                    while let first = user.backlog.first, first.at < oldest { user.evictOldest() }
                    let stale = user.lastSeen.map { $0 < oldest } ?? true
                    if user.streams.isEmpty && user.backlog.isEmpty && stale {
                        state.prunedThrough = max(state.prunedThrough, user.evictedThrough)
                        state.users[name] = nil
                    } else {
                        state.users[name] = user
                    }
                }
                state.tickets = state.tickets.filter { $0.value.expires > now }
                metrics.setCallCounts(state.registry.countsByState())
            }
            var next = min(state.nextHeartbeat, state.nextPrune)
            if let deadline = state.registry.nextDeadline { next = min(next, deadline) }
            return next
        }
    }

    /// Sends every open stream a final `shutdown` event and ends it; new streams are refused from now on.
    func shutdown() {
        state.withLock { state in
            state.shuttingDown = true
            let frame = SSE.event(id: eventID(state.seq), name: "shutdown", data: ShutdownJSON())
            for user in state.users.values {
                for stream in user.streams.values { stream.finish(.finished, final: frame) }
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

struct SupersededJSON: Encodable {
    let reason = "another stream opened for this device"
    let reconnect = false
}

struct ShutdownJSON: Encodable {
    let reason = "server shutting down"
    let reconnect = true
}

/// Server-Sent Events framing (HTML Living Standard §9.2).
enum SSE {
    static func event(id: String, name: String, data: some Encodable) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeString("id: \(id)\nevent: \(name)\ndata: ")
        buffer.writeBytes(JSON.encode(data))
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
