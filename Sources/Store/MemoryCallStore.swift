public import Foundation
public import SwitchboardCore
import Synchronization

/// Calls and events in this process's memory (`--store memory`): for tests and benchmarks; a restart forgets all.
public final class MemoryCallStore: CallStore {
    public let bus: any EventBus
    public var kind: String { "memory" }
    public var isShared: Bool { false }
    private let encode: EnvelopeEncoder
    private let state: Mutex<State>

    private struct State {
        var registry: CallRegistry
        var hub: EventHub
        var tickets: [String: (payload: [UInt8], expires: Date)] = [:]
        var newest = Date.distantPast
    }

    public init(
        configuration: CallRegistry.Configuration, backlogSize: Int, bus: any EventBus = LocalEventBus(),
        encode: @escaping EnvelopeEncoder
    ) {
        self.bus = bus
        self.encode = encode
        self.state = Mutex(
            State(registry: CallRegistry(configuration: configuration), hub: EventHub(backlogSize: backlogSize)))
    }

    public func apply(_ input: CallInput, now: Date) throws(CallError) -> Applied {
        try state.withLock { state throws(CallError) in
            let events = try state.registry.apply(input, now: now)
            let stored = state.hub.append(events.flatMap(encode), at: now)
            // Under the lock, so that batches reach the bus in id order.
            bus.publish(stored)
            return Applied(
                call: input.callID.flatMap { state.registry.calls[$0] }, events: events, stored: stored)
        }
    }

    public func call(_ id: String) -> Call? {
        state.withLock { $0.registry.calls[id] }
    }

    public func calls(of user: String?, states: Set<CallState>?, before: HistoryCursor?, limit: Int) -> [Call] {
        state.withLock { state in
            state.registry.calls(of: user, states: states, before: before, limit: limit).map(\.withoutTimeline)
        }
    }

    public func pendingInvites(to callee: String) -> [Call] {
        state.withLock { $0.registry.pendingInvites(to: callee).map(\.withoutTimeline) }
    }

    public func nextDeadline() -> Date? {
        state.withLock { $0.registry.nextDeadline }
    }

    public func countsByState() -> [CallState: Int] {
        state.withLock { $0.registry.countsByState() }
    }

    public func events(for user: String, after id: Int64, limit: Int) -> EventPage {
        state.withLock { $0.hub.page(for: user, after: id, limit: limit) }
    }

    public func append(_ envelopes: [Envelope], now: Date) -> [StoredEvent] {
        state.withLock { state in
            let stored = state.hub.append(envelopes, at: now)
            bus.publish(stored)
            return stored
        }
    }

    public func storeTicket(_ hash: String, _ payload: [UInt8], expires: Date) {
        state.withLock { $0.tickets[hash] = (payload, expires) }
    }

    public func redeemTicket(_ hash: String, now: Date) -> [UInt8]? {
        state.withLock { state in
            guard let ticket = state.tickets.removeValue(forKey: hash), ticket.expires > now else { return nil }
            return ticket.payload
        }
    }

    public func prune(eventsBefore: Date, callsEndedBefore: Date, ticketsExpiredBefore: Date) {
        state.withLock { state in
            state.hub.prune(before: eventsBefore)
            state.registry.forgetCalls(endedBefore: callsEndedBefore)
            state.tickets = state.tickets.filter { $0.value.expires >= ticketsExpiredBefore }
        }
    }

    public func check() {}
}
