public import Foundation

/// Calls of the state machine of DESIGN.md, as a value: every call of a node, or just the calls one input needs.
///
/// Each input takes the current time and returns what happened as ``CallEvent`` values, its single output: the
/// timeline, deliveries, metrics and a store's event log all derive from them. Nothing here does I/O, sleeps or
/// reads a clock, so every transition is tested without a network, and two nodes fed the same inputs reach the
/// same states. A store builds a registry from the calls an input needs (``CallInput/callID`` and the pending and
/// active calls of ``CallInput/users``), runs the input and writes back what the events changed.
///
/// Invariants kept by every input:
/// - a user is in at most one `active` call;
/// - a user in an `active` call has no pending (`inviting`/`ringing`) calls: new invites to them end `busy`, their
///   pending incoming calls end `busy` and their pending outgoing calls end `cancelled` when they become active;
/// - between two users there is at most one pending call (glare keeps the lesser call id).
public struct CallRegistry: Sendable {
    /// Limits and timeouts.
    public struct Configuration: Sendable {
        /// How long an unanswered call rings before it ends `no_answer` (or `unavailable`).
        public var ringTimeout: TimeInterval
        /// Timeline entries kept per call; lifecycle entries are always kept, signals only below this bound.
        public var maxTimelineEntries: Int

        public init(ringTimeout: TimeInterval = 30, maxTimelineEntries: Int = 200) {
            self.ringTimeout = ringTimeout
            self.maxTimelineEntries = maxTimelineEntries
        }
    }

    /// The result of an input: the call it is about and its events, in order.
    public struct Outcome: Sendable {
        public var call: Call
        public var events: [CallEvent]

        public init(call: Call, events: [CallEvent]) {
            self.call = call
            self.events = events
        }

        /// What each device hears, in order.
        public var deliveries: [Delivery] { events.flatMap(\.deliveries) }
    }

    public var configuration: Configuration
    public private(set) var calls: [String: Call] = [:]
    private var pendingIDs: Set<String> = []
    private var activeCallByUser: [String: String] = [:]
    private var callIDsByUser: [String: [String]] = [:]

    public init(configuration: Configuration = Configuration(), calls: [Call] = []) {
        self.configuration = configuration
        for call in calls.sorted(by: { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }) { insert(call) }
    }

    // MARK: Queries

    /// The call `id` if `user` may see it: a party, or an admin. Others get `call_not_found`, exactly as for a
    /// call that does not exist, so call ids leak nothing.
    public func call(_ id: String, visibleTo user: String, isAdmin: Bool = false) throws(CallError) -> Call {
        guard let call = calls[id], isAdmin || call.isParty(user) else {
            throw CallError(.callNotFound, "no call \(id)")
        }
        return call
    }

    /// Calls of `user` (all calls when `user` is nil), newest first, optionally only in `states`, only those
    /// older than `before`, at most `limit`.
    public func calls(
        of user: String?, states: Set<CallState>? = nil, before: HistoryCursor? = nil, limit: Int = .max
    ) -> [Call] {
        let selected: [Call]
        if let user {
            selected = (callIDsByUser[user] ?? []).compactMap { calls[$0] }
                .sorted { HistoryCursor($0) > HistoryCursor($1) }
        } else {
            selected = calls.values.sorted { HistoryCursor($0) > HistoryCursor($1) }
        }
        return Array(
            selected.lazy.filter { call in
                (states?.contains(call.state) ?? true) && (before.map { HistoryCursor(call) < $0 } ?? true)
            }.prefix(limit))
    }

    /// Pending calls to `callee`, oldest first: what a device that connects now must be told about.
    public func pendingInvites(to callee: String) -> [Call] {
        (callIDsByUser[callee] ?? []).compactMap { calls[$0] }.filter { $0.callee == callee && $0.state.isPending }
    }

    /// How many calls are in each state.
    public func countsByState() -> [CallState: Int] {
        var counts: [CallState: Int] = [:]
        for state in CallState.allCases { counts[state] = 0 }
        for call in calls.values { counts[call.state, default: 0] += 1 }
        return counts
    }

    /// The earliest ring deadline, for the adapter's timer.
    public var nextDeadline: Date? {
        pendingIDs.compactMap { calls[$0]?.ringDeadline }.min()
    }

    // MARK: Inputs

    /// Runs one input.
    public mutating func apply(_ input: CallInput, now: Date) throws(CallError) -> [CallEvent] {
        switch input {
        case .invite(let id, let caller, let device, let callee, let offer, let media, let mediaNode):
            try invite(
                id: id, from: caller, device: device, to: callee, offer: offer, media: media, mediaNode: mediaNode,
                now: now
            ).events
        case .ring(let id, let user, let device): try ring(id, user: user, device: device, now: now).events
        case .accept(let id, let user, let device, let answer, let relayed):
            try accept(id, user: user, device: device, answer: answer, relayed: relayed, now: now).events
        case .decline(let id, let user, let device): try decline(id, user: user, device: device, now: now).events
        case .hangup(let id, let user, let device): try hangup(id, user: user, device: device, now: now).events
        case .signal(let signal): try self.signal(signal, now: now).events
        case .fail(let id, let failure): fail(id, failure: failure, now: now)?.events ?? []
        case .expire: expire(now: now).flatMap(\.events)
        }
    }

    /// `caller` on `device` invites `callee`, with id `id` chosen by the adapter.
    ///
    /// The call is created even when it cannot ring: a callee in an active call makes it end `busy` at once. A
    /// pending invite from the same caller to the same callee ends `cancelled` (the new one replaces it). A pending
    /// invite the other way round (glare) is compared by id: the lesser id survives and the other ends `glare`,
    /// the same way on every node.
    public mutating func invite(
        id: String,
        from caller: String,
        device: String,
        to callee: String,
        offer: SessionDescription?,
        media: MediaPath = .direct,
        mediaNode: String? = nil,
        now: Date
    ) throws(CallError) -> Outcome {
        guard calls[id] == nil else { throw CallError(.badRequest, "call id \(id) already exists") }
        guard caller != callee else { throw CallError(.badRequest, "a user cannot call themselves") }
        if let offer {
            guard offer.type == .offer else { throw CallError(.badRequest, "the invite's sdp must be an offer") }
            try SDPKeyingCheck.validate(offer.sdp, as: .offer)
        }
        if activeCallByUser[caller] != nil {
            throw CallError(.invalidTransition, "\(caller) is already in an active call; hang it up first")
        }

        var call = Call(
            id: id, caller: caller, callerDevice: device, callee: callee, state: .inviting, createdAt: now,
            ringDeadline: now.addingTimeInterval(configuration.ringTimeout), offer: offer)
        call.media = media
        call.mediaNode = mediaNode
        insert(call)

        if activeCallByUser[callee] != nil {
            // Nobody is told: the caller learns it from the call it gets back.
            let invited = record(.invite(offer: offer), id, at: now, by: caller, device: device, to: [])
            let busy = end(id, .busy, now: now, by: callee, device: nil, to: [])
            return Outcome(call: busy.call, events: [invited, busy])
        }

        var events: [CallEvent] = []
        // Calling the same user again replaces the invite still pending (a retry, or another of the caller's
        // devices): between two users there is at most one pending call.
        let repeated = pendingIDs.filter { other in
            guard other != id, let other = calls[other] else { return false }
            return other.caller == caller && other.callee == callee
        }.sorted()
        for previous in repeated {
            events.append(end(previous, .cancelled, now: now, by: caller, device: device))
        }

        let glares = pendingIDs.filter { other in
            guard let other = calls[other] else { return false }
            return other.caller == callee && other.callee == caller
        }.sorted()
        if let lesser = glares.first {
            if id < lesser {
                for glare in glares {
                    events.append(end(glare, .glare, now: now, by: caller, device: device))
                }
            } else {
                events.append(record(.invite(offer: offer), id, at: now, by: caller, device: device, to: []))
                let lost = end(
                    id, .glare, now: now, by: caller, device: device, to: [.init(user: caller, devices: .all)])
                events.append(lost)
                return Outcome(call: lost.call, events: events)
            }
        }
        let invited = record(
            .invite(offer: offer), id, at: now, by: caller, device: device, to: [.init(user: callee, devices: .all)])
        events.append(invited)
        return Outcome(call: invited.call, events: events)
    }

    /// A callee device acknowledges the invite: it is ringing.
    public mutating func ring(_ id: String, user: String, device: String, now: Date) throws(CallError) -> Outcome {
        var call = try callForAction(id, user: user, calleeOnly: "acknowledge ringing")
        guard call.state.isPending else { throw invalid(call, "ring") }
        // A device acknowledging again changes nothing and adds nothing: the timeline cannot be grown by repeats.
        guard !call.ringingDevices.contains(device) else { return Outcome(call: call, events: []) }
        let first = call.state == .inviting
        call.ringingDevices.append(device)
        call.state = .ringing
        calls[id] = call
        let ringing = record(
            .ringing, id, at: now, by: user, device: device,
            to: first ? [.init(user: call.caller, devices: .all)] : [])
        return Outcome(call: ringing.call, events: [ringing])
    }

    /// A callee device accepts the call. The first device wins; the callee's other devices are told the call was
    /// answered elsewhere. A secure-relay call takes only an answer the media endpoint wrote (`relayed`).
    public mutating func accept(
        _ id: String,
        user: String,
        device: String,
        answer: SessionDescription?,
        relayed: Bool = false,
        now: Date
    ) throws(CallError) -> Outcome {
        var call = try callForAction(id, user: user, calleeOnly: "accept")
        guard call.state.isPending else { throw invalid(call, "accept") }
        if call.media == .secureRelay, !relayed {
            throw CallError(.needsMediaRelay, "a secure-relay call's answer goes through the media endpoint")
        }
        if let answer {
            guard answer.type == .answer else { throw CallError(.badRequest, "the accept's sdp must be an answer") }
            try SDPKeyingCheck.validate(answer.sdp, as: .answer)
        }
        call.state = .active
        call.answeredAt = now
        call.answeredBy = device
        call.ringDeadline = nil
        calls[id] = call
        pendingIDs.remove(id)
        activeCallByUser[call.caller] = id
        activeCallByUser[call.callee] = id

        let accepted = record(
            .accepted(answer: answer), id, at: now, by: user, device: device,
            to: [
                .init(user: call.caller, devices: .all),
                .init(user: call.callee, devices: .allExcept(device), answeredElsewhere: true),
            ])
        var events = [accepted]
        // Keep the invariant: an active user has no pending calls.
        for party in [call.caller, call.callee] {
            let others = pendingIDs.compactMap({ calls[$0] }).filter({ $0.isParty(party) }).sorted { $0.id < $1.id }
            for other in others {
                let reason: EndReason = other.caller == party ? .cancelled : .busy
                events.append(end(other.id, reason, now: now, by: party, device: nil))
            }
        }
        return Outcome(call: calls[id]!, events: events)
    }

    /// A callee device refuses the call.
    public mutating func decline(_ id: String, user: String, device: String, now: Date) throws(CallError) -> Outcome {
        let call = try callForAction(id, user: user, calleeOnly: "decline")
        guard call.state.isPending else { throw invalid(call, "decline") }
        let ended = end(id, .declined, now: now, by: user, device: device)
        return Outcome(call: ended.call, events: [ended])
    }

    /// A party ends the call: before an answer the caller cancels and the callee declines; after it, `hangup`.
    public mutating func hangup(_ id: String, user: String, device: String, now: Date) throws(CallError) -> Outcome {
        let call = try callForAction(id, user: user, calleeOnly: nil)
        let reason: EndReason
        switch call.state {
        case .inviting, .ringing: reason = user == call.caller ? .cancelled : .declined
        case .active: reason = .hangup
        case .ended: throw invalid(call, "hang up")
        }
        let ended = end(id, reason, now: now, by: user, device: device)
        return Outcome(call: ended.call, events: [ended])
    }

    /// Routes an offer, answer or ICE candidate to the other party. Before an answer, the caller's signals go to
    /// every callee device; after it, only to the device that answered. The callee's signals go to the device
    /// that placed the call. Only that device may signal for the caller, and once the call is answered only the
    /// device that answered may signal for the callee (`forbidden` otherwise). In a secure-relay call Switchboard
    /// is each party's ICE peer: candidates (and their end) are checked and recorded, and nobody hears them, so
    /// neither party learns the other's addresses; offers and answers go on (the adapter rewrites them first).
    public mutating func signal(_ signal: Signal, now: Date) throws(CallError) -> Outcome {
        let call = try callForAction(signal.callID, user: signal.fromUser, calleeOnly: nil)
        guard call.state != .ended else { throw invalid(call, "signal") }
        // Media is negotiated between the device that placed the call and the one that answered it: no other
        // device of either user may inject SDP or candidates.
        if signal.fromUser == call.caller, signal.fromDevice != call.callerDevice {
            throw CallError(.forbidden, "only the device that placed the call can signal in it")
        }
        if signal.fromUser == call.callee, let answeredBy = call.answeredBy, signal.fromDevice != answeredBy {
            throw CallError(.forbidden, "the call was answered on another device")
        }
        switch signal.kind {
        case .offer, .answer:
            if call.media == .secureRelay, !signal.relayed {
                throw CallError(.needsMediaRelay, "a secure-relay call's SDP goes through the media endpoint")
            }
            guard let sdp = signal.sdp, signal.candidate == nil else {
                throw CallError(.badRequest, "a signal of type \(signal.kind.rawValue) needs sdp and no candidate")
            }
            try SDPKeyingCheck.validate(sdp, as: signal.kind == .offer ? .offer : .answer)
        case .candidate:
            guard signal.candidate != nil, signal.sdp == nil else {
                throw CallError(.badRequest, "a candidate signal needs candidate and no sdp")
            }
        case .endOfCandidates:
            guard signal.candidate == nil, signal.sdp == nil else {
                throw CallError(.badRequest, "an end-of-candidates signal carries no sdp or candidate")
            }
        }
        let devices: Delivery.Devices
        if signal.fromUser == call.caller {
            devices = call.answeredBy.map { .only($0) } ?? .all
        } else {
            devices = .only(call.callerDevice)
        }
        let withheld = call.media == .secureRelay && signal.kind != .offer && signal.kind != .answer
        let event = record(
            .signal(signal), call.id, at: now, by: signal.fromUser, device: signal.fromDevice,
            to: withheld ? [] : [.init(user: call.peer(of: signal.fromUser), devices: devices)])
        return Outcome(call: event.call, events: [event])
    }

    /// The server ends a call it cannot carry (a secure-relay leg failed): `failed`, with `failure` saying why.
    /// Nothing happens to a call that already ended.
    public mutating func fail(_ id: String, failure: String, now: Date) -> Outcome? {
        guard let call = calls[id], call.state != .ended else { return nil }
        calls[id]?.failure = failure
        let ended = end(id, .failed, now: now, by: call.caller, device: nil)
        return Outcome(call: ended.call, events: [ended])
    }

    /// Ends every pending call whose ring deadline has passed: `no_answer` when a device was ringing,
    /// `unavailable` when none ever acknowledged the invite.
    public mutating func expire(now: Date) -> [Outcome] {
        let due = pendingIDs.compactMap { calls[$0] }.filter { ($0.ringDeadline ?? .distantFuture) <= now }
            .sorted { $0.id < $1.id }
        return due.map { call in
            let reason: EndReason = call.state == .ringing ? .noAnswer : .unavailable
            let ended = end(call.id, reason, now: now, by: call.callee, device: nil)
            return Outcome(call: ended.call, events: [ended])
        }
    }

    /// Forgets ended calls that ended before `cutoff` (history retention); returns how many.
    @discardableResult
    public mutating func forgetCalls(endedBefore cutoff: Date) -> Int {
        let old = calls.values.filter { $0.state == .ended && ($0.endedAt ?? .distantPast) < cutoff }
        for call in old {
            calls[call.id] = nil
            for party in [call.caller, call.callee] {
                callIDsByUser[party]?.removeAll { $0 == call.id }
                if callIDsByUser[party]?.isEmpty == true { callIDsByUser[party] = nil }
            }
        }
        return old.count
    }

    // MARK: Helpers

    private mutating func insert(_ call: Call) {
        calls[call.id] = call
        callIDsByUser[call.caller, default: []].append(call.id)
        callIDsByUser[call.callee, default: []].append(call.id)
        if call.state.isPending { pendingIDs.insert(call.id) }
        if call.state == .active {
            activeCallByUser[call.caller] = call.id
            activeCallByUser[call.callee] = call.id
        }
    }

    private func callForAction(_ id: String, user: String, calleeOnly action: String?) throws(CallError) -> Call {
        let call = try self.call(id, visibleTo: user)
        if let action, user != call.callee {
            throw CallError(.forbidden, "only the callee can \(action)")
        }
        return call
    }

    private func invalid(_ call: Call, _ action: String) -> CallError {
        CallError(.invalidTransition, "cannot \(action) a call that is \(call.state.rawValue)")
    }

    /// The one place an event is made: it adds the event's line to the call's timeline (signals only below the
    /// bound) and snapshots the call.
    private mutating func record(
        _ kind: CallEvent.Kind, _ id: String, at now: Date, by user: String, device: String?,
        to recipients: [CallEvent.Recipient]
    ) -> CallEvent {
        var call = calls[id]!
        var entry: TimelineEntry?
        let isSignal = if case .signal = kind { true } else { false }
        if !isSignal || call.timelineLength < configuration.maxTimelineEntries {
            let draft = CallEvent(
                kind: kind, call: call, at: now, user: user, device: device, recipients: [], timelineEntry: nil)
            let line = TimelineEntry(
                at: now, event: draft.timelineName, user: user, device: device,
                reason: isSignal ? nil : call.endReason?.rawValue)
            call.timeline.append(line)
            call.timelineLength += 1
            calls[id] = call
            entry = line
        }
        return CallEvent(
            kind: kind, call: call, at: now, user: user, device: device, recipients: recipients, timelineEntry: entry)
    }

    /// Ends call `id`; by default both parties' devices are told.
    private mutating func end(
        _ id: String,
        _ reason: EndReason,
        now: Date,
        by user: String,
        device: String?,
        to recipients: [CallEvent.Recipient]? = nil
    ) -> CallEvent {
        var call = calls[id]!
        call.state = .ended
        call.endReason = reason
        call.endedAt = now
        call.ringDeadline = nil
        call.offer = nil
        calls[id] = call
        pendingIDs.remove(id)
        for party in [call.caller, call.callee] where activeCallByUser[party] == id {
            activeCallByUser[party] = nil
        }
        return record(
            .ended, id, at: now, by: user, device: device,
            to: recipients ?? [.init(user: call.caller, devices: .all), .init(user: call.callee, devices: .all)])
    }
}

/// What a store must load for an input: the call it names, and the pending and active calls of its users.
public enum CallInput: Sendable, Hashable {
    /// `mediaNode` names the node whose media endpoint holds a secure-relay call's legs.
    case invite(
        id: String, caller: String, device: String, callee: String, offer: SessionDescription?, media: MediaPath,
        mediaNode: String? = nil)
    case ring(id: String, user: String, device: String)
    /// `relayed` when the answer is the secure relay's own (a secure-relay call takes no other).
    case accept(id: String, user: String, device: String, answer: SessionDescription?, relayed: Bool = false)
    case decline(id: String, user: String, device: String)
    case hangup(id: String, user: String, device: String)
    /// A signal for the other party.
    case signal(Signal)
    case fail(id: String, failure: String)
    /// Ends the pending calls whose ring deadline passed.
    case expire

    /// The call the input is about: the one it acts on, or the one an invite creates (a store loads it too, so
    /// that an id already taken is refused).
    public var callID: String? {
        switch self {
        case .expire: nil
        case .invite(let id, _, _, _, _, _, _): id
        case .ring(let id, _, _), .accept(let id, _, _, _, _), .decline(let id, _, _), .hangup(let id, _, _),
            .fail(let id, _):
            id
        case .signal(let signal): signal.callID
        }
    }

    /// Whether the input needs the pending and active calls of the parties (of ``users`` and of the call's two
    /// parties): invites and accepts, which keep "busy", glare and "one active call per user".
    public var needsParties: Bool {
        switch self {
        case .invite, .accept: true
        default: false
        }
    }

    /// Users whose pending and active calls the input needs, besides the parties of ``callID``.
    public var users: [String] {
        switch self {
        case .invite(_, let caller, _, let callee, _, _, _): [caller, callee]
        default: []
        }
    }
}

/// A position in a history listed newest first: calls strictly older than it come next.
public struct HistoryCursor: Sendable, Hashable, Comparable {
    public let createdAt: Date
    public let id: String

    public init(createdAt: Date, id: String) {
        self.createdAt = createdAt
        self.id = id
    }

    public init(_ call: Call) {
        self.init(createdAt: call.createdAt, id: call.id)
    }

    public static func < (lhs: HistoryCursor, rhs: HistoryCursor) -> Bool {
        (lhs.createdAt, lhs.id) < (rhs.createdAt, rhs.id)
    }

    /// The opaque text form the API hands out (`before`).
    public var token: String { "\(createdAt.timeIntervalSinceReferenceDate)_\(id)" }

    public init?(token: String) {
        guard let split = token.firstIndex(of: "_"), let seconds = Double(token[..<split]), seconds.isFinite,
            Identifier.isValid(String(token[token.index(after: split)...]))
        else { return nil }
        self.init(
            createdAt: Date(timeIntervalSinceReferenceDate: seconds), id: String(token[token.index(after: split)...]))
    }
}
