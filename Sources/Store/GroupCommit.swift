import Foundation
import SwitchboardCore
import Synchronization

/// Group commit, shared by the stores that write to a database: transitions are queued, and those that arrive while
/// one batch commits form the next, so under load one transaction (one lock round, one commit, one WAL write) serves
/// many, and when idle a transition starts at once. One batch runs at a time per store.
final class GroupCommit: Sendable {
    /// One batch's inputs, in order, and what each came to (in the same order).
    typealias Commit =
        @Sendable ([(input: CallInput, now: Date)]) async throws(CallError) -> [Result<Applied, CallError>]

    /// Transitions committed together at most.
    let maxBatch: Int
    private let queue = Mutex(Queue())

    init(maxBatch: Int = 32) {
        self.maxBatch = maxBatch
    }

    /// A transition waiting for its batch.
    private struct Job: Sendable {
        let input: CallInput
        let now: Date
        let continuation: CheckedContinuation<Result<Applied, CallError>, Never>
    }

    private struct Queue {
        var jobs: [Job] = []
        var draining = false
    }

    /// Queues `input` and returns what it came to once its batch has committed with `commit`.
    func apply(_ input: CallInput, now: Date, commit: @escaping Commit) async throws(CallError) -> Applied {
        let result = await withCheckedContinuation { continuation in
            let drains = queue.withLock { queue -> Bool in
                queue.jobs.append(Job(input: input, now: now, continuation: continuation))
                defer { queue.draining = true }
                return !queue.draining
            }
            if drains { Task { await self.drain(commit) } }
        }
        return try result.get()
    }

    /// Runs the queued transitions, a batch per `commit`, until none is left.
    private func drain(_ commit: Commit) async {
        while true {
            let jobs = queue.withLock { queue -> [Job] in
                let batch = Array(queue.jobs.prefix(maxBatch))
                queue.jobs.removeFirst(batch.count)
                if batch.isEmpty { queue.draining = false }
                return batch
            }
            guard !jobs.isEmpty else { return }
            let results: [Result<Applied, CallError>]
            do throws(CallError) {
                results = try await commit(jobs.map { ($0.input, $0.now) })
            } catch {
                results = jobs.map { _ in .failure(error) }
            }
            // One result per input, or a caller would wait for ever.
            precondition(
                results.count == jobs.count, "a batch of \(jobs.count) came back with \(results.count) results")
            for (job, result) in zip(jobs, results) { job.continuation.resume(returning: result) }
        }
    }
}

/// A batch's inputs decided in order on one registry: each decides on what the ones before it changed, and a refusal
/// of the registry refuses that input only (the registry is left as it was before it).
struct BatchDecision {
    struct Decided {
        var call: Call?
        var events: [CallEvent]
        var envelopes: [Envelope]
    }

    let results: [Result<Decided, CallError>]

    init(
        _ inputs: [(input: CallInput, now: Date)], calls: [Call], configuration: CallRegistry.Configuration,
        encode: EnvelopeEncoder
    ) {
        var registry = CallRegistry(configuration: configuration, calls: calls)
        var results: [Result<Decided, CallError>] = []
        for (input, now) in inputs {
            var attempt = registry
            do throws(CallError) {
                let events = try attempt.apply(input, now: now)
                registry = attempt
                results.append(
                    .success(
                        Decided(
                            call: input.callID.flatMap { attempt.calls[$0] }, events: events,
                            envelopes: events.flatMap(encode))))
            } catch {
                results.append(.failure(error))
            }
        }
        self.results = results
    }

    /// The events of the accepted inputs, in order.
    var events: [CallEvent] { results.flatMap { (try? $0.get())?.events ?? [] } }
    var envelopes: [Envelope] { results.flatMap { (try? $0.get())?.envelopes ?? [] } }

    /// What each input came to, once the accepted envelopes were stored (`stored` in their order).
    func applied(stored: [StoredEvent]) -> [Result<Applied, CallError>] {
        var rest = stored[...]
        return results.map { result in
            result.map { decided in
                let mine = Array(rest.prefix(decided.envelopes.count))
                rest = rest.dropFirst(decided.envelopes.count)
                return Applied(call: decided.call, events: decided.events, stored: mine)
            }
        }
    }
}
