public import Foundation
public import Logging
import NIOCore
import PostgresNIO
public import SwitchboardCore
import Synchronization

/// Calls and events in PostgreSQL (`--store postgres://…`): several nodes share one database.
///
/// Transitions are committed in batches (group commit): a node queues them, and those that arrive while one batch
/// commits form the next. A batch is one transaction of four statements in two round trips: `BEGIN` with
/// `switchboard_load_batch`, which takes an advisory lock per involved user (in one global order) and returns the
/// calls all of its inputs need; then `switchboard_commit`, which writes what the registry changed and the events,
/// under a lock that makes event ids follow commit order, and `NOTIFY`s them, with `COMMIT` right behind it. That
/// ordering lock is held through the commit's WAL flush, so one transaction per transition would serialize every
/// node on the flush; a batch pays it once. A batch the node's ``CallCache`` can decide skips the load: one round
/// trip (`BEGIN`, `switchboard_commit_cached`, `COMMIT`), written only if nothing changed since. A node hands out a
/// batch it committed at once when it follows the last event it handed out (ids follow commit order, so no other
/// node's event can come before it); every other batch comes from `LISTEN`, so a stream sees events in id order
/// whichever node made them. A gap (a dropped listening connection, a batch too large for a notification) is read
/// from the events table. A database that cannot be reached fails each call within ``timeout`` with
/// `store_unavailable`; the pool reconnects by itself.
public final class PostgresCallStore: CallStore {
    public let bus: any EventBus
    public var kind: String { "postgres" }
    public var isShared: Bool { true }
    /// This node's name in the notifications of the batches it commits.
    var node: String { listener.node }
    /// How long one operation may wait for the database before it fails.
    public let timeout: Duration
    private let client: PostgresClient
    private let configuration: CallRegistry.Configuration
    private let encode: EnvelopeEncoder
    private let logger: Logger
    private let listener: PostgresListener
    private let tasks: Mutex<[Task<Void, Never>]> = Mutex([])
    private let batches = GroupCommit()
    /// The live calls this node knows without asking, for batches committed in one round trip.
    private let cache = Mutex(CallCache())
    /// Whether batches may be decided from ``cache`` (tests turn it off to load every batch).
    private let caching: Bool

    /// Connects to `url` (`postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=disable|prefer|require]`),
    /// runs the migrations and starts listening.
    ///
    /// `deliveryLag` hears, for each notification (or read of the events table) this node gets, how long after its
    /// batch's transitions began it arrived.
    public init(
        url: String, configuration: CallRegistry.Configuration, encode: @escaping EnvelopeEncoder,
        timeout: Duration = .seconds(3), logger: Logger = Logger(label: "switchboard.store"),
        deliveryLag: @escaping @Sendable (TimeInterval) -> Void = { _ in }, caching: Bool = true
    ) async throws {
        let settings = try PostgresURL(url)
        var options = PostgresClient.Configuration(
            host: settings.host, port: settings.port, username: settings.user, password: settings.password,
            database: settings.database, tls: settings.tls)
        options.options.connectTimeout = timeout
        options.options.maximumConnections = 16
        // Names this node in its notifications (the commit reads it), to tell its own batches from others'; an
        // operator sees it in pg_stat_activity.
        let node = "switchboard \(UUID().uuidString)"
        options.options.additionalStartupParameters = [("application_name", node)]
        client = PostgresClient(configuration: options, backgroundLogger: logger)
        self.configuration = configuration
        self.caching = caching
        self.encode = encode
        self.timeout = timeout
        self.logger = logger
        let listener = PostgresListener(node: node, timeout: timeout, deliveryLag: deliveryLag)
        self.listener = listener
        bus = listener
        let client = client
        tasks.withLock { $0.append(Task { await client.run() }) }
        do {
            try await Self.migrate(client, logger: logger)
            listener.delivered = try await Self.head(client)
        } catch {
            close()
            throw error
        }
        tasks.withLock {
            $0.append(Task { await listener.run(client: client, logger: logger) })
        }
    }

    /// Stops the pool and the listener.
    public func close() {
        for task in tasks.withLock({ $0 }) { task.cancel() }
    }

    deinit { close() }

    static func migrate(_ client: PostgresClient, logger: Logger) async throws {
        try await client.withConnection { connection in
            _ = try await connection.query("SELECT pg_advisory_lock(\(PostgresSchema.migrationLock))", logger: logger)
            do {
                _ = try await connection.query(
                    "CREATE TABLE IF NOT EXISTS switchboard_schema (version integer PRIMARY KEY)", logger: logger)
                let rows = try await connection.query(
                    "SELECT COALESCE(MAX(version), 0) FROM switchboard_schema", logger: logger)
                var current = 0
                for try await version in rows.decode(Int.self) { current = version }
                for migration in PostgresSchema.migrations where migration.version > current {
                    try await connection.withTransaction(logger: logger) { connection in
                        // Fixed text from PostgresSchema, never anything a client sent.
                        for statement in PostgresSchema.statements(migration.sql) {
                            _ = try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                        }
                        _ = try await connection.query(
                            "INSERT INTO switchboard_schema (version) VALUES (\(migration.version))", logger: logger)
                    }
                }
            } catch {
                _ = try? await connection.query(
                    "SELECT pg_advisory_unlock(\(PostgresSchema.migrationLock))", logger: logger)
                throw error
            }
            _ = try await connection.query("SELECT pg_advisory_unlock(\(PostgresSchema.migrationLock))", logger: logger)
        }
    }

    /// The last event id handed out, once the commits in flight have ended (their events are in the table).
    static func head(_ client: PostgresClient) async throws -> Int64 {
        let rows = try await client.query("SELECT switchboard_event_head()")
        var head: Int64 = 0
        for try await value in rows.decode(Int64.self) { head = value }
        return head
    }

    // MARK: CallStore

    public func apply(_ input: CallInput, now: Date) async throws(CallError) -> Applied {
        // The closure lives only while its batches drain: no cycle.
        try await batches.apply(input, now: now) { inputs throws(CallError) in try await self.commitBatch(inputs) }
    }

    /// One transaction for `inputs`, in order: each decides on what the ones before it changed. A refusal of the
    /// registry refuses that input only (the registry is left as it was before it); a failure of the database
    /// fails them all, and nothing is kept.
    ///
    /// A batch the ``CallCache`` can decide is committed in one round trip; if other event ids came first, nothing
    /// was written and it loads as any other: `BEGIN` with the load (after the last event id handed out, read once
    /// the commits in flight have ended, when the cache is in use), then the commit.
    private func commitBatch(_ inputs: [(input: CallInput, now: Date)]) async throws(CallError)
        -> [Result<Applied, CallError>]
    {
        // Another node's batches keep the cache aside for a while: a busy cluster would mostly find it stale.
        let delivered = listener.delivered
        let cached = caching && !listener.heardOthers(within: .seconds(1))
        let plan = cached ? cache.withLock { $0.plan(for: inputs.map(\.input), delivered: delivered) } : nil
        do {
            return try await commitBatch(inputs, plan: plan, cached: cached)
        } catch {
            // A failed batch, or one past its deadline that may still commit after a later one: the cache cannot
            // place it.
            cache.withLock { $0.forget() }
            throw error
        }
    }

    private func commitBatch(
        _ inputs: [(input: CallInput, now: Date)], plan: CallCache.Plan?, cached: Bool
    ) async throws(CallError) -> [Result<Applied, CallError>] {
        let configuration = configuration
        let encode = encode
        return try await run { [client, logger, bus] in
            try await client.withConnection { connection in
                // One batch, one time: the latest of its inputs' (they are moments apart).
                let at = inputs.map(\.now).max()!
                if let plan {
                    let decision = BatchDecision(
                        inputs, calls: plan.calls, configuration: configuration, encode: encode)
                    let events = decision.events
                    let changed = Self.latest(events)
                    // A batch the cache refuses whole loads: a refusal is only trusted from what was just read.
                    if !events.isEmpty {
                        var stored: [StoredEvent]?
                        do {
                            stored = try await Self.commitCached(
                                plan, changed: changed, events: events, envelopes: decision.envelopes, at: at,
                                connection, logger: logger)
                        } catch let error as PSQLError where error.serverInfo?[.sqlState] == PostgresSchema.stale {
                            // Written nothing: it loads.
                            stored = nil
                        } catch {
                            await Self.rollBack(connection, logger: logger)
                            throw error
                        }
                        if let stored, let first = stored.first, let last = stored.last {
                            self.cache.withLock {
                                $0.committed(first: first.id, last: last.id, changed: changed)
                            }
                            bus.publish(stored)
                            return decision.applied(stored: stored)
                        }
                        self.cache.withLock { $0.forget() }
                    }
                }
                let ids = inputs.compactMap(\.input.callID)
                let parties = inputs.filter(\.input.needsParties)
                let partyIDs = parties.compactMap(\.input.callID)
                let users = parties.flatMap(\.input.users)
                var due: Double?
                for (input, now) in inputs {
                    if case .expire = input { due = max(due ?? 0, now.timeIntervalSinceReferenceDate) }
                }
                // BEGIN, (for the cache) the last event id handed out and the load go out together: one round trip.
                let begin: EventLoopFuture<PostgresQueryResult> = connection.query("BEGIN", logger: logger)
                // The head first: what the load reads after it is exact up to it.
                let head: EventLoopFuture<PostgresQueryResult>? =
                    cached ? connection.query("SELECT switchboard_event_head()", logger: logger) : nil
                let load: EventLoopFuture<PostgresQueryResult> = connection.query(
                    "SELECT x::text FROM switchboard_load_batch(\(ids), \(partyIDs), \(users), \(due)) AS x",
                    logger: logger)
                do {
                    _ = try await begin.get()
                    let loadHead = try await head?.get().rows.first?.decode(Int64.self)
                    let calls = try await load.get().rows.map { try PostgresRows.call(try $0.decode(String.self)) }
                    let decision = BatchDecision(inputs, calls: calls, configuration: configuration, encode: encode)
                    let events = decision.events
                    guard !events.isEmpty else {
                        _ = try await connection.query("ROLLBACK", logger: logger)
                        return decision.applied(stored: [])
                    }
                    let changed = Self.latest(events)
                    let stored = try await Self.commit(
                        changed: changed, events: events, envelopes: decision.envelopes, at: at, connection,
                        logger: logger)
                    let partyIDSet = Set(partyIDs)
                    let complete = Set(
                        users + calls.filter { partyIDSet.contains($0.id) }.flatMap { [$0.caller, $0.callee] })
                    self.cache.withLock { cache in
                        cache.committed(
                            first: stored[0].id, last: stored[stored.count - 1].id, changed: changed,
                            loaded: calls, complete: complete, loadHead: loadHead)
                    }
                    bus.publish(stored)
                    return decision.applied(stored: stored)
                } catch {
                    await Self.rollBack(connection, logger: logger)
                    throw error
                }
            }
        }
    }

    /// Each call the events changed, as the last of them left it.
    static func latest(_ events: [CallEvent]) -> [Call] {
        var latest: [String: Call] = [:]
        for event in events { latest[event.call.id] = event.call }
        return latest.values.sorted { $0.id < $1.id }
    }

    /// Ends a failed transaction, on a connection still open only: a query written to a connection that closed
    /// would never be answered.
    static func rollBack(_ connection: PostgresConnection, logger: Logger) async {
        guard !connection.isClosed else { return }
        _ = try? await connection.query("ROLLBACK", logger: logger)
    }

    /// Writes a transition's calls, timeline lines and events and commits, in one round trip: the commit goes out
    /// right behind the write, so the lock that orders event ids is held for no client round trip.
    static func commit(
        changed: [Call], events: [CallEvent], envelopes: [Envelope], at now: Date, _ connection: PostgresConnection,
        logger: Logger
    ) async throws -> [StoredEvent] {
        let (calls, timeline, eventRows) = PostgresRows.json(changed: changed, events: events, envelopes: envelopes)
        let at = now.timeIntervalSinceReferenceDate
        let write: EventLoopFuture<PostgresQueryResult> = connection.query(
            "SELECT id FROM switchboard_commit(\(calls)::jsonb, \(timeline)::jsonb, \(eventRows)::jsonb, \(at)) AS id",
            logger: logger)
        let end: EventLoopFuture<PostgresQueryResult> = connection.query("COMMIT", logger: logger)
        return try await finish(write: write, end: end, envelopes: envelopes, at: now)
    }

    /// A batch decided from the cache, in one round trip: `BEGIN`, `switchboard_commit_cached` and `COMMIT`. It
    /// throws ``PostgresSchema/stale`` (and writes nothing) when other event ids came after the plan's epoch or one
    /// of its new calls exists.
    static func commitCached(
        _ plan: CallCache.Plan, changed: [Call], events: [CallEvent], envelopes: [Envelope], at now: Date,
        _ connection: PostgresConnection, logger: Logger
    ) async throws -> [StoredEvent] {
        let (calls, timeline, eventRows) = PostgresRows.json(changed: changed, events: events, envelopes: envelopes)
        let at = now.timeIntervalSinceReferenceDate
        let begin: EventLoopFuture<PostgresQueryResult> = connection.query("BEGIN", logger: logger)
        let write: EventLoopFuture<PostgresQueryResult> = connection.query(
            """
            SELECT id FROM switchboard_commit_cached(\(plan.epoch), \(plan.keys), \(plan.newIDs), \(calls)::jsonb,
                \(timeline)::jsonb, \(eventRows)::jsonb, \(at)) AS id
            """, logger: logger)
        let end: EventLoopFuture<PostgresQueryResult> = connection.query("COMMIT", logger: logger)
        do {
            _ = try await begin.get()
        } catch {
            _ = try? await write.get()
            _ = try? await end.get()
            throw error
        }
        return try await finish(write: write, end: end, envelopes: envelopes, at: now)
    }

    /// Waits for a commit's write and the `COMMIT` behind it: the events stored.
    private static func finish(
        write: EventLoopFuture<PostgresQueryResult>, end: EventLoopFuture<PostgresQueryResult>,
        envelopes: [Envelope], at now: Date
    ) async throws -> [StoredEvent] {
        let written: PostgresQueryResult
        do {
            written = try await write.get()
        } catch {
            // The COMMIT behind it then only ends the failed transaction.
            _ = try? await end.get()
            throw error
        }
        let committed = try await end.get()
        guard committed.metadata.command == "COMMIT" else { throw StoreCorruption("the transaction did not commit") }
        let ids = try written.rows.map { try $0.decode(Int64.self) }
        guard ids.count == envelopes.count else { throw StoreCorruption("the commit returned \(ids.count) event ids") }
        return zip(ids, envelopes).map { StoredEvent(id: $0, at: now, envelope: $1) }
    }

    public func call(_ id: String) async throws(CallError) -> Call? {
        try await run { [client] in
            let rows = try await client.query("SELECT to_jsonb(c)::text FROM calls AS c WHERE c.id = \(id)")
            var found: Call?
            for try await text in rows.decode(String.self) { found = try PostgresRows.call(text) }
            guard let call = found else { return nil }
            let lines = try await client.query(
                "SELECT to_jsonb(t)::text FROM timeline AS t WHERE t.call_id = \(id) ORDER BY t.seq")
            var timeline: [TimelineEntry] = []
            for try await text in lines.decode(String.self) {
                timeline.append(try JSONDecoder.rows.decode(TimelineRow.self, from: Data(text.utf8)).entry)
            }
            return call.withTimeline(timeline)
        }
    }

    public func calls(of user: String?, states: Set<CallState>?, before: HistoryCursor?, limit: Int)
        async throws(CallError) -> [Call]
    {
        let names = states.map { set in CallState.allCases.filter(set.contains).map(\.rawValue) }
        let at = before?.createdAt.timeIntervalSinceReferenceDate
        let beforeID = before?.id
        let count = min(limit, 1_000_000)
        return try await run { [client] in
            let rows = try await client.query(
                """
                SELECT to_jsonb(c)::text FROM calls AS c
                WHERE (\(user)::text IS NULL OR c.caller = \(user) OR c.callee = \(user))
                AND (\(names)::text[] IS NULL OR c.state = ANY (\(names)::text[]))
                AND (\(at)::double precision IS NULL OR c.created_at < \(at)
                    OR (c.created_at = \(at) AND c.id < \(beforeID)))
                ORDER BY c.created_at DESC, c.id DESC LIMIT \(count)
                """)
            var calls: [Call] = []
            for try await text in rows.decode(String.self) { calls.append(try PostgresRows.call(text)) }
            return calls
        }
    }

    public func pendingInvites(to callee: String) async throws(CallError) -> [Call] {
        try await run { [client] in
            let rows = try await client.query(
                """
                SELECT to_jsonb(c)::text FROM calls AS c WHERE c.callee = \(callee)
                AND c.state IN ('inviting', 'ringing') ORDER BY c.created_at, c.id
                """)
            var calls: [Call] = []
            for try await text in rows.decode(String.self) { calls.append(try PostgresRows.call(text)) }
            return calls
        }
    }

    public func nextDeadline() async throws(CallError) -> Date? {
        try await run { [client] in
            let rows = try await client.query(
                "SELECT MIN(ring_deadline) FROM calls WHERE state IN ('inviting', 'ringing')")
            var deadline: Double?
            for try await value in rows.decode(Double?.self) { deadline = value }
            return deadline.map(Date.init(timeIntervalSinceReferenceDate:))
        }
    }

    public func countsByState() async throws(CallError) -> [CallState: Int] {
        try await run { [client] in
            var counts: [CallState: Int] = [:]
            for state in CallState.allCases { counts[state] = 0 }
            let rows = try await client.query("SELECT state, COUNT(*)::bigint FROM calls GROUP BY state")
            for try await (name, count) in rows.decode((String, Int64).self) {
                if let state = CallState(rawValue: name) { counts[state] = Int(count) }
            }
            return counts
        }
    }

    public func events(for user: String, after id: Int64, limit: Int) async throws(CallError) -> EventPage {
        try await run { [client] in
            let rows = try await client.query(
                """
                SELECT id, at, recipient, devices, name, call_id, data FROM events
                WHERE recipient = \(user) AND id > \(id) ORDER BY id LIMIT \(limit)
                """)
            var events: [StoredEvent] = []
            for try await row in rows.decode((Int64, Double, String, String, String, String, ByteBuffer).self) {
                events.append(try PostgresRows.stored(row))
            }
            let meta = try await client.query(
                """
                SELECT (SELECT value FROM meta WHERE key = 'pruned_through'),
                    (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM events_id_seq)
                """)
            var page = EventPage(events: events, head: 0, completeAfter: 0)
            for try await (pruned, head) in meta.decode((Int64, Int64).self) {
                page.completeAfter = pruned
                page.head = head
            }
            return page
        }
    }

    public func append(_ envelopes: [Envelope], now: Date) async throws(CallError) -> [StoredEvent] {
        guard !envelopes.isEmpty else { return [] }
        do {
            return try await run { [client, logger, bus] in
                try await client.withConnection { connection in
                    _ = try await connection.query("BEGIN", logger: logger)
                    let stored = try await Self.commit(
                        changed: [], events: [], envelopes: envelopes, at: now, connection, logger: logger)
                    if let first = stored.first, let last = stored.last {
                        self.cache.withLock { $0.committed(first: first.id, last: last.id, changed: []) }
                    }
                    bus.publish(stored)
                    return stored
                }
            }
        } catch {
            cache.withLock { $0.forget() }
            throw error
        }
    }

    public func prune(eventsBefore: Date, callsEndedBefore: Date, ticketsExpiredBefore: Date)
        async throws(CallError)
    {
        let events = eventsBefore.timeIntervalSinceReferenceDate
        let calls = callsEndedBefore.timeIntervalSinceReferenceDate
        let tickets = ticketsExpiredBefore.timeIntervalSinceReferenceDate
        try await run { [client, logger] in
            try await client.withConnection { connection in
                _ = try await connection.query("BEGIN", logger: logger)
                do {
                    try await Self.prune(events: events, calls: calls, tickets: tickets, connection, logger: logger)
                    _ = try await connection.query("COMMIT", logger: logger)
                } catch {
                    await Self.rollBack(connection, logger: logger)
                    throw error
                }
            }
        }
    }

    private static func prune(
        events: Double, calls: Double, tickets: Double, _ connection: PostgresConnection, logger: Logger
    ) async throws {
        _ = try await connection.query(
            """
            WITH gone AS (DELETE FROM events WHERE at < \(events) RETURNING id)
            UPDATE meta SET value = GREATEST(value, (SELECT COALESCE(MAX(id), 0) FROM gone))
            WHERE key = 'pruned_through'
            """, logger: logger)
        _ = try await connection.query(
            "DELETE FROM calls WHERE state = 'ended' AND ended_at < \(calls)", logger: logger)
        _ = try await connection.query(
            "DELETE FROM stream_tickets WHERE expires < \(tickets)", logger: logger)
    }

    public func storeTicket(_ hash: String, _ payload: [UInt8], expires: Date) async throws(CallError) {
        let bytes = ByteBuffer(bytes: payload)
        let at = expires.timeIntervalSinceReferenceDate
        try await run { [client] in
            _ = try await client.query(
                "INSERT INTO stream_tickets (hash, payload, expires) VALUES (\(hash), \(bytes), \(at))")
        }
    }

    public func redeemTicket(_ hash: String, now: Date) async throws(CallError) -> [UInt8]? {
        let at = now.timeIntervalSinceReferenceDate
        return try await run { [client] in
            let rows = try await client.query(
                "DELETE FROM stream_tickets WHERE hash = \(hash) RETURNING payload, expires")
            var payload: [UInt8]?
            for try await (bytes, expires) in rows.decode((ByteBuffer, Double).self) where expires > at {
                payload = Array(bytes.readableBytesView)
            }
            return payload
        }
    }

    public func check() async throws(CallError) {
        try await run { [client] in _ = try await client.query("SELECT 1 FROM meta LIMIT 1") }
    }

    /// Runs a database operation within ``timeout``: a refusal of the registry passes through, anything else is
    /// the store failing.
    private func run<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws(CallError) -> T {
        do {
            return try await withDeadline(timeout, body)
        } catch let error as CallError {
            throw error
        } catch {
            logger.warning("store operation failed", metadata: ["error": "\(String(reflecting: error))"])
            throw CallError.storeUnavailable
        }
    }
}

/// Fails `body` after `timeout`: a database that does not answer makes a request fail fast, not hang. `body` runs
/// in a task of its own, cancelled at the deadline (or when the caller is) but not waited for: a driver call that
/// does not heed cancellation (a query written to a connection that closed under it is never answered) cannot
/// hold its caller, a batch queued behind it or a graceful shutdown past the deadline.
func withDeadline<T: Sendable>(_ timeout: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T
{
    let race = DeadlineRace<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { continuation in
            guard race.wait(continuation) else { return }
            let work = Task {
                do {
                    race.finish(.success(try await body()))
                } catch {
                    race.finish(.failure(error))
                }
            }
            let timer = Task {
                guard (try? await Task.sleep(for: timeout)) != nil else { return }
                race.finish(.failure(StoreCorruption("the database did not answer within \(timeout)")))
            }
            race.own([work, timer])
        }
    } onCancel: {
        race.finish(.failure(CancellationError()))
    }
}

/// The first of a body's result, its deadline and its caller's cancellation: it resumes the caller once, and
/// cancels the tasks that lost.
private final class DeadlineRace<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var outcome: Result<T, any Error>?
        var tasks: [Task<Void, Never>] = []
    }

    private let state = Mutex(State())

    /// Holds the caller's continuation; false (and the continuation resumed) when the race already ended.
    func wait(_ continuation: CheckedContinuation<T, any Error>) -> Bool {
        let outcome = state.withLock { state -> Result<T, any Error>? in
            if let outcome = state.outcome { return outcome }
            state.continuation = continuation
            return nil
        }
        guard let outcome else { return true }
        continuation.resume(with: outcome)
        return false
    }

    /// The racing tasks, to cancel when the race ends (at once, if it has).
    func own(_ tasks: [Task<Void, Never>]) {
        let ended = state.withLock { state -> Bool in
            guard state.outcome == nil else { return true }
            state.tasks = tasks
            return false
        }
        if ended { for task in tasks { task.cancel() } }
    }

    func finish(_ result: Result<T, any Error>) {
        let (continuation, tasks) = state.withLock {
            state -> (CheckedContinuation<T, any Error>?, [Task<Void, Never>]) in
            guard state.outcome == nil else { return (nil, []) }
            state.outcome = result
            defer {
                state.continuation = nil
                state.tasks = []
            }
            return (state.continuation, state.tasks)
        }
        for task in tasks { task.cancel() }
        continuation?.resume(with: result)
    }
}

/// The bus of a PostgreSQL store: events come from `LISTEN`, on every node alike.
final class PostgresListener: EventBus {
    private let handlers = Mutex<[@Sendable ([StoredEvent]) -> Void]>([])
    /// The highest id handed to subscribers: every event committed up to it has been handed out.
    private let watermark = Mutex<Int64>(0)
    /// When a batch another node committed (or one this node cannot place) last came.
    private let others = Mutex<ContinuousClock.Instant?>(nil)
    private let deliveryLag: @Sendable (TimeInterval) -> Void
    /// How long a read of the events table may take before the listening starts again on another connection.
    private let timeout: Duration
    /// This node's name in notifications.
    let node: String

    init(node: String, timeout: Duration, deliveryLag: @escaping @Sendable (TimeInterval) -> Void) {
        self.node = node
        self.timeout = timeout
        self.deliveryLag = deliveryLag
    }

    /// Whether a batch another node committed came within `interval`.
    func heardOthers(within interval: Duration) -> Bool {
        guard let last = others.withLock({ $0 }) else { return false }
        return ContinuousClock.now - last < interval
    }

    private func heardOthers() {
        others.withLock { $0 = ContinuousClock.now }
    }

    /// The highest id handed to subscribers.
    var delivered: Int64 {
        get { watermark.withLock { $0 } }
        set { watermark.withLock { $0 = newValue } }
    }

    /// A batch this node has just committed. When it follows the last event handed out, no other node's event
    /// can come before it (event ids follow commit order), so it is handed out at once instead of after its
    /// notification's trip through the database; otherwise that notification hands it out, in order.
    func publish(_ events: [StoredEvent]) {
        guard let first = events.first?.id else { return }
        watermark.withLock { delivered in
            guard first == delivered + 1 else { return }
            handOut(events, &delivered)
        }
    }

    func subscribe(_ handler: @escaping @Sendable ([StoredEvent]) -> Void) {
        handlers.withLock { $0.append(handler) }
    }

    func run(client: PostgresClient, logger: Logger) async {
        while !Task.isCancelled {
            do {
                try await client.withConnection { connection in
                    try await connection.listen(on: PostgresSchema.channel) { notifications in
                        // What was committed while nobody listened (or before this node started listening).
                        self.heardOthers()
                        try await self.fill(upTo: nil, connection, logger: logger)
                        for try await notification in notifications {
                            try await self.receive(notification.payload, connection, logger: logger)
                        }
                    }
                }
            } catch {
                if Task.isCancelled { return }
                logger.warning("event listener lost its connection", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: .milliseconds(250))
        }
    }

    private struct Notice: Decodable {
        let ids: [Int64]
        let at: Double
        let events: [EventRow]?
    }

    private func receive(_ payload: String, _ connection: PostgresConnection, logger: Logger) async throws {
        // A node's own batches, handed out when they committed, come back too: their ids say so without decoding
        // their events.
        let head = NoticeHead(payload)
        if head?.node != node { heardOthers() }
        if let head {
            deliveryLag(Date().timeIntervalSince(Date(timeIntervalSinceReferenceDate: head.at)))
            guard head.last > delivered else { return }
        }
        let notice = try JSONDecoder.rows.decode(Notice.self, from: Data(payload.utf8))
        if head == nil { deliveryLag(Date().timeIntervalSince(Date(timeIntervalSinceReferenceDate: notice.at))) }
        guard let first = notice.ids.first, let last = notice.ids.last, last > delivered else { return }
        if first > delivered + 1 { try await fill(upTo: first - 1, connection, logger: logger) }
        if let rows = notice.events, rows.count == notice.ids.count {
            let at = Date(timeIntervalSinceReferenceDate: notice.at)
            let events = try zip(notice.ids, rows).filter { $0.0 > delivered }.map { id, row in
                StoredEvent(id: id, at: at, envelope: try row.envelope())
            }
            hand(events)
        } else {
            try await fill(upTo: last, connection, logger: logger)
        }
    }

    /// Reads events after ``delivered`` (up to `last`, or all) from the table and hands them out; a connection
    /// that does not answer within ``timeout`` fails the listening, which starts again on another.
    private func fill(upTo last: Int64?, _ connection: PostgresConnection, logger: Logger) async throws {
        let after = delivered
        let events: [StoredEvent]
        do {
            events = try await read(after: after, upTo: last, connection, logger: logger)
        } catch {
            // The connection goes with the read it may still be running: none goes back to the pool busy.
            let _: EventLoopFuture<Void> = connection.close()
            throw error
        }
        if let newest = events.last { deliveryLag(Date().timeIntervalSince(newest.at)) }
        // Every id up to `last` that is not in the table never committed.
        hand(events, through: last)
    }

    private func read(after: Int64, upTo last: Int64?, _ connection: PostgresConnection, logger: Logger)
        async throws -> [StoredEvent]
    {
        try await withDeadline(timeout) {
            let rows = try await connection.query(
                """
                SELECT id, at, recipient, devices, name, call_id, data FROM events
                WHERE id > \(after) AND (\(last)::bigint IS NULL OR id <= \(last)) ORDER BY id
                """, logger: logger)
            var events: [StoredEvent] = []
            for try await row in rows.decode((Int64, Double, String, String, String, String, ByteBuffer).self) {
                events.append(try PostgresRows.stored(row))
            }
            return events
        }
    }

    /// Hands out those of `events` (ascending ids) not handed out yet, then counts every id up to `last` as
    /// handed out. The listener and the commits hand out under one lock, so subscribers see ids in order.
    private func hand(_ events: [StoredEvent], through last: Int64? = nil) {
        watermark.withLock { delivered in
            handOut(events, &delivered)
            if let last, last > delivered { delivered = last }
        }
    }

    private func handOut(_ events: [StoredEvent], _ delivered: inout Int64) {
        let fresh = events.filter { $0.id > delivered }
        guard let newest = fresh.last else { return }
        delivered = newest.id
        for handler in handlers.withLock({ $0 }) { handler(fresh) }
    }
}

/// The time, ids and node at the head of a notification, read without decoding the rest. PostgreSQL writes jsonb's
/// keys shortest first: `{"at": 812345678.5, "ids": [41, 42], "node": "…", "events": [...]}`; anything else is nil
/// (and decoded whole). A node's name is a UUID: no escapes.
struct NoticeHead: Equatable {
    let at: Double
    let last: Int64
    /// The node that committed the batch (nil from a node that does not say).
    let node: String?

    init?(_ payload: String) {
        var rest = Substring(payload)
        guard Self.skip(#"{"at": "#, &rest), let comma = rest.firstIndex(of: ","),
            let at = Double(rest[..<comma])
        else { return nil }
        rest = rest[comma...]
        guard Self.skip(#", "ids": ["#, &rest), let close = rest.firstIndex(of: "]"),
            let last = rest[..<close].split(separator: ", ").last.flatMap({ Int64($0) })
        else { return nil }
        rest = rest[rest.index(after: close)...]
        self.at = at
        self.last = last
        if Self.skip(#", "node": ""#, &rest), let quote = rest.firstIndex(of: "\"") {
            node = String(rest[..<quote])
        } else {
            node = nil
        }
    }

    private static func skip(_ prefix: String, _ rest: inout Substring) -> Bool {
        guard rest.hasPrefix(prefix) else { return false }
        rest = rest.dropFirst(prefix.count)
        return true
    }
}

/// `postgres://` URLs.
struct PostgresURL {
    let host: String
    let port: Int
    let user: String
    let password: String?
    let database: String
    let tls: PostgresClient.Configuration.TLS

    init(_ text: String) throws {
        guard let url = URLComponents(string: text), ["postgres", "postgresql"].contains(url.scheme ?? ""),
            let host = url.host, !host.isEmpty, let user = url.user, !user.isEmpty
        else {
            throw StoreCorruption("the database URL must look like postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE")
        }
        self.host = host
        port = url.port ?? 5432
        self.user = user.removingPercentEncoding ?? user
        password = url.password.map { $0.removingPercentEncoding ?? $0 }
        let path = url.path.hasPrefix("/") ? String(url.path.dropFirst()) : url.path
        database = path.isEmpty ? self.user : path
        switch url.queryItems?.first(where: { $0.name == "sslmode" })?.value ?? "prefer" {
        case "disable": tls = .disable
        case "prefer": tls = .prefer(.makeClientConfiguration())
        case "require": tls = .require(.makeClientConfiguration())
        case let other: throw StoreCorruption("sslmode \(other) is not one of disable, prefer, require")
        }
    }
}

/// Rows as JSON (`to_jsonb`, `jsonb_populate_recordset`): one shape per table, written with JSONRowWriter and read
/// with JSONRowReader (or JSONDecoder, for anything else).
enum PostgresRows {
    /// A batch's changed calls (``PostgresCallStore/latest(_:)`` of its events), timeline lines and events, as the
    /// commit functions take them.
    static func json(changed: [Call], events: [CallEvent], envelopes: [Envelope])
        -> (calls: String, timeline: String, events: String)
    {
        (
            json(changed.map(CallRow.init)),
            json(events.compactMap { event in event.timelineEntry.map { TimelineRow(event.call, $0) } }),
            json(envelopes.map(EventRow.init))
        )
    }

    static func json(_ rows: [CallRow]) -> String {
        JSONRowWriter.array(rows) { row, object in
            object.field("id", row.id)
            object.field("caller", row.caller)
            object.field("caller_device", row.callerDevice)
            object.field("callee", row.callee)
            object.field("state", row.state)
            object.field("end_reason", row.endReason)
            object.field("created_at", row.createdAt)
            object.field("answered_at", row.answeredAt)
            object.field("ended_at", row.endedAt)
            object.field("answered_by", row.answeredBy)
            object.field("ringing_devices", row.ringingDevices)
            object.field("ring_deadline", row.ringDeadline)
            object.field("offer", row.offer)
            object.field("timeline_length", row.timelineLength)
            object.field("media", row.media)
            object.field("failure", row.failure)
            object.field("media_node", row.mediaNode)
        }
    }

    static func json(_ rows: [TimelineRow]) -> String {
        JSONRowWriter.array(rows) { row, object in
            object.field("call_id", row.callId)
            object.field("seq", row.seq)
            object.field("at", row.at)
            object.field("event", row.event)
            object.field("actor", row.actor)
            object.field("device", row.device)
            object.field("reason", row.reason)
        }
    }

    static func json(_ rows: [EventRow]) -> String {
        JSONRowWriter.array(rows) { row, object in
            object.field("recipient", row.recipient)
            object.field("devices", row.devices)
            object.field("name", row.name)
            object.field("call_id", row.callId)
            object.field("data", row.data)
        }
    }

    /// A `to_jsonb` of a calls row.
    static func call(_ text: String) throws -> Call {
        if let object = JSONRowReader(text), let id = object.string("id"), let caller = object.string("caller"),
            let callerDevice = object.string("caller_device"), let callee = object.string("callee"),
            let state = object.string("state"), let createdAt = object.double("created_at"),
            let ringingDevices = object.string("ringing_devices"),
            let timelineLength = object.string("timeline_length").flatMap({ Int($0) }),
            let media = object.string("media")
        {
            let row = CallRow(
                id: id, caller: caller, callerDevice: callerDevice, callee: callee, state: state,
                endReason: object.string("end_reason"), createdAt: createdAt,
                answeredAt: object.double("answered_at"), endedAt: object.double("ended_at"),
                answeredBy: object.string("answered_by"), ringingDevices: ringingDevices,
                ringDeadline: object.double("ring_deadline"), offer: object.string("offer"),
                timelineLength: timelineLength, media: media, failure: object.string("failure"),
                mediaNode: object.string("media_node"))
            return try row.call()
        }
        return try JSONDecoder.rows.decode(CallRow.self, from: Data(text.utf8)).call()
    }

    static func stored(_ row: (Int64, Double, String, String, String, String, ByteBuffer)) throws -> StoredEvent {
        guard let devices = Delivery.Devices(storedForm: row.3) else { throw StoreCorruption("event \(row.0) devices") }
        return StoredEvent(
            id: row.0, at: Date(timeIntervalSinceReferenceDate: row.1),
            envelope: Envelope(
                user: row.2, devices: devices, name: row.4, callID: row.5, data: Array(row.6.readableBytesView)))
    }
}

extension JSONDecoder {
    static var rows: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return decoder
    }
}

struct TimelineRow: Codable {
    var callId: String
    var seq: Int
    var at: Double
    var event: String
    var actor: String
    var device: String?
    var reason: String?

    init(_ call: Call, _ entry: TimelineEntry) {
        callId = call.id
        seq = call.timelineLength - 1
        at = entry.at.timeIntervalSinceReferenceDate
        event = entry.event
        actor = entry.user
        device = entry.device
        reason = entry.reason
    }

    var entry: TimelineEntry {
        TimelineEntry(
            at: Date(timeIntervalSinceReferenceDate: at), event: event, user: actor, device: device, reason: reason)
    }
}

struct EventRow: Codable {
    var recipient: String
    var devices: String
    var name: String
    var callId: String
    /// Base64.
    var data: String

    init(_ envelope: Envelope) {
        recipient = envelope.user
        devices = envelope.devices.storedForm
        name = envelope.name
        callId = envelope.callID
        data = Data(envelope.data).base64EncodedString()
    }

    func envelope() throws -> Envelope {
        guard let devices = Delivery.Devices(storedForm: devices), let bytes = Data(base64Encoded: data) else {
            throw StoreCorruption("a notified event is malformed")
        }
        return Envelope(user: recipient, devices: devices, name: name, callID: callId, data: Array(bytes))
    }
}
