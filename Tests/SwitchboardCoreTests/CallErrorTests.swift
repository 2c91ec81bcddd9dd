import Foundation
import SwitchboardCore
import Testing

/// Every input the state machine refuses, with the typed error it refuses it with. A refused input never changes
/// the registry.
@Suite struct CallErrorTests {
    @Test(arguments: Action.allCases, Stage.allCases)
    func eachActionIsAllowedOnlyInItsStates(action: Action, stage: Stage) throws {
        var registry = try stage.registry()
        let before = registry.calls
        if action.isAllowed(in: stage.state) {
            try action.perform(on: &registry, user: "bob", device: "b1", now: t0 + 100)
            if action == .ring && stage.state == .ringing {
                // b1 already rang in this stage: acknowledging again is accepted and changes nothing.
                #expect(registry.calls == before, "a repeated ringing acknowledgement adds nothing")
            } else {
                #expect(registry.calls != before, "an allowed \(action) changes the call or its timeline")
            }
        } else {
            expectCallError(.invalidTransition) {
                try action.perform(on: &registry, user: "bob", device: "b1", now: t0 + 100)
            }
            #expect(registry.calls == before)
        }
    }

    @Test(arguments: [Action.hangup, .signal], Stage.allCases)
    func theCallerMayHangUpAndSignalUntilTheCallEnds(action: Action, stage: Stage) throws {
        var registry = try stage.registry()
        let before = registry.calls
        if stage.state == .ended {
            expectCallError(.invalidTransition) {
                try action.perform(on: &registry, user: "alice", device: "a1", now: t0 + 100)
            }
            #expect(registry.calls == before)
        } else {
            try action.perform(on: &registry, user: "alice", device: "a1", now: t0 + 100)
        }
    }

    @Test(arguments: Action.allCases.filter(\.isCalleeOnly), Stage.allCases)
    func theCallerCannotDoWhatOnlyTheCalleeMay(action: Action, stage: Stage) throws {
        var registry = try stage.registry()
        let before = registry.calls
        expectCallError(.forbidden) {
            try action.perform(on: &registry, user: "alice", device: "a1", now: t0 + 100)
        }
        #expect(registry.calls == before)
    }

    @Test(arguments: Action.allCases, Stage.allCases)
    func someoneElseCannotActOnTheCall(action: Action, stage: Stage) throws {
        var registry = try stage.registry()
        let before = registry.calls
        expectCallError(.callNotFound) {
            try action.perform(on: &registry, user: "mallory", device: "m1", now: t0 + 100)
        }
        #expect(registry.calls == before)
    }

    @Test(arguments: Stage.allCases)
    func onlyThePartiesAndAdminsCanReadTheCall(stage: Stage) throws {
        let registry = try stage.registry()
        let call = try #require(registry.calls["c1"])
        expectCallError(.callNotFound) { _ = try registry.call("c1", visibleTo: "mallory") }
        expectCallError(.callNotFound) { _ = try registry.call("c1", visibleTo: "mallory", isAdmin: false) }
        #expect(try registry.call("c1", visibleTo: "mallory", isAdmin: true) == call)
        #expect(try registry.call("c1", visibleTo: "alice") == call)
        #expect(try registry.call("c1", visibleTo: "bob") == call)
        #expect(registry.calls(of: "mallory").isEmpty)
    }

    @Test(arguments: Action.allCases)
    func anUnknownCallIsNotFound(action: Action) throws {
        var registry = try Stage.ringing.registry()
        let before = registry.calls
        for user in ["alice", "bob", "mallory"] {
            expectCallError(.callNotFound) {
                try action.perform(on: &registry, call: "nope", user: user, device: "x1", now: t0 + 5)
            }
        }
        // Ids are compared exactly.
        expectCallError(.callNotFound) {
            try action.perform(on: &registry, call: "C1", user: "bob", device: "b1", now: t0 + 5)
        }
        #expect(registry.calls == before)
    }

    @Test func readingAnUnknownCallIsNotFoundEvenForAnAdmin() {
        let registry = CallRegistry()
        expectCallError(.callNotFound) { _ = try registry.call("c1", visibleTo: "alice") }
        expectCallError(.callNotFound) { _ = try registry.call("c1", visibleTo: "root", isAdmin: true) }
    }

    @Test func errorsAreEqualByCodeAndCarryTheApiSpelling() {
        #expect(CallError(.forbidden, "one") == CallError(.forbidden, "two"))
        #expect(CallError(.forbidden, "one") != CallError(.badRequest, "one"))
        #expect(CallError(.invalidTransition, "x").description == "invalid_transition: x")
        #expect(
            [CallError.Code.callNotFound, .invalidTransition, .forbidden, .badRequest, .insecureSDP].map(\.rawValue)
                == ["call_not_found", "invalid_transition", "forbidden", "bad_request", "insecure_sdp"])
        #expect(EndReason.noAnswer.rawValue == "no_answer")
        #expect(EndReason.answeredElsewhere.rawValue == "answered_elsewhere")
    }
}
