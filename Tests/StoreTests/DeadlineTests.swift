import Foundation
import Synchronization
import Testing

@testable import Store

/// The deadline every PostgreSQL operation runs under. A database driver call may not heed cancellation (a query
/// written to a connection that closed under it is never answered): the deadline must still end the wait, and so
/// free the batch queued behind it and a server's graceful shutdown.
@Suite(.timeLimit(.minutes(1)))
struct DeadlineTests {
    @Test func aBodyThatIgnoresCancellationFailsAtTheDeadline() async throws {
        let gate = Gate()
        defer { gate.open() }
        await #expect(throws: StoreCorruption.self) {
            try await withDeadline(.milliseconds(100)) {
                await gate.wait()
                return 1
            }
        }
    }

    @Test func theBodysValueAndErrorComeBack() async throws {
        #expect(try await withDeadline(.seconds(60)) { 7 } == 7)
        await #expect(throws: TestError.self) {
            try await withDeadline(.seconds(60)) { () async throws -> Int in throw TestError() }
        }
    }

    @Test func aCancelledCallerStopsWaitingAtOnce() async throws {
        let gate = Gate()
        defer { gate.open() }
        let waiting = Task {
            try await withDeadline(.seconds(600)) {
                await gate.wait()
                return 1
            }
        }
        waiting.cancel()
        await #expect(throws: CancellationError.self) { try await waiting.value }
    }

    @Test func aCallerCancelledBeforeItStartsDoesNotWait() async throws {
        let gate = Gate()
        defer { gate.open() }
        let waiting = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await withDeadline(.seconds(600)) {
                await gate.wait()
                return 1
            }
        }
        await #expect(throws: CancellationError.self) { try await waiting.value }
    }
}

private struct TestError: Error {}

/// A wait that heeds no cancellation, until it is opened.
private final class Gate: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func wait() async {
        await withCheckedContinuation { continuation in
            let opened = state.withLock { state -> Bool in
                if !state.open { state.waiters.append(continuation) }
                return state.open
            }
            if opened { continuation.resume() }
        }
    }

    func open() {
        let waiters = state.withLock { state in
            state.open = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }
}
