import Foundation
import Logging
import PostgresNIO
import SwitchboardCore
import Testing

@testable import Store

/// How a PostgreSQL node hands events to its subscribers: a batch it commits goes out at once when nothing can come
/// before it, everything else through `LISTEN`, and every node's subscribers see every event once, in id order.
@Suite(.enabled(if: StoreKind.databaseURL != nil, "needs SWITCHBOARD_TEST_DATABASE_URL"))
struct PostgresDeliveryTests {
    @Test func twoNodesEachSeeEveryEventOnceInIdOrder() async throws {
        let (nodes, drop) = try await TestDatabase.nodes(2)
        defer { drop() }
        let seen = [Seen(), Seen()]
        for (node, seen) in zip(nodes, seen) { node.bus.subscribe { events in seen.add(events.map(\.id)) } }
        // Both nodes commit at once: each one's own batches interleave with the other's in id order.
        let stored = await withTaskGroup(of: [Int64].self) { group in
            for index in 0..<60 {
                group.addTask {
                    let node = nodes[index % 2]
                    let id = "n\(index)"
                    let invited = try? await node.apply(
                        .invite(
                            id: id, caller: "u\(index)", device: "d", callee: "v\(index)", offer: nil, media: .direct),
                        now: t0)
                    let ended = try? await node.apply(.hangup(id: id, user: "u\(index)", device: "d"), now: t0 + 1)
                    return (invited?.stored ?? []).map(\.id) + (ended?.stored ?? []).map(\.id)
                }
            }
            return await group.reduce(into: [Int64]()) { $0 += $1 }
        }
        #expect(stored.count == 60 * 5)
        for seen in seen {
            #expect(await seen.wait(forCount: stored.count))
            #expect(seen.ids == stored.sorted())
        }
    }

    @Test func aNotificationsHeadIsReadWithoutItsEvents() async throws {
        let (url, drop) = try await TestDatabase.create()
        defer { drop() }
        let store = try await PostgresCallStore(url: url, configuration: .init(), encode: Encoding.envelopes)
        defer { store.close() }
        let connection = try await TestDatabase.connect(url)
        defer { Task { try? await connection.close() } }
        let (payload, last) = try await withDeadline(.seconds(10)) {
            try await connection.listen(on: PostgresSchema.channel) { notifications in
                let applied = try await store.apply(
                    .invite(id: "h1", caller: "alice", device: "a1", callee: "bob", offer: nil, media: .direct),
                    now: t0)
                var iterator = notifications.makeAsyncIterator()
                return (try await iterator.next()?.payload, applied.stored.last?.id)
            }
        }
        let text = try #require(payload)
        let head = try #require(NoticeHead(text), "\(text)")
        #expect(head.last == last)
        #expect(head.at == t0.timeIntervalSinceReferenceDate)
        // The store's sessions name it: its own batches are told from other nodes'.
        #expect(head.node != nil && head.node == store.node)
    }

    @Test func noticeHeadsReadOnlyTheirOwnShape() {
        let head = NoticeHead(#"{"at": 812345678.25, "ids": [41, 42], "node": "N-1", "events": []}"#)
        #expect(head?.at == 812345678.25 && head?.last == 42 && head?.node == "N-1")
        #expect(NoticeHead(#"{"at": 2, "ids": [3], "node": null}"#)?.node == nil)
        #expect(NoticeHead(#"{"at": 1, "ids": [7]}"#)?.last == 7)
        for other in [#"{"ids": [1], "at": 1}"#, #"{"at": x, "ids": [1]}"#, #"{"at": 1, "ids": []}"#, ""] {
            #expect(NoticeHead(other) == nil, "\(other)")
        }
    }
}

/// Batches decided from a node's cache of calls: committed in one round trip only when nothing changed since.
@Suite(.enabled(if: StoreKind.databaseURL != nil, "needs SWITCHBOARD_TEST_DATABASE_URL"))
struct CachedCommitTests {
    @Test func aCachedCommitWritesNothingWhenOtherIdsCameFirstOrItsCallExists() async throws {
        let (url, drop) = try await TestDatabase.create()
        defer { drop() }
        let store = try await PostgresCallStore(url: url, configuration: .init(), encode: Encoding.envelopes)
        defer { store.close() }
        let first = try await store.apply(
            .invite(id: "x1", caller: "alice", device: "a1", callee: "bob", offer: nil, media: .direct), now: t0)
        let head = try #require(first.stored.last?.id)
        let connection = try await TestDatabase.connect(url)
        defer { Task { try? await connection.close() } }
        var registry = CallRegistry()
        let events = try registry.apply(
            .invite(id: "x2", caller: "carol", device: "c1", callee: "dave", offer: nil, media: .direct), now: t0)
        let envelopes = events.flatMap(Encoding.envelopes)
        let logger = Logger(label: "test")
        func commit(epoch: Int64, newIDs: [String]) async throws -> [StoredEvent] {
            let plan = CallCache.Plan(epoch: epoch, calls: [], keys: ["carol", "dave"], newIDs: newIDs)
            return try await PostgresCallStore.commitCached(
                plan, changed: PostgresCallStore.latest(events), events: events, envelopes: envelopes, at: t0,
                connection, logger: logger)
        }
        func isStale(_ error: any Error) -> Bool {
            (error as? PSQLError)?.serverInfo?[.sqlState] == PostgresSchema.stale
        }
        // Stale: an id came after the epoch. Then: a call the batch creates exists already.
        await #expect(performing: { try await commit(epoch: head - 1, newIDs: ["x2"]) }, throws: isStale)
        await #expect(performing: { try await commit(epoch: head, newIDs: ["x1"]) }, throws: isStale)
        #expect(try await store.call("x2") == nil)
        let stored = try await commit(epoch: head, newIDs: ["x2"])
        #expect(stored.map(\.id) == Array(head + 1...head + Int64(envelopes.count)))
        #expect(try await store.call("x2")?.state == .inviting)
    }

    @Test func theEventHeadWaitsForTheCommitInFlight() async throws {
        let (url, drop) = try await TestDatabase.create()
        defer { drop() }
        let store = try await PostgresCallStore(url: url, configuration: .init(), encode: Encoding.envelopes)
        defer { store.close() }
        let applied = try await store.apply(
            .invite(id: "w1", caller: "alice", device: "a1", callee: "bob", offer: nil, media: .direct), now: t0)
        let holder = try await TestDatabase.connect(url)
        let reader = try await TestDatabase.connect(url)
        defer {
            Task {
                try? await holder.close()
                try? await reader.close()
            }
        }
        let logger = Logger(label: "test")
        // A commit in flight: it holds the ordering lock (and, past it, ids not yet visible).
        _ = try await holder.query("BEGIN", logger: logger)
        _ = try await holder.query("SELECT pg_advisory_xact_lock(1398227540, 1)", logger: logger)
        let read = Task {
            let rows = try await reader.query("SELECT switchboard_event_head()", logger: logger)
            var head: Int64?
            for try await value in rows.decode(Int64.self) { head = value }
            return head
        }
        // The reader is seen waiting on that lock (a bounded poll of pg_locks: nothing else tells it).
        var waiting = false
        for _ in 0..<500 where !waiting {
            let rows = try await holder.query(
                "SELECT count(*)::bigint FROM pg_locks WHERE locktype = 'advisory' AND NOT granted", logger: logger)
            for try await count in rows.decode(Int64.self) { waiting = count == 1 }
            if !waiting { try await Task.sleep(for: .milliseconds(10)) }
        }
        #expect(waiting)
        _ = try await holder.query("COMMIT", logger: logger)
        #expect(try await read.value == applied.stored.last?.id)
    }

    @Test func glareAndAcceptsAcrossTwoNodesHaveOneOutcome() async throws {
        let (nodes, drop) = try await TestDatabase.nodes(2)
        defer { drop() }
        for round in 0..<20 {
            // Each node saw the last round's calls end, so both may decide the next from their caches.
            let ids = ["g\(round)a", "g\(round)b"]
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    _ = try? await nodes[0].apply(
                        .invite(id: ids[0], caller: "alice", device: "a1", callee: "bob", offer: nil, media: .direct),
                        now: t0)
                }
                group.addTask {
                    _ = try? await nodes[1].apply(
                        .invite(id: ids[1], caller: "bob", device: "b1", callee: "alice", offer: nil, media: .direct),
                        now: t0)
                }
            }
            let calls = try await ids.asyncMap { try #require(try await nodes[round % 2].call($0)) }
            #expect(calls[0].state == .inviting, "round \(round)")
            #expect(calls[1].state == .ended && calls[1].endReason == .glare, "round \(round)")
            let accepts = await withTaskGroup(of: Bool.self) { group in
                for device in 0..<4 {
                    group.addTask {
                        (try? await nodes[device % 2].apply(
                            .accept(id: ids[0], user: "bob", device: "b\(device)", answer: nil), now: t0 + 1)) != nil
                    }
                }
                return await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            #expect(accepts.filter { $0 }.count == 1, "round \(round)")
            _ = try await nodes[(round + 1) % 2].apply(.hangup(id: ids[0], user: "alice", device: "a1"), now: t0 + 2)
        }
    }
}
