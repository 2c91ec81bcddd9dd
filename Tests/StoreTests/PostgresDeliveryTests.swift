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
        let (url, drop) = try await TestDatabase.create()
        defer { drop() }
        let nodes = [
            try await PostgresCallStore(url: url, configuration: .init(), encode: Encoding.envelopes),
            try await PostgresCallStore(url: url, configuration: .init(), encode: Encoding.envelopes),
        ]
        defer { for node in nodes { node.close() } }
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
    }

    @Test func noticeHeadsReadOnlyTheirOwnShape() {
        let head = NoticeHead(#"{"at": 812345678.25, "ids": [41, 42], "events": []}"#)
        #expect(head?.at == 812345678.25 && head?.last == 42)
        #expect(NoticeHead(#"{"at": 1, "ids": [7]}"#)?.last == 7)
        for other in [#"{"ids": [1], "at": 1}"#, #"{"at": x, "ids": [1]}"#, #"{"at": 1, "ids": []}"#, ""] {
            #expect(NoticeHead(other) == nil, "\(other)")
        }
    }
}
