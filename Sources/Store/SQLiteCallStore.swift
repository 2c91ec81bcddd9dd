public import Foundation
import GRDB
public import SwitchboardCore

/// Calls and events in one SQLite file (`--store sqlite:PATH`, the default): a restart, even after `kill -9`,
/// loses nothing that was answered to a client.
///
/// One writer (GRDB's pool: a serialized writer, readers beside it on the WAL) commits transitions in batches (group
/// commit: those that arrive while one batch commits form the next), each batch one immediate transaction, and
/// publishes their events right after the commit, still on the writer, so the bus sees batches in id order; reads
/// (history, resumption, deadlines) never wait behind it. The journal is WAL with
/// `synchronous = NORMAL`: durable across a crash of the process; a power loss may lose the last transactions.
/// Checkpoints (copying the WAL into the database file, and its fsyncs) run on a connection of their own every
/// ``checkpointInterval``, never on the writer: SQLite's automatic checkpoint runs inside the commit that crosses
/// its threshold, and stalled that commit and every transition queued behind it (the delivery p99 went from
/// 5.5 to 14 ms with it).
public final class SQLiteCallStore: CallStore {
    public let bus: any EventBus
    public var kind: String { "sqlite" }
    public var isShared: Bool { false }
    public let path: String
    private let database: DatabasePool
    private let configuration: CallRegistry.Configuration
    private let encode: EnvelopeEncoder
    private let batches = GroupCommit()
    /// The task that runs the checkpoints on their own connection (cancelled with the store).
    private let checkpoints: Task<Void, Never>

    /// How often the WAL is checkpointed (PASSIVE: never waits for readers or the writer).
    static let checkpointInterval: Duration = .milliseconds(200)

    /// Opens (and creates, with its directory) the file at `path` and runs the schema migrations.
    public init(
        path: String, configuration: CallRegistry.Configuration, bus: any EventBus = LocalEventBus(),
        encode: @escaping EnvelopeEncoder
    ) throws {
        self.path = path
        self.bus = bus
        self.configuration = configuration
        self.encode = encode
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var options = GRDB.Configuration()
        options.foreignKeysEnabled = true
        options.busyMode = .timeout(5)
        options.prepareDatabase { db in
            // No automatic checkpoint in a commit (the checkpointer does them); the WAL file is cut back to 64 MiB
            // when it restarts after a complete checkpoint.
            try db.execute(
                sql: "PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 67108864")
        }
        database = try DatabasePool(path: path, configuration: options)
        try SQLiteSchema.migrator.migrate(database)
        var checkpointOptions = GRDB.Configuration()
        checkpointOptions.label = "switchboard.sqlite.checkpoint"
        checkpointOptions.busyMode = .timeout(1)
        let checkpointer = try DatabaseQueue(path: path, configuration: checkpointOptions)
        checkpoints = Task.detached(priority: .utility) {
            while (try? await Task.sleep(for: Self.checkpointInterval)) != nil {
                // A checkpoint that cannot finish (a reader on an old snapshot) finishes on a later round.
                _ = try? await checkpointer.writeWithoutTransaction { db in try db.checkpoint(.passive) }
            }
        }
    }

    deinit { checkpoints.cancel() }

    public func apply(_ input: CallInput, now: Date) async throws(CallError) -> Applied {
        // The closure lives only while its batches drain: no cycle.
        try await batches.apply(input, now: now) { inputs throws(CallError) in try await self.commitBatch(inputs) }
    }

    /// One immediate transaction for a batch of transitions (group commit): the calls all of them need are loaded
    /// first, the inputs decided in order on one registry, and what the accepted ones changed written with their
    /// events, which reach the bus right after the commit, still on the writer, so batches reach it in id order.
    private func commitBatch(_ inputs: [(input: CallInput, now: Date)]) async throws(CallError)
        -> [Result<Applied, CallError>]
    {
        let configuration = configuration
        let encode = encode
        let bus = bus
        return try await run {
            try await self.database.writeWithoutTransaction { db in
                var results: [Result<Applied, CallError>] = []
                var stored: [StoredEvent] = []
                try db.inTransaction(.immediate) {
                    var calls: [String: Call] = [:]
                    for (input, now) in inputs {
                        for call in try SQLiteRows.load(for: input, now: now, db) where calls[call.id] == nil {
                            calls[call.id] = call
                        }
                    }
                    let decision = BatchDecision(
                        inputs, calls: Array(calls.values), configuration: configuration, encode: encode)
                    try SQLiteRows.write(decision.events, db)
                    // One batch, one time: the latest of its inputs' (they are moments apart).
                    stored = try SQLiteRows.insert(decision.envelopes, at: inputs.map(\.now).max()!, db)
                    results = decision.applied(stored: stored)
                    return .commit
                }
                if !stored.isEmpty { bus.publish(stored) }
                return results
            }
        }
    }

    public func call(_ id: String) async throws(CallError) -> Call? {
        try await run {
            try await self.database.read { db in
                guard let row = try Row.fetchOne(db, sql: "SELECT * FROM calls WHERE id = ?", arguments: [id]) else {
                    return nil
                }
                let timeline = try Row.fetchAll(
                    db, sql: "SELECT * FROM timeline WHERE call_id = ? ORDER BY seq", arguments: [id]
                ).map(SQLiteRows.timelineEntry)
                return try SQLiteRows.call(row).withTimeline(timeline)
            }
        }
    }

    public func calls(of user: String?, states: Set<CallState>?, before: HistoryCursor?, limit: Int)
        async throws(CallError) -> [Call]
    {
        let query = SQLiteRows.historyQuery(of: user, states: states, before: before, limit: limit)
        return try await run {
            try await self.database.read { db in
                try Row.fetchAll(db, sql: query.sql, arguments: query.arguments).map(SQLiteRows.call)
            }
        }
    }

    public func pendingInvites(to callee: String) async throws(CallError) -> [Call] {
        try await run {
            try await self.database.read { db in
                try Row.fetchAll(
                    db,
                    sql: """
                        SELECT * FROM calls WHERE callee = ? AND state IN ('inviting', 'ringing')
                        ORDER BY created_at, id
                        """, arguments: [callee]
                ).map(SQLiteRows.call)
            }
        }
    }

    public func nextDeadline() async throws(CallError) -> Date? {
        try await run {
            try await self.database.read { db in
                try Double.fetchOne(
                    db, sql: "SELECT MIN(ring_deadline) FROM calls WHERE state IN ('inviting', 'ringing')"
                ).map(Date.init(timeIntervalSinceReferenceDate:))
            }
        }
    }

    public func countsByState() async throws(CallError) -> [CallState: Int] {
        try await run {
            try await self.database.read { db in
                var counts: [CallState: Int] = [:]
                for state in CallState.allCases { counts[state] = 0 }
                for row in try Row.fetchAll(db, sql: "SELECT state, COUNT(*) AS n FROM calls GROUP BY state") {
                    if let state = CallState(rawValue: row["state"]) { counts[state] = row["n"] }
                }
                return counts
            }
        }
    }

    public func events(for user: String, after id: Int64, limit: Int) async throws(CallError) -> EventPage {
        try await run {
            try await self.database.read { db in
                let events = try Row.fetchAll(
                    db, sql: "SELECT * FROM events WHERE user = ? AND id > ? ORDER BY id LIMIT ?",
                    arguments: [user, id, limit]
                ).map(SQLiteRows.storedEvent)
                return EventPage(
                    events: events, head: try SQLiteRows.head(db), completeAfter: try SQLiteRows.prunedThrough(db))
            }
        }
    }

    public func append(_ envelopes: [Envelope], now: Date) async throws(CallError) -> [StoredEvent] {
        let bus = bus
        return try await run {
            try await self.database.writeWithoutTransaction { db in
                var stored: [StoredEvent] = []
                try db.inTransaction(.immediate) {
                    stored = try SQLiteRows.insert(envelopes, at: now, db)
                    return .commit
                }
                bus.publish(stored)
                return stored
            }
        }
    }

    public func prune(eventsBefore: Date, callsEndedBefore: Date, ticketsExpiredBefore: Date)
        async throws(CallError)
    {
        try await run {
            try await self.database.write { db in
                let cutoff = eventsBefore.timeIntervalSinceReferenceDate
                if let last = try Int64.fetchOne(
                    db, sql: "SELECT MAX(id) FROM events WHERE at < ?", arguments: [cutoff])
                {
                    try db.execute(sql: "DELETE FROM events WHERE id <= ?", arguments: [last])
                    try db.execute(
                        sql: "UPDATE meta SET value = MAX(value, ?) WHERE key = 'pruned_through'", arguments: [last])
                }
                try db.execute(
                    sql: "DELETE FROM calls WHERE state = 'ended' AND ended_at < ?",
                    arguments: [callsEndedBefore.timeIntervalSinceReferenceDate])
                try db.execute(
                    sql: "DELETE FROM stream_tickets WHERE expires < ?",
                    arguments: [ticketsExpiredBefore.timeIntervalSinceReferenceDate])
            }
        }
    }

    public func storeTicket(_ hash: String, _ payload: [UInt8], expires: Date) async throws(CallError) {
        try await run {
            try await self.database.write { db in
                try db.execute(
                    sql: "INSERT INTO stream_tickets (hash, payload, expires) VALUES (?, ?, ?)",
                    arguments: [hash, Data(payload), expires.timeIntervalSinceReferenceDate])
            }
        }
    }

    public func redeemTicket(_ hash: String, now: Date) async throws(CallError) -> [UInt8]? {
        try await run {
            try await self.database.write { db -> [UInt8]? in
                guard
                    let row = try Row.fetchOne(
                        db, sql: "DELETE FROM stream_tickets WHERE hash = ? RETURNING payload, expires",
                        arguments: [hash])
                else { return nil }
                let expires: Double = row["expires"]
                let payload: Data = row["payload"]
                return expires > now.timeIntervalSinceReferenceDate ? Array(payload) : nil
            }
        }
    }

    public func check() async throws(CallError) {
        try await run { try await self.database.read { db in try db.execute(sql: "SELECT 1 FROM meta LIMIT 1") } }
    }

    /// Runs a database operation: a refusal of the registry passes through, anything else is the store failing.
    private func run<T: Sendable>(_ body: () async throws -> T) async throws(CallError) -> T {
        do {
            return try await body()
        } catch let error as CallError {
            throw error
        } catch {
            throw CallError.storeUnavailable
        }
    }
}

/// The schema, one migration per version; GRDB records which ran.
enum SQLiteSchema {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE calls (
                        id TEXT PRIMARY KEY NOT NULL,
                        caller TEXT NOT NULL,
                        caller_device TEXT NOT NULL,
                        callee TEXT NOT NULL,
                        state TEXT NOT NULL,
                        end_reason TEXT,
                        created_at REAL NOT NULL,
                        answered_at REAL,
                        ended_at REAL,
                        answered_by TEXT,
                        ringing_devices TEXT NOT NULL,
                        ring_deadline REAL,
                        offer TEXT,
                        timeline_length INTEGER NOT NULL,
                        media TEXT NOT NULL,
                        failure TEXT
                    );
                    CREATE INDEX calls_by_caller ON calls (caller, created_at, id);
                    CREATE INDEX calls_by_callee ON calls (callee, created_at, id);
                    CREATE INDEX calls_by_time ON calls (created_at, id);
                    CREATE INDEX calls_live_by_caller ON calls (caller) WHERE state IN ('inviting', 'ringing', 'active');
                    CREATE INDEX calls_live_by_callee ON calls (callee) WHERE state IN ('inviting', 'ringing', 'active');
                    CREATE INDEX calls_pending_deadline ON calls (ring_deadline) WHERE state IN ('inviting', 'ringing');
                    CREATE INDEX calls_ended ON calls (ended_at) WHERE state = 'ended';
                    CREATE TABLE timeline (
                        call_id TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
                        seq INTEGER NOT NULL,
                        at REAL NOT NULL,
                        event TEXT NOT NULL,
                        user TEXT NOT NULL,
                        device TEXT,
                        reason TEXT,
                        PRIMARY KEY (call_id, seq)
                    );
                    CREATE TABLE events (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        at REAL NOT NULL,
                        user TEXT NOT NULL,
                        devices TEXT NOT NULL,
                        name TEXT NOT NULL,
                        call_id TEXT NOT NULL,
                        data BLOB NOT NULL
                    );
                    CREATE INDEX events_by_user ON events (user, id);
                    CREATE INDEX events_by_time ON events (at);
                    CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL);
                    INSERT INTO meta (key, value) VALUES ('pruned_through', 0);
                    """)
        }
        migrator.registerMigration("v2") { db in
            try db.execute(
                sql: """
                    CREATE TABLE stream_tickets (hash TEXT PRIMARY KEY NOT NULL, payload BLOB NOT NULL, expires REAL NOT NULL);
                    CREATE INDEX stream_tickets_by_expiry ON stream_tickets (expires);
                    """)
        }
        migrator.registerMigration("v3") { db in
            try db.execute(sql: "ALTER TABLE calls ADD COLUMN media_node TEXT")
        }
        return migrator
    }
}

/// Rows to values and back; every statement takes its values as arguments, never spliced into the SQL.
enum SQLiteRows {
    static let liveStates = "('inviting', 'ringing', 'active')"

    /// The calls `input` needs: the call it names, and the pending and active calls of its users.
    static func load(for input: CallInput, now: Date, _ db: Database) throws -> [Call] {
        var calls: [String: Call] = [:]
        var users = Set(input.users)
        if let id = input.callID,
            let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM calls WHERE id = ?"), arguments: [id])
        {
            let call = try self.call(row)
            calls[call.id] = call
            if input.needsParties { users.formUnion([call.caller, call.callee]) }
        }
        if !input.needsParties { users = [] }
        for user in users.sorted() {
            // Each half reads a partial index of live calls: a user's history does not slow their transitions.
            let rows = try Row.fetchAll(
                db.cachedStatement(
                    sql: """
                        SELECT * FROM calls WHERE caller = ? AND state IN \(liveStates)
                        UNION SELECT * FROM calls WHERE callee = ? AND state IN \(liveStates)
                        """), arguments: [user, user])
            for row in rows {
                let call = try self.call(row)
                calls[call.id] = call
            }
        }
        if case .expire = input {
            let rows = try Row.fetchAll(
                db,
                sql: "SELECT * FROM calls WHERE state IN ('inviting', 'ringing') AND ring_deadline <= ?",
                arguments: [now.timeIntervalSinceReferenceDate])
            for row in rows {
                let call = try self.call(row)
                calls[call.id] = call
            }
        }
        return Array(calls.values)
    }

    /// Writes the calls the events changed (the last snapshot of each) and their timeline lines.
    static func write(_ events: [CallEvent], _ db: Database) throws {
        var latest: [String: Call] = [:]
        var order: [String] = []
        for event in events {
            if latest.updateValue(event.call, forKey: event.call.id) == nil { order.append(event.call.id) }
        }
        for id in order { try upsert(latest[id]!, db) }
        for event in events {
            guard let entry = event.timelineEntry else { continue }
            try db.cachedStatement(
                sql: "INSERT INTO timeline (call_id, seq, at, event, user, device, reason) VALUES (?, ?, ?, ?, ?, ?, ?)"
            ).execute(
                arguments: [
                    event.call.id, event.call.timelineLength - 1, entry.at.timeIntervalSinceReferenceDate, entry.event,
                    entry.user, entry.device, entry.reason,
                ])
        }
    }

    static func upsert(_ call: Call, _ db: Database) throws {
        try db.cachedStatement(
            sql: """
                INSERT INTO calls (id, caller, caller_device, callee, state, end_reason, created_at, answered_at,
                    ended_at, answered_by, ringing_devices, ring_deadline, offer, timeline_length, media, failure,
                    media_node)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (id) DO UPDATE SET state = excluded.state, end_reason = excluded.end_reason,
                    answered_at = excluded.answered_at, ended_at = excluded.ended_at,
                    answered_by = excluded.answered_by, ringing_devices = excluded.ringing_devices,
                    ring_deadline = excluded.ring_deadline, offer = excluded.offer,
                    timeline_length = excluded.timeline_length, media = excluded.media, failure = excluded.failure
                """
        ).execute(arguments: StatementArguments(CallRow(call).columns))
    }

    /// Stores envelopes with the next ids.
    static func insert(_ envelopes: [Envelope], at now: Date, _ db: Database) throws -> [StoredEvent] {
        try envelopes.map { envelope in
            try db.cachedStatement(
                sql: "INSERT INTO events (at, user, devices, name, call_id, data) VALUES (?, ?, ?, ?, ?, ?)"
            ).execute(
                arguments: [
                    now.timeIntervalSinceReferenceDate, envelope.user, envelope.devices.storedForm, envelope.name,
                    envelope.callID, Data(envelope.data),
                ])
            return StoredEvent(id: db.lastInsertedRowID, at: now, envelope: envelope)
        }
    }

    static func head(_ db: Database) throws -> Int64 {
        try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'events'") ?? 0
    }

    static func prunedThrough(_ db: Database) throws -> Int64 {
        try Int64.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'pruned_through'") ?? 0
    }

    static func historyQuery(of user: String?, states: Set<CallState>?, before: HistoryCursor?, limit: Int) -> (
        sql: String, arguments: StatementArguments
    ) {
        // Only fixed SQL text is put together here; every value is an argument.
        var conditions: [String] = []
        var arguments: [(any DatabaseValueConvertible)?] = []
        if let user {
            conditions.append("(caller = ? OR callee = ?)")
            arguments += [user, user]
        }
        if let states {
            let names = CallState.allCases.filter(states.contains)
            conditions.append("state IN (" + names.map { _ in "?" }.joined(separator: ", ") + ")")
            arguments += names.map(\.rawValue)
        }
        if let before {
            let at = before.createdAt.timeIntervalSinceReferenceDate
            conditions.append("(created_at < ? OR (created_at = ? AND id < ?))")
            arguments += [at, at, before.id]
        }
        let filter = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
        arguments.append(min(limit, 1_000_000))
        return (
            "SELECT * FROM calls\(filter) ORDER BY created_at DESC, id DESC LIMIT ?", StatementArguments(arguments)
        )
    }

    static func call(_ row: Row) throws -> Call {
        try CallRow(row: row).call()
    }

    static func timelineEntry(_ row: Row) -> TimelineEntry {
        TimelineEntry(
            at: Date(timeIntervalSinceReferenceDate: row["at"]), event: row["event"], user: row["user"],
            device: row["device"], reason: row["reason"])
    }

    static func storedEvent(_ row: Row) throws -> StoredEvent {
        guard let devices = Delivery.Devices(storedForm: row["devices"]) else {
            throw StoreCorruption("event \(row["id"] as Int64? ?? 0) has unknown devices")
        }
        let data: Data = row["data"]
        return StoredEvent(
            id: row["id"], at: Date(timeIntervalSinceReferenceDate: row["at"]),
            envelope: Envelope(
                user: row["user"], devices: devices, name: row["name"], callID: row["call_id"], data: Array(data)))
    }
}

extension CallRow {
    init(row: Row) {
        id = row["id"]
        caller = row["caller"]
        callerDevice = row["caller_device"]
        callee = row["callee"]
        state = row["state"]
        endReason = row["end_reason"]
        createdAt = row["created_at"]
        answeredAt = row["answered_at"]
        endedAt = row["ended_at"]
        answeredBy = row["answered_by"]
        ringingDevices = row["ringing_devices"]
        ringDeadline = row["ring_deadline"]
        offer = row["offer"]
        timelineLength = row["timeline_length"]
        media = row["media"]
        failure = row["failure"]
        mediaNode = row["media_node"]
    }

    /// The values in the order of the `calls` table's columns.
    var columns: [(any DatabaseValueConvertible)?] {
        [
            id, caller, callerDevice, callee, state, endReason, createdAt, answeredAt, endedAt, answeredBy,
            ringingDevices, ringDeadline, offer, timelineLength, media, failure, mediaNode,
        ]
    }
}

/// A row the store cannot read back: reported as the store being unavailable, never served.
struct StoreCorruption: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
