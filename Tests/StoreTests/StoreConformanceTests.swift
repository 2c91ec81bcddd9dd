import Foundation
import Store
import SwitchboardCore
import Synchronization
import TestSupport
import Testing

/// The same suite against every store: each decides exactly as the pure registry does, keeps "one winner" under
/// concurrent inputs, and hands out events with ids in commit order.
@Suite struct StoreConformanceTests {
    static let kinds = StoreKind.available

    @Test(arguments: kinds)
    func everyTransitionMatchesTheRegistry(kind: StoreKind) async throws {
        let fixture = try await kind.make()
        defer { fixture.remove() }
        var reference = CallRegistry()
        var random = SplitMix64(seed: 11)
        var nextID = 0
        for step in 0..<400 {
            let now = t0 + Double(step)
            let input = RandomInputs.next(&random, reference, nextID: &nextID)
            let expected = Result { () throws(CallError) in try reference.apply(input, now: now) }
            let actual: Result<Applied, CallError>
            do {
                actual = .success(try await fixture.store.apply(input, now: now))
            } catch {
                actual = .failure(error)
            }
            switch (expected, actual) {
            case (.success(let events), .success(let applied)):
                #expect(applied.events.map(\.call.withoutTimeline) == events.map(\.call.withoutTimeline), "\(input)")
                #expect(applied.events.map(\.recipients) == events.map(\.recipients))
                #expect(applied.stored.count == events.flatMap(Encoding.envelopes).count)
            case (.failure(let a), .failure(let b)):
                #expect(a == b, "step \(step): \(input)")
            default:
                Issue.record("step \(step): \(input): registry \(expected), store \(actual)")
            }
        }
        // Every call reads back as the registry holds it, timeline included.
        for call in reference.calls.values {
            #expect(try await fixture.store.call(call.id) == call)
        }
        let counts = try await fixture.store.countsByState()
        #expect(counts == reference.countsByState())
        #expect(try await fixture.store.nextDeadline() == reference.nextDeadline)
        for user in RandomInputs.users {
            #expect(
                try await fixture.store.calls(of: user, states: nil, before: nil, limit: 1000).map(\.id)
                    == reference.calls(of: user).map(\.id))
            #expect(
                try await fixture.store.pendingInvites(to: user).map(\.withoutTimeline)
                    == reference.pendingInvites(to: user).map(\.withoutTimeline))
        }
    }

    @Test(arguments: kinds)
    func concurrentAcceptsHaveExactlyOneWinner(kind: StoreKind) async throws {
        let fixture = try await kind.make()
        defer { fixture.remove() }
        for round in 0..<20 {
            let id = "c\(round)"
            _ = try await fixture.store.apply(
                .invite(id: id, caller: "alice", device: "a1", callee: "bob", offer: nil, media: .direct), now: t0)
            let results = await withTaskGroup(of: Bool.self) { group in
                for device in 0..<8 {
                    group.addTask {
                        (try? await fixture.store.apply(
                            .accept(id: id, user: "bob", device: "b\(device)", answer: nil), now: t0 + 1)) != nil
                    }
                }
                return await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            #expect(results.filter { $0 }.count == 1, "round \(round)")
            let call = try #require(try await fixture.store.call(id))
            #expect(call.state == .active)
            #expect(call.timeline.filter { $0.event == "accepted" }.count == 1)
            _ = try await fixture.store.apply(.hangup(id: id, user: "alice", device: "a1"), now: t0 + 2)
        }
    }

    /// Many inputs at once (a store may commit them together): each gets its own outcome, a refused one refuses
    /// only itself, and each outcome's stored events are its own, with ids no other outcome has.
    @Test(arguments: kinds)
    func concurrentInputsEachGetTheirOwnOutcome(kind: StoreKind) async throws {
        let fixture = try await kind.make()
        defer { fixture.remove() }
        typealias Outcome = (index: Int, result: Result<Applied, CallError>)
        let outcomes = await withTaskGroup(of: Outcome.self) { group in
            for index in 0..<40 {
                group.addTask {
                    // Every fourth input is refused: a user calling themselves.
                    let callee = index % 4 == 3 ? "u\(index)" : "v\(index)"
                    let input = CallInput.invite(
                        id: "b\(index)", caller: "u\(index)", device: "d", callee: callee, offer: nil, media: .direct)
                    do {
                        return (index, .success(try await fixture.store.apply(input, now: t0)))
                    } catch {
                        return (index, .failure(error as! CallError))
                    }
                }
            }
            return await group.reduce(into: [Outcome]()) { $0.append($1) }
        }
        var ids: Set<Int64> = []
        for (index, result) in outcomes {
            switch result {
            case .success(let applied):
                #expect(index % 4 != 3, "input \(index)")
                #expect(applied.call?.id == "b\(index)" && applied.call?.state == .inviting)
                #expect(!applied.stored.isEmpty && applied.stored.allSatisfy { $0.envelope.callID == "b\(index)" })
                for event in applied.stored { #expect(ids.insert(event.id).inserted) }
            case .failure(let error):
                #expect(index % 4 == 3, "input \(index): \(error)")
                #expect(error.code == .badRequest)
            }
        }
        for index in 0..<40 {
            let call = try await fixture.store.call("b\(index)")
            #expect((call == nil) == (index % 4 == 3), "call b\(index)")
        }
    }

    @Test(arguments: kinds)
    func concurrentGlareLeavesOnePendingCall(kind: StoreKind) async throws {
        let fixture = try await kind.make()
        defer { fixture.remove() }
        for round in 0..<20 {
            let ids = ["g\(round)a", "g\(round)b"]
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    _ = try? await fixture.store.apply(
                        .invite(id: ids[0], caller: "alice", device: "a1", callee: "bob", offer: nil, media: .direct),
                        now: t0)
                }
                group.addTask {
                    _ = try? await fixture.store.apply(
                        .invite(id: ids[1], caller: "bob", device: "b1", callee: "alice", offer: nil, media: .direct),
                        now: t0)
                }
            }
            let calls = try await ids.asyncMap { try #require(try await fixture.store.call($0)) }
            // The lesser id survives, whichever invite came first.
            #expect(calls[0].state == .inviting, "round \(round)")
            #expect(calls[1].state == .ended && calls[1].endReason == .glare)
            _ = try await fixture.store.apply(.hangup(id: ids[0], user: "alice", device: "a1"), now: t0 + 1)
        }
    }

    @Test(arguments: kinds)
    func theBusSeesEveryEventOnceInIdOrder(kind: StoreKind) async throws {
        let fixture = try await kind.make()
        defer { fixture.remove() }
        let seen = Seen()
        fixture.store.bus.subscribe { events in seen.add(events.map(\.id)) }
        let stored = await withTaskGroup(of: [Int64].self) { group in
            for index in 0..<40 {
                group.addTask {
                    let id = "b\(index)"
                    let invited = try? await fixture.store.apply(
                        .invite(
                            id: id, caller: "u\(index)", device: "d", callee: "v\(index)", offer: nil, media: .direct),
                        now: t0)
                    let ended = try? await fixture.store.apply(
                        .hangup(id: id, user: "u\(index)", device: "d"), now: t0 + 1)
                    return (invited?.stored ?? []).map(\.id) + (ended?.stored ?? []).map(\.id)
                }
            }
            return await group.reduce(into: [Int64]()) { $0 += $1 }
        }
        // An invite is stored for the callee and the watchers, its cancellation for both parties and the watchers.
        #expect(stored.count == 40 * 5)
        #expect(await seen.wait(forCount: stored.count))
        let ids = seen.ids
        #expect(ids == ids.sorted() && Set(ids).count == ids.count)
        #expect(Set(ids) == Set(stored))
    }

    @Test(arguments: kinds)
    func eventPagesResumeAndPrune(kind: StoreKind) async throws {
        let fixture = try await kind.make()
        defer { fixture.remove() }
        let invited = try await fixture.store.apply(
            .invite(id: "c1", caller: "alice", device: "a1", callee: "bob", offer: nil, media: .direct), now: t0)
        let toBob = try #require(invited.stored.first { $0.envelope.user == "bob" })
        _ = try await fixture.store.apply(.ring(id: "c1", user: "bob", device: "b1"), now: t0 + 1)
        _ = try await fixture.store.apply(.hangup(id: "c1", user: "alice", device: "a1"), now: t0 + 100)
        let page = try await fixture.store.events(for: "bob", after: 0, limit: 10)
        #expect(page.events.map(\.envelope.name) == ["call.invite", "call.ended"])
        #expect(page.events.first == toBob)
        let resumed = EventHub.resume(
            after: toBob.id, page: try await fixture.store.events(for: "bob", after: toBob.id, limit: 10), device: "b1",
            limit: 10)
        #expect(resumed == .replay([page.events[1]]))
        // Forgotten events make a resume from before them resync; later ones still replay.
        try await fixture.store.prune(eventsBefore: t0 + 50, callsEndedBefore: t0, ticketsExpiredBefore: t0)
        let after = try await fixture.store.events(for: "bob", after: 0, limit: 10)
        #expect(after.events.map(\.envelope.name) == ["call.ended"])
        #expect(EventHub.resume(after: 0, page: after, device: "b1", limit: 10) == .resync)
        #expect(EventHub.resume(after: after.head + 1, page: after, device: "b1", limit: 10) == .resync)
        // The history keeps the call until its retention passes.
        #expect(try await fixture.store.call("c1") != nil)
        try await fixture.store.prune(eventsBefore: t0, callsEndedBefore: t0 + 101, ticketsExpiredBefore: t0)
        #expect(try await fixture.store.call("c1") == nil)
        // Ids never go back, even once every event is gone.
        try await fixture.store.prune(eventsBefore: t0 + 1000, callsEndedBefore: t0, ticketsExpiredBefore: t0)
        let next = try await fixture.store.append(
            [Envelope(user: "bob", devices: .only("b1"), name: "call.invite", callID: "x", data: Array("{}".utf8))],
            now: t0 + 1000)
        #expect(next.first!.id > page.events.last!.id)
    }

    @Test(arguments: kinds)
    func aTicketWorksOnceBeforeItExpires(kind: StoreKind) async throws {
        let fixture = try await kind.make()
        defer { fixture.remove() }
        let payload = Array("{\"user\":\"bob\"}".utf8)
        try await fixture.store.storeTicket("h1", payload, expires: t0 + 30)
        try await fixture.store.storeTicket("h2", payload, expires: t0 + 30)
        #expect(try await fixture.store.redeemTicket("h1", now: t0 + 1) == payload)
        #expect(try await fixture.store.redeemTicket("h1", now: t0 + 2) == nil)
        #expect(try await fixture.store.redeemTicket("h2", now: t0 + 31) == nil)
        #expect(try await fixture.store.redeemTicket("h2", now: t0 + 1) == nil, "an expired ticket is gone")
        #expect(try await fixture.store.redeemTicket("unknown", now: t0) == nil)
    }

    @Test(arguments: kinds)
    func historyPagesNewestFirst(kind: StoreKind) async throws {
        let fixture = try await kind.make()
        defer { fixture.remove() }
        for index in 0..<9 {
            _ = try await fixture.store.apply(
                .invite(id: "h\(index)", caller: "alice", device: "a1", callee: "bob", offer: nil, media: .direct),
                now: t0 + Double(index / 2))
            _ = try await fixture.store.apply(.hangup(id: "h\(index)", user: "alice", device: "a1"), now: t0 + 10)
        }
        var seen: [String] = []
        var before: HistoryCursor?
        while true {
            let page = try await fixture.store.calls(of: "bob", states: [.ended], before: before, limit: 4)
            seen += page.map(\.id)
            guard page.count == 4 else { break }
            before = HistoryCursor(page.last!)
        }
        #expect(seen == ["h8", "h7", "h6", "h5", "h4", "h3", "h2", "h1", "h0"])
        #expect(try await fixture.store.calls(of: "carol", states: nil, before: nil, limit: 10).isEmpty)
        #expect(try await fixture.store.calls(of: nil, states: [.active], before: nil, limit: 10).isEmpty)
    }
}

extension Array {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var result: [T] = []
        for element in self { result.append(try await transform(element)) }
        return result
    }
}
