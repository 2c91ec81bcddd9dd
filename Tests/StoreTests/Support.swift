import Foundation
import Logging
import PostgresNIO
import Store
import SwitchboardCore
import Synchronization
import TestSupport
import Testing

let t0 = Date(timeIntervalSinceReferenceDate: 800_000_000)

/// A store under test and how to clean up after it.
struct StoreFixture: Sendable {
    let store: any CallStore
    let cleanup: @Sendable () -> Void

    func remove() { cleanup() }
}

/// Event ids a bus handed to a subscriber, and a way to wait for a number of them.
final class Seen: Sendable {
    private let state = Mutex<(ids: [Int64], waiters: [(Int, CheckedContinuation<Void, Never>)])>(([], []))

    var ids: [Int64] { state.withLock { $0.ids } }

    func add(_ ids: [Int64]) {
        let ready = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.ids += ids
            let count = state.ids.count
            let ready = state.waiters.filter { $0.0 <= count }.map(\.1)
            state.waiters.removeAll { $0.0 <= count }
            return ready
        }
        for waiter in ready { waiter.resume() }
    }

    /// Waits until `count` ids arrived; false if they did not within `seconds` (a guard, not a synchronisation).
    func wait(forCount count: Int, seconds: Double = 10) async -> Bool {
        let guardTask = Task { [self] in
            try? await Task.sleep(for: .seconds(seconds))
            let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
                defer { state.waiters.removeAll() }
                return state.waiters.map(\.1)
            }
            for waiter in waiters { waiter.resume() }
        }
        defer { guardTask.cancel() }
        await withCheckedContinuation { continuation in
            let done = state.withLock { state -> Bool in
                if state.ids.count >= count { return true }
                state.waiters.append((count, continuation))
                return false
            }
            if done { continuation.resume() }
        }
        return state.withLock { $0.ids.count } >= count
    }
}

/// The stores this machine can run: PostgreSQL when `SWITCHBOARD_TEST_DATABASE_URL` names a server
/// (`scripts/test` starts one; without it the PostgreSQL cases are left out, and `scripts/test` says so).
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case memory
    case sqlite
    case postgres
    /// PostgreSQL loading every batch: the path a node takes when other nodes' events keep its cache aside.
    case postgresLoading = "postgres-loading"

    static var databaseURL: String? { ProcessInfo.processInfo.environment["SWITCHBOARD_TEST_DATABASE_URL"] }

    static var available: [StoreKind] { databaseURL == nil ? [.memory, .sqlite] : allCases }

    var testDescription: String { rawValue }

    func make(configuration: CallRegistry.Configuration = .init()) async throws -> StoreFixture {
        switch self {
        case .memory:
            return StoreFixture(
                store: MemoryCallStore(configuration: configuration, backlogSize: 256, encode: Encoding.envelopes),
                cleanup: {})
        case .sqlite:
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
                "switchboard-store-\(UUID().uuidString)")
            let path = directory.appendingPathComponent("calls.sqlite").path
            let store = try SQLiteCallStore(path: path, configuration: configuration, encode: Encoding.envelopes)
            return StoreFixture(store: store, cleanup: { try? FileManager.default.removeItem(at: directory) })
        case .postgres, .postgresLoading:
            let (url, drop) = try await TestDatabase.create()
            let store = try await PostgresCallStore(
                url: url, configuration: configuration, encode: Encoding.envelopes, caching: self == .postgres)
            return StoreFixture(
                store: store,
                cleanup: {
                    store.close()
                    drop()
                })
        }
    }
}

/// A stand-in for the server's wire format: one envelope per recipient and one for watchers, as the server does.
enum Encoding {
    @Sendable static func envelopes(_ event: CallEvent) -> [Envelope] {
        var envelopes = event.deliveries.map {
            Envelope(
                user: $0.user, devices: $0.devices, name: $0.event.name, callID: event.callID,
                data: Array("{\"call\":\"\(event.callID)\"}".utf8))
        }
        if case .signal = event.kind {
        } else {
            envelopes.append(
                Envelope(user: Envelope.watchers, devices: .all, name: event.name, callID: event.callID, data: []))
        }
        return envelopes
    }
}

/// A fresh database on the test server for each fixture, dropped afterwards.
enum TestDatabase {
    static func create() async throws -> (url: String, drop: @Sendable () -> Void) {
        let base = try #require(StoreKind.databaseURL)
        let name = "sb_test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16)
        try await admin(base, "CREATE DATABASE \(name)")
        var components = try #require(URLComponents(string: base))
        components.path = "/" + name
        let url = try #require(components.string)
        return (url, { Task { try? await admin(base, "DROP DATABASE IF EXISTS \(name) WITH (FORCE)") } })
    }

    /// `count` PostgreSQL stores on one fresh database, as a cluster's nodes; `drop` closes them and drops it.
    static func nodes(_ count: Int) async throws -> (nodes: [PostgresCallStore], drop: @Sendable () -> Void) {
        let (url, drop) = try await create()
        var nodes: [PostgresCallStore] = []
        for _ in 0..<count {
            nodes.append(try await PostgresCallStore(url: url, configuration: .init(), encode: Encoding.envelopes))
        }
        let all = nodes
        return (
            all,
            {
                for node in all { node.close() }
                drop()
            }
        )
    }

    /// A connection to the database `url` names (its `postgres` database when `database` says so).
    static func connect(_ url: String, database: String? = nil) async throws -> PostgresConnection {
        let components = try #require(URLComponents(string: url))
        let configuration = PostgresConnection.Configuration(
            host: components.host ?? "127.0.0.1", port: components.port ?? 5432,
            username: components.user ?? "postgres",
            password: components.password, database: database ?? String(components.path.dropFirst()), tls: .disable)
        return try await PostgresConnection.connect(
            configuration: configuration, id: 1, logger: Logger(label: "test-admin"))
    }

    /// Runs one statement on the server's `postgres` database (test code: the names are made here).
    static func admin(_ base: String, _ sql: String) async throws {
        let connection = try await connect(base, database: "postgres")
        defer { Task { try? await connection.close() } }
        _ = try await connection.query(PostgresQuery(unsafeSQL: sql), logger: Logger(label: "test-admin"))
    }
}
