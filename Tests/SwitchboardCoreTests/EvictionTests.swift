import Foundation
import SwitchboardCore
import Testing

/// Ended calls are kept for history up to `maxEndedCalls`; the ones that ended longest ago go first.
@Suite struct EvictionTests {
    static let users = (0..<12).map { "u\($0)" }

    @Test func onlyTheNewestEndedCallsAreKeptAndLiveCallsNeverGo() throws {
        var registry = CallRegistry(configuration: .init(maxEndedCalls: 3))
        // The oldest calls of all: one stays pending, one becomes active.
        _ = try registry.invite(id: "pending", from: "u10", device: "d", to: "u11", offer: nil, now: t0)
        _ = try registry.invite(id: "live", from: "u8", device: "d", to: "u9", offer: nil, now: t0)
        _ = try registry.accept("live", user: "u9", device: "d", answer: nil, now: t0)
        for index in 1...5 {
            _ = try registry.invite(
                id: "c\(index)", from: "u0", device: "d", to: "u\(index)", offer: nil, now: t0 + Double(index))
        }
        // End them newest-created first, so "newest ended" and "newest created" differ.
        for (step, index) in [5, 4, 3, 2, 1].enumerated() {
            _ = try registry.hangup("c\(index)", user: "u0", device: "d", now: t0 + 10 + Double(step))
            let ended = registry.calls.values.filter { $0.state == .ended }
            #expect(ended.count == min(step + 1, 3))
            expectIndexConsistent(registry, users: Self.users)
        }

        #expect(Set(registry.calls.keys) == ["pending", "live", "c3", "c2", "c1"])
        #expect(registry.calls(of: "u0").map(\.id) == ["c3", "c2", "c1"])
        #expect(registry.calls(of: "u5").isEmpty && registry.calls(of: "u4").isEmpty)
        expectCallError(.callNotFound) { _ = try registry.call("c5", visibleTo: "u0") }
        expectCallError(.callNotFound) { _ = try registry.call("c4", visibleTo: "u0", isAdmin: true) }
        #expect(registry.calls["pending"]?.state == .inviting)
        #expect(registry.calls["live"]?.state == .active)
        #expect(registry.countsByState() == [.inviting: 1, .ringing: 0, .active: 1, .ended: 3])
        #expect(registry.pendingInvites(to: "u11").map(\.id) == ["pending"])
        #expect(registry.nextDeadline == registry.calls["pending"]?.ringDeadline)

        // When the live calls end they are the newest ended calls, and push out the oldest.
        _ = try registry.hangup("live", user: "u8", device: "d", now: t0 + 20)
        _ = registry.expire(now: t0 + 1000)
        #expect(Set(registry.calls.keys) == ["c1", "live", "pending"])
        #expect(registry.calls["pending"]?.endReason == .unavailable)
        expectIndexConsistent(registry, users: Self.users)
    }

    @Test func callsThatEndAsSideEffectsCountToo() throws {
        var registry = CallRegistry(configuration: .init(maxEndedCalls: 2))
        _ = try registry.invite(id: "a", from: "u1", device: "d", to: "u2", offer: nil, now: t0)
        _ = try registry.invite(id: "b", from: "u1", device: "d", to: "u3", offer: nil, now: t0 + 1)
        _ = try registry.invite(id: "c", from: "u4", device: "d", to: "u1", offer: nil, now: t0 + 2)
        _ = try registry.invite(id: "d", from: "u5", device: "d", to: "u2", offer: nil, now: t0 + 3)
        // u2 answering ends b (cancelled), c (busy) and d (busy): three ended, two kept.
        let outcome = try registry.accept("a", user: "u2", device: "d", answer: nil, now: t0 + 4)
        #expect(outcome.deliveries.endings.count == 1 + 6)
        #expect(registry.calls.count == 3)
        #expect(registry.calls["a"]?.state == .active)
        #expect(registry.calls.values.filter { $0.state == .ended }.count == 2)
        // A busy call that is evicted at once still comes back as the outcome.
        let busy = try registry.invite(id: "e", from: "u6", device: "d", to: "u2", offer: nil, now: t0 + 5)
        #expect(busy.call.endReason == .busy)
        #expect(registry.calls["e"] == busy.call)
        #expect(registry.calls.values.filter { $0.state == .ended }.count == 2)
        expectIndexConsistent(registry, users: Self.users)
    }

    @Test func anEvictedIdThatComesBackBelongsOnlyToItsNewParties() throws {
        var registry = CallRegistry(configuration: .init(maxEndedCalls: 1))
        _ = try registry.invite(id: "c1", from: "u1", device: "d", to: "u2", offer: nil, now: t0)
        _ = try registry.hangup("c1", user: "u1", device: "d", now: t0 + 1)
        _ = try registry.invite(id: "c2", from: "u1", device: "d", to: "u2", offer: nil, now: t0 + 2)
        _ = try registry.hangup("c2", user: "u2", device: "d", now: t0 + 3)
        #expect(registry.calls["c1"] == nil)
        // The adapter picks ids; should one come back, the old parties must not see the new call.
        _ = try registry.invite(id: "c1", from: "u3", device: "d", to: "u4", offer: nil, now: t0 + 4)
        #expect(registry.calls(of: "u1").map(\.id) == ["c2"])
        #expect(registry.calls(of: "u2").map(\.id) == ["c2"])
        #expect(registry.calls(of: "u3").map(\.id) == ["c1"])
        expectCallError(.callNotFound) { _ = try registry.call("c1", visibleTo: "u1") }
        expectIndexConsistent(registry, users: Self.users)
    }

    @Test func manyEndedCallsKeepTheLastFew() throws {
        var registry = CallRegistry(configuration: .init(maxEndedCalls: 3))
        let count = 3000
        for index in 0..<count {
            let caller = Self.users[index % 6]
            let callee = Self.users[6 + index % 5]
            let now = t0 + Double(index)
            _ = try registry.invite(id: "c\(index)", from: caller, device: "d", to: callee, offer: nil, now: now)
            _ = try registry.decline("c\(index)", user: callee, device: "d", now: now)
        }
        #expect(Set(registry.calls.keys) == ["c2997", "c2998", "c2999"])
        #expect(registry.calls(of: nil).map(\.id) == ["c2999", "c2998", "c2997"])
        expectIndexConsistent(registry, users: Self.users)
        // A new call still works after the history was trimmed this often.
        _ = try registry.invite(id: "next", from: "u0", device: "d", to: "u6", offer: nil, now: t0 + 9999)
        _ = try registry.hangup("next", user: "u0", device: "d", now: t0 + 10_000)
        #expect(Set(registry.calls.keys) == ["c2998", "c2999", "next"])
        expectIndexConsistent(registry, users: Self.users)
    }
}
