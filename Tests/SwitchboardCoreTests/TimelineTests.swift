import Foundation
import SwitchboardCore
import Testing

/// Each call keeps a timeline: every event with its time, actor and device.
@Suite struct TimelineTests {
    @Test func aWholeCallIsRecordedStepByStep() throws {
        var registry = CallRegistry()
        let offer = try Fixture.offer()
        _ = try registry.invite(id: "c1", from: "alice", device: "a1", to: "bob", offer: offer, now: t0)
        _ = try registry.ring("c1", user: "bob", device: "b1", now: t0 + 1)
        _ = try registry.ring("c1", user: "bob", device: "b2", now: t0 + 2)
        _ = try registry.signal(
            Signal(callID: "c1", fromUser: "alice", fromDevice: "a1", kind: .candidate, candidate: sampleCandidate),
            now: t0 + 3)
        _ = try registry.accept("c1", user: "bob", device: "b2", answer: try Fixture.answer(), now: t0 + 4)
        _ = try registry.signal(
            Signal(callID: "c1", fromUser: "bob", fromDevice: "b2", kind: .endOfCandidates), now: t0 + 5)
        let ended = try registry.hangup("c1", user: "alice", device: "a1", now: t0 + 6)

        let expected = [
            TimelineEntry(at: t0, event: "invite", user: "alice", device: "a1"),
            TimelineEntry(at: t0 + 1, event: "ringing", user: "bob", device: "b1"),
            TimelineEntry(at: t0 + 2, event: "ringing", user: "bob", device: "b2"),
            TimelineEntry(at: t0 + 3, event: "signal.candidate", user: "alice", device: "a1"),
            TimelineEntry(at: t0 + 4, event: "accepted", user: "bob", device: "b2"),
            TimelineEntry(at: t0 + 5, event: "signal.end-of-candidates", user: "bob", device: "b2"),
            TimelineEntry(at: t0 + 6, event: "ended", user: "alice", device: "a1", reason: "hangup"),
        ]
        #expect(ended.call.timeline == expected)
        #expect(try registry.call("c1", visibleTo: "bob").timeline == expected)
        // Every delivered snapshot carries the timeline as it was at that moment.
        #expect(ended.deliveries.compactMap(\.event.call).allSatisfy { $0.timeline == expected })
        #expect(ended.call.createdAt == t0 && ended.call.answeredAt == t0 + 4 && ended.call.endedAt == t0 + 6)
    }

    @Test(arguments: Stage.allCases)
    func eachStageEndsTheTimelineWithItsOwnEntry(stage: Stage) throws {
        let registry = try stage.registry()
        let call = try #require(registry.calls["c1"])
        #expect(call.timeline.first == TimelineEntry(at: call.createdAt, event: "invite", user: "alice", device: "a1"))
        #expect(call.timeline.last == stage.lastEntry)
        if stage.state == .ended {
            #expect(call.endedAt == stage.lastEntry.at)
            #expect(call.endReason?.rawValue == stage.lastEntry.reason)
            #expect(call.offer == nil && call.ringDeadline == nil)
        } else {
            #expect(call.timeline.allSatisfy { $0.reason == nil })
        }
        // Timelines only grow forward in time.
        #expect(zip(call.timeline, call.timeline.dropFirst()).allSatisfy { $0.at <= $1.at })
    }

    @Test func aSnapshotInAnEventNeverChangesAfterwards() throws {
        var registry = CallRegistry()
        let invite = try registry.invite(id: "c1", from: "alice", device: "a1", to: "bob", offer: nil, now: t0)
        _ = try registry.ring("c1", user: "bob", device: "b1", now: t0 + 1)
        _ = try registry.decline("c1", user: "bob", device: "b1", now: t0 + 2)
        let sent = try #require(invite.deliveries.first?.event.call)
        #expect(sent.state == .inviting && sent.timeline.count == 1)
        #expect(registry.calls["c1"]?.timeline.count == 3)
    }
}
