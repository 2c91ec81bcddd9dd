import Foundation
import SwitchboardCore
import Synchronization
import Testing

/// Inputs that race: the registry is a value, so whoever mutates it first wins, and the loser gets a typed error.
@Suite struct CallRaceTests {
    @Test(arguments: Stage.pending)
    func twoDevicesAcceptAtOnceAndTheFirstWins(from stage: Stage) throws {
        var registry = try stage.registry()
        let won = try registry.accept("c1", user: "bob", device: "b2", answer: nil, now: t0 + 5)
        let afterWin = registry.calls
        expectCallError(.invalidTransition) {
            _ = try registry.accept("c1", user: "bob", device: "b1", answer: nil, now: t0 + 5)
        }
        #expect(registry.calls == afterWin)
        #expect(won.deliveries.acceptedCount == 1)
        #expect(try registry.call("c1", visibleTo: "bob").answeredBy == "b2")
        #expect(
            won.deliveries.endings == [
                Ending(user: "bob", devices: .allExcept("b2"), callID: "c1", reason: .answeredElsewhere)
            ])
    }

    @Test func declineOnOneDeviceAndAcceptOnAnotherTheFirstWins() throws {
        var declinedFirst = try Stage.ringing.registry()
        _ = try declinedFirst.decline("c1", user: "bob", device: "b1", now: t0 + 5)
        expectCallError(.invalidTransition) {
            _ = try declinedFirst.accept("c1", user: "bob", device: "b2", answer: nil, now: t0 + 5)
        }
        #expect(declinedFirst.calls["c1"]?.endReason == .declined)

        var acceptedFirst = try Stage.ringing.registry()
        _ = try acceptedFirst.accept("c1", user: "bob", device: "b2", answer: nil, now: t0 + 5)
        expectCallError(.invalidTransition) {
            _ = try acceptedFirst.decline("c1", user: "bob", device: "b1", now: t0 + 5)
        }
        #expect(acceptedFirst.calls["c1"]?.state == .active)
    }

    /// The caller hangs up while the callee accepts. If the hangup lands first the call is cancelled and the
    /// accept is refused; if the accept lands first the call was answered, and the hangup ends it as `hangup`.
    /// Either way exactly one of "answered" and "cancelled" happened.
    @Test(arguments: [true, false])
    func acceptRacingTheCallersHangup(hangupFirst: Bool) throws {
        var registry = try Stage.ringing.registry()
        var accepted: CallRegistry.Outcome?
        if hangupFirst {
            let cancelled = try registry.hangup("c1", user: "alice", device: "a1", now: t0 + 5)
            #expect(cancelled.call.endReason == .cancelled)
            expectCallError(.invalidTransition) {
                accepted = try registry.accept("c1", user: "bob", device: "b1", answer: nil, now: t0 + 5)
            }
        } else {
            accepted = try registry.accept("c1", user: "bob", device: "b1", answer: nil, now: t0 + 5)
            let hungUp = try registry.hangup("c1", user: "alice", device: "a1", now: t0 + 5)
            #expect(hungUp.call.endReason == .hangup)
        }
        let call = try #require(registry.calls["c1"])
        #expect(call.state == .ended)
        #expect((accepted != nil) == (call.endReason == .hangup))
        #expect((accepted == nil) == (call.endReason == .cancelled))
        #expect((call.answeredBy != nil) == (accepted != nil))
    }

    /// A registry shared between tasks, the way the server holds it, and a barrier that keeps two tasks in
    /// lockstep so that both reach each call at the same moment.
    final class Shared: Sendable {
        let registry: Mutex<CallRegistry>
        private let arrivals = Atomic<Int>(0)
        init(_ registry: CallRegistry) { self.registry = Mutex(registry) }

        /// Waits until both tasks arrived at `round`: a short spin so that they leave together, then yields in
        /// case the two tasks share one thread.
        func arriveAndWait(round: Int) async {
            arrivals.add(1, ordering: .acquiringAndReleasing)
            var spins = 0
            while arrivals.load(ordering: .acquiring) < 2 * (round + 1) {
                spins += 1
                if spins > 10_000 { await Task.yield() }
            }
        }

        func attempt(
            _ input: (inout CallRegistry) throws(CallError) -> CallRegistry.Outcome
        ) -> Result<CallRegistry.Outcome, CallError> {
            registry.withLock { registry in
                do throws(CallError) { return .success(try input(&registry)) } catch { return .failure(error) }
            }
        }
    }

    struct Attempt: Sendable {
        var id: String
        var device: String
        var result: Result<CallRegistry.Outcome, CallError>
    }

    static let raceCount = 200

    /// `raceCount` ringing calls, each between its own two users: `caller-i` → `callee-i`, id `c-i`.
    static func ringingCalls() throws -> CallRegistry {
        var registry = CallRegistry()
        for index in 0..<raceCount {
            _ = try registry.invite(
                id: "c-\(index)", from: "caller-\(index)", device: "phone", to: "callee-\(index)", offer: nil,
                now: t0)
            _ = try registry.ring("c-\(index)", user: "callee-\(index)", device: "d1", now: t0)
        }
        return registry
    }

    @Test func concurrentAcceptsFromTwoDevicesHaveExactlyOneWinnerPerCall() async throws {
        let shared = Shared(try Self.ringingCalls())
        let attempts = await withTaskGroup(of: [Attempt].self) { group in
            for device in ["d1", "d2"] {
                group.addTask {
                    var attempts: [Attempt] = []
                    for index in 0..<Self.raceCount {
                        let id = "c-\(index)"
                        await shared.arriveAndWait(round: index)
                        let result = shared.attempt { registry throws(CallError) in
                            try registry.accept(id, user: "callee-\(index)", device: device, answer: nil, now: t0 + 1)
                        }
                        attempts.append(Attempt(id: id, device: device, result: result))
                    }
                    return attempts
                }
            }
            return await group.reduce(into: []) { $0 += $1 }
        }

        #expect(attempts.count == 2 * Self.raceCount)
        let final = shared.registry.withLock { $0.calls }
        for (id, tries) in Dictionary(grouping: attempts, by: \.id) {
            #expect(tries.count == 2)
            var winners: [String] = []
            var acceptedEvents = 0
            for attempt in tries {
                switch attempt.result {
                case .success(let outcome):
                    winners.append(attempt.device)
                    acceptedEvents += outcome.deliveries.acceptedCount
                case .failure(let error):
                    #expect(error.code == .invalidTransition, "\(id): \(error)")
                }
            }
            #expect(winners.count == 1, "\(id) was won by \(winners)")
            #expect(acceptedEvents == 1, "\(id)")
            #expect(final[id]?.state == .active)
            #expect(final[id]?.answeredBy == winners.first)
        }
    }

    @Test func concurrentAcceptAndHangupNeverBothAnswerAndCancel() async throws {
        let shared = Shared(try Self.ringingCalls())
        let attempts = await withTaskGroup(of: [Attempt].self) { group in
            for role in ["accept", "hangup"] {
                group.addTask {
                    var attempts: [Attempt] = []
                    for index in 0..<Self.raceCount {
                        let id = "c-\(index)"
                        await shared.arriveAndWait(round: index)
                        let result = shared.attempt { registry throws(CallError) in
                            role == "accept"
                                ? try registry.accept(
                                    id, user: "callee-\(index)", device: "d1", answer: nil, now: t0 + 1)
                                : try registry.hangup(id, user: "caller-\(index)", device: "phone", now: t0 + 1)
                        }
                        attempts.append(Attempt(id: id, device: role, result: result))
                    }
                    return attempts
                }
            }
            return await group.reduce(into: []) { $0 += $1 }
        }

        let final = shared.registry.withLock { $0.calls }
        for (id, tries) in Dictionary(grouping: attempts, by: \.id) {
            let accept = try #require(tries.first { $0.device == "accept" }?.result)
            let hangup = try #require(tries.first { $0.device == "hangup" }?.result)
            let call = try #require(final[id])
            #expect(call.state == .ended)
            // The hangup always lands: before the answer it cancels, after it it hangs up.
            guard case .success(let ended) = hangup else {
                Issue.record("\(id): hangup failed: \(hangup)")
                continue
            }
            switch accept {
            case .success(let outcome):
                #expect(outcome.deliveries.acceptedCount == 1)
                #expect(ended.call.endReason == .hangup && call.answeredBy == "d1", "\(id)")
            case .failure(let error):
                #expect(error.code == .invalidTransition)
                #expect(ended.call.endReason == .cancelled && call.answeredBy == nil, "\(id)")
            }
        }
    }
}
