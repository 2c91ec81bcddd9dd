public import Foundation

/// All calls of one signaling node: the call state machine of DESIGN.md, as a value.
///
/// Each input is a `mutating func` that takes the current time and returns what happened: the call as it now is
/// and the ``Delivery`` values the caller must carry out. Nothing here does I/O, sleeps or reads a clock, so every
/// transition is tested without a network, and two nodes fed the same inputs reach the same states.
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
        /// How many ended calls are kept for history; the oldest are forgotten first.
        public var maxEndedCalls: Int
        /// Timeline entries kept per call; lifecycle entries are always kept, signals only below this bound.
        public var maxTimelineEntries: Int

        public init(ringTimeout: TimeInterval = 30, maxEndedCalls: Int = 10_000, maxTimelineEntries: Int = 200) {
            self.ringTimeout = ringTimeout
            self.maxEndedCalls = maxEndedCalls
            self.maxTimelineEntries = maxTimelineEntries
        }
    }

    /// The result of an input: the call it is about and the events to deliver, in order.
    public struct Outcome: Sendable {
        public var call: Call
        public var deliveries: [Delivery]
    }

    public var configuration: Configuration
    public private(set) var calls: [String: Call] = [:]
    private var pendingIDs: Set<String> = []
    private var activeCallByUser: [String: String] = [:]
    private var callIDsByUser: [String: [String]] = [:]
    private var endedOrder: [String] = []
    private var endedHead = 0

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
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

    /// Calls of `user` (all calls when `user` is nil), newest first, optionally only in `states`.
    public func calls(of user: String?, states: Set<CallState>? = nil) -> [Call] {
        let selected: [Call]
        if let user {
            selected = (callIDsByUser[user] ?? []).reversed().compactMap { calls[$0] }
        } else {
            selected = calls.values.sorted { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }
        }
        guard let states else { return selected }
        return selected.filter { states.contains($0.state) }
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
        call.timeline.append(TimelineEntry(at: now, event: "invite", user: caller, device: device))
        calls[id] = call
        callIDsByUser[caller, default: []].append(id)
        callIDsByUser[callee, default: []].append(id)
        pendingIDs.insert(id)

        if activeCallByUser[callee] != nil {
            let ended = end(id, .busy, now: now, by: callee, device: nil)
            return Outcome(call: ended, deliveries: [])
        }

        var deliveries: [Delivery] = []
        // Calling the same user again replaces the invite still pending (a retry, or another of the caller's
        // devices): between two users there is at most one pending call.
        let repeated = pendingIDs.filter { other in
            guard other != id, let other = calls[other] else { return false }
            return other.caller == caller && other.callee == callee
        }.sorted()
        for previous in repeated {
            deliveries += endDeliveries(end(previous, .cancelled, now: now, by: caller, device: device))
        }

        let glares = pendingIDs.filter { other in
            guard let other = calls[other] else { return false }
            return other.caller == callee && other.callee == caller
        }.sorted()
        if let lesser = glares.first {
            if id < lesser {
                for glare in glares {
                    deliveries += endDeliveries(end(glare, .glare, now: now, by: caller, device: device))
                }
            } else {
                let ended = end(id, .glare, now: now, by: caller, device: device)
                return Outcome(call: ended, deliveries: [Delivery(user: caller, devices: .all, event: .ended(ended))])
            }
        }
        let invited = calls[id]!
        deliveries.append(Delivery(user: callee, devices: .all, event: .invite(invited, offer: offer)))
        return Outcome(call: invited, deliveries: deliveries)
    }

    /// A callee device acknowledges the invite: it is ringing.
    public mutating func ring(_ id: String, user: String, device: String, now: Date) throws(CallError) -> Outcome {
        var call = try callForAction(id, user: user, calleeOnly: "acknowledge ringing")
        guard call.state.isPending else { throw invalid(call, "ring") }
        let first = call.state == .inviting
        // A device acknowledging again changes nothing and adds nothing: the timeline cannot be grown by repeats.
        if !call.ringingDevices.contains(device) {
            call.ringingDevices.append(device)
            call.timeline.append(TimelineEntry(at: now, event: "ringing", user: user, device: device))
        }
        call.state = .ringing
        calls[id] = call
        let deliveries = first ? [Delivery(user: call.caller, devices: .all, event: .ringing(call))] : []
        return Outcome(call: call, deliveries: deliveries)
    }

    /// A callee device accepts the call. The first device wins; the callee's other devices are told the call was
    /// answered elsewhere.
    public mutating func accept(
        _ id: String,
        user: String,
        device: String,
        answer: SessionDescription?,
        now: Date
    ) throws(CallError) -> Outcome {
        var call = try callForAction(id, user: user, calleeOnly: "accept")
        guard call.state.isPending else { throw invalid(call, "accept") }
        if let answer {
            guard answer.type == .answer else { throw CallError(.badRequest, "the accept's sdp must be an answer") }
            try SDPKeyingCheck.validate(answer.sdp, as: .answer)
        }
        call.state = .active
        call.answeredAt = now
        call.answeredBy = device
        call.ringDeadline = nil
        call.timeline.append(TimelineEntry(at: now, event: "accepted", user: user, device: device))
        calls[id] = call
        pendingIDs.remove(id)
        activeCallByUser[call.caller] = id
        activeCallByUser[call.callee] = id

        var deliveries = [
            Delivery(user: call.caller, devices: .all, event: .accepted(call, answer: answer)),
            Delivery(user: call.callee, devices: .allExcept(device), event: .ended(call.answeredElsewhereView())),
        ]
        // Keep the invariant: an active user has no pending calls.
        for party in [call.caller, call.callee] {
            let others = pendingIDs.compactMap({ calls[$0] }).filter({ $0.isParty(party) }).sorted { $0.id < $1.id }
            for other in others {
                let reason: EndReason = other.caller == party ? .cancelled : .busy
                deliveries += endDeliveries(end(other.id, reason, now: now, by: party, device: nil))
            }
        }
        return Outcome(call: calls[id]!, deliveries: deliveries)
    }

    /// A callee device refuses the call.
    public mutating func decline(_ id: String, user: String, device: String, now: Date) throws(CallError) -> Outcome {
        let call = try callForAction(id, user: user, calleeOnly: "decline")
        guard call.state.isPending else { throw invalid(call, "decline") }
        let ended = end(id, .declined, now: now, by: user, device: device)
        return Outcome(call: ended, deliveries: endDeliveries(ended))
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
        return Outcome(call: ended, deliveries: endDeliveries(ended))
    }

    /// Routes an offer, answer or ICE candidate to the other party. Before an answer, the caller's signals go to
    /// every callee device; after it, only to the device that answered. The callee's signals go to the device
    /// that placed the call. Only that device may signal for the caller, and once the call is answered only the
    /// device that answered may signal for the callee (`forbidden` otherwise).
    public mutating func signal(_ signal: Signal, now: Date) throws(CallError) -> [Delivery] {
        var call = try callForAction(signal.callID, user: signal.fromUser, calleeOnly: nil)
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
        if call.timeline.count < configuration.maxTimelineEntries {
            call.timeline.append(
                TimelineEntry(
                    at: now, event: "signal.\(signal.kind.rawValue)", user: signal.fromUser, device: signal.fromDevice))
            calls[call.id] = call
        }
        let devices: Delivery.Devices
        if signal.fromUser == call.caller {
            devices = call.answeredBy.map { .only($0) } ?? .all
        } else {
            devices = .only(call.callerDevice)
        }
        return [Delivery(user: call.peer(of: signal.fromUser), devices: devices, event: .signal(signal))]
    }

    /// The server ends a call it cannot carry (a secure-relay leg failed): `failed`, with `failure` saying why.
    /// Nothing happens to a call that already ended.
    public mutating func fail(_ id: String, failure: String, now: Date) -> Outcome? {
        guard let call = calls[id], call.state != .ended else { return nil }
        calls[id]?.failure = failure
        let ended = end(id, .failed, now: now, by: call.caller, device: nil, event: "failed")
        return Outcome(call: ended, deliveries: endDeliveries(ended))
    }

    /// Ends every pending call whose ring deadline has passed: `no_answer` when a device was ringing,
    /// `unavailable` when none ever acknowledged the invite.
    public mutating func expire(now: Date) -> [Outcome] {
        let due = pendingIDs.compactMap { calls[$0] }.filter { ($0.ringDeadline ?? .distantFuture) <= now }
            .sorted { $0.id < $1.id }
        return due.map { call in
            let reason: EndReason = call.state == .ringing ? .noAnswer : .unavailable
            let ended = end(call.id, reason, now: now, by: call.callee, device: nil, event: "timeout")
            return Outcome(call: ended, deliveries: endDeliveries(ended))
        }
    }

    // MARK: Helpers

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

    private func endDeliveries(_ call: Call) -> [Delivery] {
        [
            Delivery(user: call.caller, devices: .all, event: .ended(call)),
            Delivery(user: call.callee, devices: .all, event: .ended(call)),
        ]
    }

    @discardableResult
    private mutating func end(
        _ id: String,
        _ reason: EndReason,
        now: Date,
        by user: String,
        device: String?,
        event: String = "ended"
    ) -> Call {
        var call = calls[id]!
        call.state = .ended
        call.endReason = reason
        call.endedAt = now
        call.ringDeadline = nil
        call.offer = nil
        call.timeline.append(TimelineEntry(at: now, event: event, user: user, device: device, reason: reason.rawValue))
        calls[id] = call
        pendingIDs.remove(id)
        for party in [call.caller, call.callee] where activeCallByUser[party] == id {
            activeCallByUser[party] = nil
        }
        endedOrder.append(id)
        evictEndedCalls()
        return call
    }

    private mutating func evictEndedCalls() {
        while endedOrder.count - endedHead > configuration.maxEndedCalls {
            let id = endedOrder[endedHead]
            endedHead += 1
            if let call = calls.removeValue(forKey: id) {
                for party in [call.caller, call.callee] {
                    callIDsByUser[party]?.removeAll { $0 == id }
                    if callIDsByUser[party]?.isEmpty == true { callIDsByUser[party] = nil }
                }
            }
        }
        if endedHead > 1024 && endedHead * 2 > endedOrder.count {
            endedOrder.removeFirst(endedHead)
            endedHead = 0
        }
    }
}
