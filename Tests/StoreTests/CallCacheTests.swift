import Foundation
import SwitchboardCore
import Testing

@testable import Store

/// The cache a PostgreSQL node decides batches from: what it knows, and when it must stand aside.
@Suite struct CallCacheTests {
    static func call(_ id: String, _ caller: String, _ callee: String, _ state: CallState = .inviting) -> Call {
        Call(
            id: id, caller: caller, callerDevice: "d", callee: callee, state: state,
            endReason: state == .ended ? .hangup : nil, createdAt: t0, answeredAt: nil,
            endedAt: state == .ended ? t0 : nil, answeredBy: nil, ringingDevices: [], ringDeadline: nil, offer: nil,
            timelineLength: 1, media: .direct, failure: nil)
    }

    static let invite = CallInput.invite(
        id: "new", caller: "alice", device: "a1", callee: "bob", offer: nil, media: .direct)

    @Test func knowsNothingUntilABatchLoadedWhatItCommittedOn() {
        var cache = CallCache()
        #expect(cache.plan(for: [Self.invite], delivered: 0) == nil)
        // Other ids came between the load and the commit: what was loaded may be stale.
        cache.committed(first: 5, last: 6, changed: [], loaded: [], complete: ["alice", "bob"], loadHead: 3)
        #expect(cache.epoch == nil)
        cache.committed(first: 5, last: 6, changed: [], loaded: [], complete: ["alice", "bob"], loadHead: 4)
        #expect(cache.epoch == 6)
        let plan = cache.plan(for: [Self.invite], delivered: 6)
        #expect(plan == CallCache.Plan(epoch: 6, calls: [], keys: ["alice", "bob"], newIDs: ["new"]))
    }

    @Test func plansWhatALoadWouldReturnAndLock() {
        var cache = CallCache()
        let live = Self.call("c1", "alice", "carol", .active)
        let other = Self.call("c2", "dave", "erin")
        cache.committed(
            first: 1, last: 2, changed: [], loaded: [live, other], complete: ["alice", "carol"], loadHead: 0)
        // An invite to alice reads her live calls; bob is unknown, so it cannot come from here.
        #expect(cache.plan(for: [Self.invite], delivered: 2) == nil)
        cache.committed(first: 3, last: 3, changed: [], loaded: [], complete: ["bob"], loadHead: nil)
        let plan = cache.plan(for: [Self.invite], delivered: 3)
        #expect(plan?.calls == [live] && plan?.keys == ["alice", "bob"])
        // A hangup reads its call only, and locks its parties.
        let hangup = CallInput.hangup(id: "c2", user: "dave", device: "d")
        #expect(
            cache.plan(for: [hangup], delivered: 3)
                == CallCache.Plan(epoch: 3, calls: [other], keys: ["dave", "erin"], newIDs: []))
        // Not from here: a call it does not hold, expiry, and another node's events after its epoch.
        #expect(cache.plan(for: [.hangup(id: "gone", user: "dave", device: "d")], delivered: 3) == nil)
        #expect(cache.plan(for: [.expire], delivered: 3) == nil)
        #expect(cache.plan(for: [hangup], delivered: 4) == nil)
    }

    @Test func staysExactOnlyWhileNoOtherIdsComeBetween() {
        var cache = CallCache()
        let call = Self.call("c1", "alice", "bob")
        cache.committed(first: 1, last: 1, changed: [call], loaded: [], complete: ["alice", "bob"], loadHead: 0)
        // Its own next batch follows at once: still exact; an ended call leaves.
        cache.committed(first: 2, last: 3, changed: [Self.call("c1", "alice", "bob", .ended)])
        #expect(cache.epoch == 3 && cache.calls.isEmpty && cache.users == ["alice", "bob"])
        // Another node's ids came between and this batch did not load: it knows nothing.
        cache.committed(first: 7, last: 7, changed: [call])
        #expect(cache.epoch == nil && cache.calls.isEmpty && cache.users.isEmpty)
        // A load with nothing between it and its commit starts it again, from that load alone.
        cache.committed(first: 9, last: 9, changed: [], loaded: [call], complete: ["alice"], loadHead: 8)
        #expect(cache.epoch == 9 && cache.calls.keys.sorted() == ["c1"] && cache.users == ["alice"])
        cache.forget()
        #expect(cache.epoch == nil && cache.calls.isEmpty)
    }

    @Test func startsAgainPastItsCapacity() {
        var cache = CallCache(capacity: 2)
        cache.committed(first: 1, last: 1, changed: [], loaded: [], complete: ["a", "b", "c"], loadHead: 0)
        #expect(cache.epoch == 1 && cache.users.isEmpty)
    }
}
