import Foundation
import SwitchboardCore
import Testing

/// Every legal transition of the call state machine, with the events it sends.
@Suite struct CallLifecycleTests {
    @Test func inviteAlertsEveryCalleeDeviceWithTheOffer() throws {
        var registry = CallRegistry(configuration: .init(ringTimeout: 30))
        let offer = try Fixture.offer()
        let outcome = try registry.invite(id: "c1", from: "alice", device: "a1", to: "bob", offer: offer, now: t0)

        let call = outcome.call
        #expect(call.id == "c1")
        #expect(call.caller == "alice" && call.callerDevice == "a1" && call.callee == "bob")
        #expect(call.state == .inviting)
        #expect(call.endReason == nil && call.answeredAt == nil && call.answeredBy == nil && call.endedAt == nil)
        #expect(call.createdAt == t0)
        #expect(call.ringDeadline == t0 + 30)
        #expect(call.offer == offer)
        #expect(call.ringingDevices.isEmpty)
        #expect(outcome.deliveries == [Delivery(user: "bob", devices: .all, event: .invite(call, offer: offer))])

        #expect(try registry.call("c1", visibleTo: "alice") == call)
        #expect(try registry.call("c1", visibleTo: "bob") == call)
        #expect(registry.pendingInvites(to: "bob").map(\.id) == ["c1"])
        #expect(registry.pendingInvites(to: "alice").isEmpty)
        #expect(registry.nextDeadline == t0 + 30)
        #expect(registry.countsByState() == [.inviting: 1, .ringing: 0, .active: 0, .ended: 0])
    }

    @Test func inviteWithoutAnOfferIsAllowed() throws {
        var registry = CallRegistry()
        let outcome = try registry.invite(id: "c1", from: "alice", device: "a1", to: "bob", offer: nil, now: t0)
        #expect(outcome.call.offer == nil)
        #expect(outcome.deliveries == [Delivery(user: "bob", devices: .all, event: .invite(outcome.call, offer: nil))])
    }

    @Test func firstAcknowledgementRingsTheCallerOnceAndLaterDevicesAreOnlyRecorded() throws {
        var registry = try Stage.inviting.registry()

        let first = try registry.ring("c1", user: "bob", device: "b1", now: t0 + 1)
        #expect(first.call.state == .ringing)
        #expect(first.call.ringingDevices == ["b1"])
        #expect(first.deliveries == [Delivery(user: "alice", devices: .all, event: .ringing(first.call))])

        let second = try registry.ring("c1", user: "bob", device: "b2", now: t0 + 2)
        #expect(second.call.state == .ringing)
        #expect(second.call.ringingDevices == ["b1", "b2"])
        #expect(second.deliveries.isEmpty)

        let again = try registry.ring("c1", user: "bob", device: "b1", now: t0 + 3)
        #expect(again.call.ringingDevices == ["b1", "b2"])
        #expect(again.deliveries.isEmpty)
        #expect(try registry.call("c1", visibleTo: "bob").ringingDevices == ["b1", "b2"])
        // Ringing does not move the deadline.
        #expect(again.call.ringDeadline == t0 + 30)
    }

    @Test(arguments: Stage.pending)
    func acceptTellsTheCallerAndEndsTheCalleesOtherDevices(from stage: Stage) throws {
        var registry = try stage.registry()
        let answer = try Fixture.answer()

        let outcome = try registry.accept("c1", user: "bob", device: "b2", answer: answer, now: t0 + 5)
        let call = outcome.call
        #expect(call.state == .active)
        #expect(call.endReason == nil && call.endedAt == nil)
        #expect(call.answeredBy == "b2")
        #expect(call.answeredAt == t0 + 5)
        #expect(call.ringDeadline == nil)

        let elsewhere = call.answeredElsewhereView()
        #expect(elsewhere.id == "c1" && elsewhere.state == .ended && elsewhere.endReason == .answeredElsewhere)
        #expect(elsewhere.endedAt == t0 + 5)
        #expect(
            outcome.deliveries == [
                Delivery(user: "alice", devices: .all, event: .accepted(call, answer: answer)),
                Delivery(user: "bob", devices: .allExcept("b2"), event: .ended(elsewhere)),
            ])
        #expect(Delivery.Devices.allExcept("b2").includes("b1"))
        #expect(!Delivery.Devices.allExcept("b2").includes("b2"))

        // The stored call stays active: answered_elsewhere is only what the other devices are told.
        let stored = try registry.call("c1", visibleTo: "alice")
        #expect(stored == call)
        #expect(registry.pendingInvites(to: "bob").isEmpty)
        #expect(registry.nextDeadline == nil)
        #expect(registry.countsByState()[.active] == 1)
    }

    @Test(arguments: Stage.pending)
    func declineEndsTheCallForBothParties(from stage: Stage) throws {
        var registry = CallRegistry()
        _ = try registry.invite(id: "c1", from: "alice", device: "a1", to: "bob", offer: try Fixture.offer(), now: t0)
        if stage == .ringing { _ = try registry.ring("c1", user: "bob", device: "b1", now: t0 + 1) }
        try #require(registry.calls["c1"]?.offer != nil && registry.calls["c1"]?.state == stage.state)
        let outcome = try registry.decline("c1", user: "bob", device: "b1", now: t0 + 4)
        let call = outcome.call
        #expect(call.state == .ended && call.endReason == .declined && call.endedAt == t0 + 4)
        #expect(call.offer == nil && call.ringDeadline == nil && call.answeredBy == nil)
        #expect(
            outcome.deliveries == [
                Delivery(user: "alice", devices: .all, event: .ended(call)),
                Delivery(user: "bob", devices: .all, event: .ended(call)),
            ])
        #expect(try registry.call("c1", visibleTo: "bob") == call)
        #expect(registry.nextDeadline == nil)
        #expect(registry.pendingInvites(to: "bob").isEmpty)
    }

    @Test(arguments: Stage.pending, [("alice", "a1", EndReason.cancelled), ("bob", "b2", .declined)])
    func hangupBeforeAnswerCancelsOrDeclines(from stage: Stage, by party: (String, String, EndReason)) throws {
        var registry = try stage.registry()
        let (user, device, reason) = party
        let outcome = try registry.hangup("c1", user: user, device: device, now: t0 + 4)
        #expect(outcome.call.state == .ended)
        #expect(outcome.call.endReason == reason)
        #expect(outcome.call.endedAt == t0 + 4)
        #expect(outcome.deliveries.endings.map(\.user) == ["alice", "bob"])
        #expect(outcome.deliveries.endings.allSatisfy { $0.devices == .all && $0.reason == reason })
        #expect(registry.nextDeadline == nil)
    }

    @Test(arguments: [("alice", "a1"), ("bob", "b1")])
    func hangupOfAnActiveCallByEitherParty(by party: (String, String)) throws {
        var registry = try Stage.active.registry()
        let outcome = try registry.hangup("c1", user: party.0, device: party.1, now: t0 + 9)
        #expect(outcome.call.state == .ended && outcome.call.endReason == .hangup && outcome.call.endedAt == t0 + 9)
        #expect(outcome.call.answeredBy == "b1" && outcome.call.answeredAt == t0 + 2)
        #expect(
            outcome.deliveries == [
                Delivery(user: "alice", devices: .all, event: .ended(outcome.call)),
                Delivery(user: "bob", devices: .all, event: .ended(outcome.call)),
            ])
        // Both are free again: neither is busy, both may call.
        let again = try registry.invite(id: "c2", from: "carol", device: "k1", to: "bob", offer: nil, now: t0 + 10)
        #expect(again.call.state == .inviting)
        let fromAlice = try registry.invite(id: "c3", from: "alice", device: "a1", to: "dave", offer: nil, now: t0 + 10)
        #expect(fromAlice.call.state == .inviting)
    }

    @Test func ringTimeoutEndsRingingCallsNoAnswerAndUnacknowledgedOnesUnavailable() throws {
        var registry = CallRegistry(configuration: .init(ringTimeout: 30))
        #expect(registry.nextDeadline == nil)
        _ = try registry.invite(id: "c1", from: "alice", device: "a1", to: "bob", offer: nil, now: t0)
        _ = try registry.ring("c1", user: "bob", device: "b1", now: t0 + 1)
        _ = try registry.invite(id: "c2", from: "carol", device: "k1", to: "dave", offer: nil, now: t0 + 10)
        #expect(registry.nextDeadline == t0 + 30)

        #expect(registry.expire(now: t0 + 29.999).isEmpty)
        #expect(try registry.call("c1", visibleTo: "bob").state == .ringing)

        let first = registry.expire(now: t0 + 30)
        #expect(first.map(\.call.id) == ["c1"])
        let noAnswer = try #require(first.first).call
        #expect(noAnswer.state == .ended && noAnswer.endReason == .noAnswer && noAnswer.endedAt == t0 + 30)
        #expect(
            first.first?.deliveries == [
                Delivery(user: "alice", devices: .all, event: .ended(noAnswer)),
                Delivery(user: "bob", devices: .all, event: .ended(noAnswer)),
            ])
        #expect(registry.nextDeadline == t0 + 40)
        #expect(try registry.call("c2", visibleTo: "dave").state == .inviting)

        let second = registry.expire(now: t0 + 45)
        #expect(second.map(\.call.id) == ["c2"])
        #expect(second.first?.call.endReason == .unavailable)
        #expect(second.first?.call.endedAt == t0 + 45)
        #expect(second.first?.deliveries.endings.map(\.user) == ["carol", "dave"])
        #expect(registry.nextDeadline == nil)
        #expect(registry.expire(now: t0 + 1000).isEmpty)
    }

    @Test func expireEndsEveryDueCallInIdOrderAndNeverAnActiveOne() throws {
        var registry = CallRegistry(configuration: .init(ringTimeout: 30))
        _ = try registry.invite(id: "c3", from: "u5", device: "d5", to: "u6", offer: nil, now: t0)
        _ = try registry.invite(id: "c1", from: "u1", device: "d1", to: "u2", offer: nil, now: t0 + 1)
        _ = try registry.invite(id: "c2", from: "u3", device: "d3", to: "u4", offer: nil, now: t0 + 2)
        _ = try registry.accept("c2", user: "u4", device: "d4", answer: nil, now: t0 + 3)
        let more = (10..<40).map { "e\($0)" }
        for id in more.shuffled() {
            _ = try registry.invite(id: id, from: "from-\(id)", device: "d", to: "to-\(id)", offer: nil, now: t0 + 4)
        }
        #expect(registry.nextDeadline == t0 + 30)

        let outcomes = registry.expire(now: t0 + 100)
        #expect(outcomes.map(\.call.id) == ["c1", "c3"] + more)
        #expect(outcomes.allSatisfy { $0.call.endReason == .unavailable })
        #expect(try registry.call("c2", visibleTo: "u3").state == .active)
        #expect(registry.nextDeadline == nil)
    }

    @Test func nextDeadlineIsTheEarliestPendingDeadline() throws {
        var registry = CallRegistry(configuration: .init(ringTimeout: 20))
        _ = try registry.invite(id: "c1", from: "u1", device: "d1", to: "u2", offer: nil, now: t0 + 5)
        _ = try registry.invite(id: "c2", from: "u3", device: "d3", to: "u4", offer: nil, now: t0)
        _ = try registry.invite(id: "c3", from: "u5", device: "d5", to: "u6", offer: nil, now: t0 + 9)
        #expect(registry.nextDeadline == t0 + 20)
        _ = try registry.accept("c2", user: "u4", device: "d4", answer: nil, now: t0 + 1)
        #expect(registry.nextDeadline == t0 + 25)
        _ = try registry.hangup("c1", user: "u1", device: "d1", now: t0 + 2)
        #expect(registry.nextDeadline == t0 + 29)
        _ = try registry.decline("c3", user: "u6", device: "d6", now: t0 + 3)
        #expect(registry.nextDeadline == nil)
    }

    @Test(arguments: ["bob", "alice"])
    func invitingAUserInAnActiveCallEndsBusyAndStaysInBothHistories(callee: String) throws {
        var registry = try Stage.active.registry()
        let outcome = try registry.invite(id: "c2", from: "carol", device: "k1", to: callee, offer: nil, now: t0 + 7)

        #expect(outcome.call.state == .ended)
        #expect(outcome.call.endReason == .busy)
        #expect(outcome.call.endedAt == t0 + 7 && outcome.call.ringDeadline == nil)
        #expect(outcome.deliveries.isEmpty)
        #expect(registry.calls(of: "carol").map(\.id) == ["c2"])
        #expect(registry.calls(of: callee).map(\.id) == ["c2", "c1"])
        #expect(try registry.call("c2", visibleTo: callee) == outcome.call)
        #expect(try registry.call("c1", visibleTo: "alice").state == .active)
        #expect(registry.pendingInvites(to: callee).isEmpty)
        #expect(registry.nextDeadline == nil)
    }

    /// alice invites bob with `first`, then bob invites alice with `second`.
    static func glare(first: String, second: String) throws -> (CallRegistry, CallRegistry.Outcome) {
        var registry = CallRegistry()
        _ = try registry.invite(id: first, from: "alice", device: "a1", to: "bob", offer: nil, now: t0)
        let outcome = try registry.invite(id: second, from: "bob", device: "b1", to: "alice", offer: nil, now: t0 + 1)
        return (registry, outcome)
    }

    @Test func glareKeepsTheNewInviteWhenItsIdIsLesser() throws {
        let (registry, outcome) = try Self.glare(first: "c2", second: "c1")
        #expect(outcome.call.id == "c1" && outcome.call.state == .inviting)
        let loser = try registry.call("c2", visibleTo: "alice")
        #expect(loser.state == .ended && loser.endReason == .glare && loser.endedAt == t0 + 1)
        #expect(
            outcome.deliveries == [
                Delivery(user: "alice", devices: .all, event: .ended(loser)),
                Delivery(user: "bob", devices: .all, event: .ended(loser)),
                Delivery(user: "alice", devices: .all, event: .invite(outcome.call, offer: nil)),
            ])
        #expect(registry.calls(of: "alice", states: [.inviting, .ringing]).map(\.id) == ["c1"])
        #expect(registry.pendingInvites(to: "alice").map(\.id) == ["c1"])
        #expect(registry.pendingInvites(to: "bob").isEmpty)
    }

    @Test func glareEndsTheNewInviteWhenItsIdIsGreater() throws {
        let (registry, outcome) = try Self.glare(first: "c1", second: "c2")
        #expect(outcome.call.id == "c2")
        #expect(outcome.call.state == .ended && outcome.call.endReason == .glare && outcome.call.endedAt == t0 + 1)
        #expect(outcome.deliveries == [Delivery(user: "bob", devices: .all, event: .ended(outcome.call))])
        #expect(try registry.call("c1", visibleTo: "bob").state == .inviting)
        #expect(registry.calls(of: "bob", states: [.inviting, .ringing]).map(\.id) == ["c1"])
        #expect(registry.pendingInvites(to: "bob").map(\.id) == ["c1"])
        // The losing invite stays in both histories.
        #expect(registry.calls(of: "alice").map(\.id) == ["c2", "c1"])
    }

    @Test(arguments: [("c1", "c2"), ("c2", "c1"), ("call-b", "call-a"), ("x9", "x10")])
    func glareIsDeterministic(first: String, second: String) throws {
        let (one, outcomeOne) = try Self.glare(first: first, second: second)
        let (two, outcomeTwo) = try Self.glare(first: first, second: second)
        #expect(one.calls == two.calls)
        #expect(outcomeOne.call == outcomeTwo.call)
        #expect(outcomeOne.deliveries == outcomeTwo.deliveries)

        // Whichever invite arrives first, every node keeps the same one: the lesser id.
        var swapped = CallRegistry()
        _ = try swapped.invite(id: second, from: "bob", device: "b1", to: "alice", offer: nil, now: t0)
        _ = try swapped.invite(id: first, from: "alice", device: "a1", to: "bob", offer: nil, now: t0 + 1)
        let survivor = min(first, second)
        let loser = max(first, second)
        for registry in [one, swapped] {
            #expect(registry.calls[survivor]?.state == .inviting)
            #expect(registry.calls[loser]?.endReason == .glare)
            #expect(registry.calls(of: "alice", states: [.inviting, .ringing]).map(\.id) == [survivor])
        }
    }

    /// Calling the same user again replaces the pending invite, so there is never more than one pending call
    /// between two users, and glare always compares exactly two calls.
    @Test func aRepeatedInviteReplacesThePendingOne() throws {
        var registry = CallRegistry()
        _ = try registry.invite(id: "c1", from: "alice", device: "a1", to: "bob", offer: nil, now: t0)
        _ = try registry.ring("c1", user: "bob", device: "b1", now: t0 + 1)
        let again = try registry.invite(id: "c2", from: "alice", device: "a2", to: "bob", offer: nil, now: t0 + 2)
        #expect(again.call.state == .inviting)
        #expect(registry.calls["c1"]?.endReason == .cancelled)
        #expect(again.deliveries.endings.map(\.callID) == ["c1", "c1"])
        #expect(again.deliveries.last?.event.name == "call.invite")
        #expect(registry.pendingInvites(to: "bob").map(\.id) == ["c2"])

        // bob's invite now meets exactly one of alice's: the lesser id survives.
        let glare = try registry.invite(id: "c0", from: "bob", device: "b1", to: "alice", offer: nil, now: t0 + 3)
        #expect(glare.call.state == .inviting)
        #expect(registry.calls["c2"]?.endReason == .glare)
        #expect(registry.calls(of: "alice", states: [.inviting, .ringing]).map(\.id) == ["c0"])
    }

    @Test func callsEndedByAnAnswerEndInIdOrder() throws {
        var registry = CallRegistry()
        let ids = (0..<6).map { "p\($0)" }
        for (index, id) in ids.enumerated().shuffled() {
            _ = try registry.invite(id: id, from: "alice", device: "a1", to: "x\(index)", offer: nil, now: t0)
        }
        _ = try registry.invite(id: "c", from: "bob", device: "b1", to: "alice", offer: nil, now: t0 + 1)
        let outcome = try registry.accept("c", user: "alice", device: "a1", answer: nil, now: t0 + 2)
        #expect(outcome.deliveries.endings.map(\.callID) == ["c"] + ids.flatMap { [$0, $0] })
        #expect(outcome.events.map(\.call.id) == ["c"] + ids)
    }

    @Test func aUserWhoBecomesActiveHasNoPendingCalls() throws {
        var registry = CallRegistry()
        _ = try registry.invite(id: "c1", from: "alice", device: "a1", to: "bob", offer: nil, now: t0)
        _ = try registry.invite(id: "c2", from: "alice", device: "a2", to: "carol", offer: nil, now: t0 + 1)
        _ = try registry.invite(id: "c3", from: "dave", device: "d1", to: "alice", offer: nil, now: t0 + 2)
        _ = try registry.invite(id: "c4", from: "erin", device: "e1", to: "bob", offer: nil, now: t0 + 3)
        _ = try registry.invite(id: "c5", from: "bob", device: "b2", to: "frank", offer: nil, now: t0 + 4)
        _ = try registry.ring("c5", user: "frank", device: "f1", now: t0 + 4)
        _ = try registry.invite(id: "c6", from: "gina", device: "g1", to: "hank", offer: nil, now: t0 + 5)

        let outcome = try registry.accept("c1", user: "bob", device: "b1", answer: nil, now: t0 + 6)

        let expected: [String: (EndReason, String)] = [
            "c2": (.cancelled, "alice"), "c3": (.busy, "alice"), "c4": (.busy, "bob"), "c5": (.cancelled, "bob"),
        ]
        for (id, (reason, party)) in expected {
            let call = try #require(registry.calls[id])
            #expect(call.state == .ended && call.endReason == reason && call.endedAt == t0 + 6, "\(id)")
            #expect(
                call.timeline.last
                    == TimelineEntry(at: t0 + 6, event: "ended", user: party, device: nil, reason: reason.rawValue))
            let told = outcome.deliveries.endings.filter { $0.callID == id }
            #expect(Set(told.map(\.user)) == [call.caller, call.callee], "\(id)")
            #expect(told.allSatisfy { $0.devices == .all && $0.reason == reason })
        }
        #expect(registry.calls["c6"]?.state == .inviting)
        #expect(registry.calls["c1"]?.state == .active)
        #expect(outcome.deliveries.endings.count == 1 + 2 * expected.count)
        for user in ["alice", "bob"] {
            #expect(registry.calls(of: user, states: [.inviting, .ringing]).isEmpty)
        }
        #expect(registry.pendingInvites(to: "carol").isEmpty)
        #expect(registry.pendingInvites(to: "frank").isEmpty)
        #expect(registry.pendingInvites(to: "hank").map(\.id) == ["c6"])
        #expect(registry.nextDeadline == registry.calls["c6"]?.ringDeadline)
    }

    @Test(arguments: ["alice", "bob"])
    func aUserInAnActiveCallCannotInvite(caller: String) throws {
        var registry = try Stage.active.registry()
        let before = registry.calls
        expectCallError(.invalidTransition) {
            _ = try registry.invite(id: "c2", from: caller, device: "x1", to: "dave", offer: nil, now: t0 + 5)
        }
        #expect(registry.calls == before)
        #expect(registry.calls(of: "dave").isEmpty)
    }

    @Test func aUserCannotCallThemselves() {
        var registry = CallRegistry()
        expectCallError(.badRequest) {
            _ = try registry.invite(id: "c1", from: "alice", device: "a1", to: "alice", offer: nil, now: t0)
        }
        #expect(registry.calls.isEmpty)
        #expect(registry.calls(of: "alice").isEmpty)
    }

    @Test(arguments: Stage.allCases)
    func aDuplicateCallIdIsABadRequest(existing stage: Stage) throws {
        var registry = try stage.registry()
        let before = registry.calls
        expectCallError(.badRequest) {
            _ = try registry.invite(id: "c1", from: "dave", device: "d1", to: "erin", offer: nil, now: t0 + 100)
        }
        #expect(registry.calls == before)
        #expect(registry.calls(of: "dave").isEmpty && registry.calls(of: "erin").isEmpty)
    }

    @Test func anInsecureOfferIsRefusedAndNothingIsCreated() throws {
        var registry = CallRegistry()
        for name in ["bad-sdes-crypto", "bad-no-fingerprint", "bad-sha1-fingerprint", "bad-no-setup"] {
            let offer = try Fixture.offer(name)
            expectCallError(.insecureSDP) {
                _ = try registry.invite(id: "c1", from: "alice", device: "a1", to: "bob", offer: offer, now: t0)
            }
        }
        #expect(registry.calls.isEmpty)
        #expect(registry.calls(of: "bob").isEmpty)
    }

    @Test func anInviteWhoseSdpIsAnAnswerIsABadRequest() throws {
        var registry = CallRegistry()
        let answer = try Fixture.answer()
        expectCallError(.badRequest) {
            _ = try registry.invite(id: "c1", from: "alice", device: "a1", to: "bob", offer: answer, now: t0)
        }
        #expect(registry.calls.isEmpty)
    }

    @Test(arguments: Stage.pending)
    func anAcceptWhoseSdpIsAnOfferIsABadRequest(from stage: Stage) throws {
        var registry = try stage.registry()
        let before = registry.calls
        let offer = try Fixture.offer("firefox-offer-av")
        expectCallError(.badRequest) {
            _ = try registry.accept("c1", user: "bob", device: "b1", answer: offer, now: t0 + 5)
        }
        // An answer whose keying is unsafe is refused too, and neither attempt changed the call.
        let actpass = try Fixture.answer("bad-answer-setup-actpass")
        expectCallError(.insecureSDP) {
            _ = try registry.accept("c1", user: "bob", device: "b1", answer: actpass, now: t0 + 5)
        }
        #expect(registry.calls == before)
        #expect(try registry.accept("c1", user: "bob", device: "b1", answer: nil, now: t0 + 6).call.state == .active)
    }

    @Test func aDeviceThatConnectsLateIsToldOfPendingInvitesOldestFirst() throws {
        var registry = CallRegistry()
        let offer = try Fixture.offer("firefox-offer-audio")
        _ = try registry.invite(id: "c9", from: "alice", device: "a1", to: "bob", offer: offer, now: t0)
        _ = try registry.invite(id: "c1", from: "carol", device: "k1", to: "bob", offer: nil, now: t0 + 1)
        _ = try registry.ring("c1", user: "bob", device: "b1", now: t0 + 2)
        _ = try registry.invite(id: "c5", from: "dave", device: "d1", to: "bob", offer: nil, now: t0 + 3)
        _ = try registry.decline("c5", user: "bob", device: "b1", now: t0 + 4)
        _ = try registry.invite(id: "c7", from: "bob", device: "b1", to: "erin", offer: nil, now: t0 + 5)

        let pending = registry.pendingInvites(to: "bob")
        #expect(pending.map(\.id) == ["c9", "c1"])
        #expect(pending.first?.offer == offer)
        #expect(registry.calls(of: "bob").map(\.id) == ["c7", "c5", "c1", "c9"])
        #expect(registry.calls(of: "bob", states: [.ended]).map(\.id) == ["c5"])
        #expect(registry.calls(of: nil).map(\.id) == ["c7", "c5", "c1", "c9"])
        #expect(registry.countsByState() == [.inviting: 2, .ringing: 1, .active: 0, .ended: 1])
    }
}
