public import Logging
public import Relay
import Store
import SwitchboardCore

/// Call-scoped relay credentials (`GET /v1/turn-credentials?call=ID`) end with their call: every relay that may
/// hold allocations made with them must hear that the call ended. The relay inside `switchboard serve` hears it
/// from its own signaling (every node gets every event on the store's bus); a relay run apart
/// (`switchboard relay --store postgres://…`) follows the cluster database's event bus with ``follow(url:relay:logger:)``.
public enum CallScopedRelay {
    /// The calls that ended among `events`: each end is one `call.ended` event for the admin watchers.
    static func endedCalls(in events: [StoredEvent]) -> [String] {
        events.filter { $0.envelope.user == Envelope.watchers && $0.envelope.name == "call.ended" }
            .map(\.envelope.callID)
    }

    /// Follows the PostgreSQL cluster store at `url` (its migrations run if they have not) and ends `relay`'s
    /// call-scoped allocations as calls end anywhere in the cluster. The returned handle keeps the subscription:
    /// ``Following/stop()`` ends it. A relay that was not following when a call ended does not learn of it; the
    /// call's credentials then live out their expiry (at most a day).
    public static func follow(url: String, relay: RelayServer, logger: Logger) async throws -> Following {
        let store = try await PostgresCallStore(
            url: url, configuration: CallRegistry.Configuration(), encode: { _ in [] }, logger: logger)
        store.bus.subscribe { events in
            for call in endedCalls(in: events) { relay.endCall(call) }
        }
        return Following(store: store)
    }

    /// A relay's subscription to the cluster's calls.
    public final class Following: Sendable {
        private let store: PostgresCallStore

        init(store: PostgresCallStore) { self.store = store }

        public func stop() { store.close() }
    }
}
