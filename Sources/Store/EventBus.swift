import Synchronization

/// Carries committed events to every node's streams, in commit order.
///
/// A store publishes on its bus after each commit; the signaling plane subscribes once and hands each event to the
/// streams it addresses. In one process the bus calls its subscribers at once (``LocalEventBus``); across nodes
/// it carries them through the database.
public protocol EventBus: Sendable {
    /// Hands `events` (ascending ids) to every subscriber. Never waits.
    func publish(_ events: [StoredEvent])

    /// Calls `handler` with every batch published from now on, in order.
    func subscribe(_ handler: @escaping @Sendable ([StoredEvent]) -> Void)
}

/// The bus of one process: a subscriber is called on the publisher's thread, so events arrive in the order the
/// store committed them.
public final class LocalEventBus: EventBus {
    private let handlers = Mutex<[@Sendable ([StoredEvent]) -> Void]>([])

    public init() {}

    public func publish(_ events: [StoredEvent]) {
        guard !events.isEmpty else { return }
        for handler in handlers.withLock({ $0 }) { handler(events) }
    }

    public func subscribe(_ handler: @escaping @Sendable ([StoredEvent]) -> Void) {
        handlers.withLock { $0.append(handler) }
    }
}
