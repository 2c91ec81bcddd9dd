import SwitchboardServer
import Synchronization
import Testing

/// The bound on event streams being opened at once: past it opens wait in arrival order, and one address cannot
/// fill the queue.
@Suite struct OpeningGateTests {
    /// Records which opens have started, in order.
    final class Started: Sendable {
        let order = Mutex<[Int]>([])
        func start(_ id: Int) -> @Sendable () -> Void { { self.order.withLock { $0.append(id) } } }
        var ids: [Int] { order.withLock { $0 } }
    }

    @Test func opensPastTheBoundWaitAndStartInArrivalOrder() {
        let gate = OpeningGate(limit: 2, perAddress: 10)
        let started = Started()
        for id in 1...5 { #expect(gate.enter(from: "a\(id)", started.start(id))) }
        #expect(started.ids == [1, 2])
        gate.leave(from: "a1")
        #expect(started.ids == [1, 2, 3])
        gate.leave(from: "a2")
        gate.leave(from: "a3")
        #expect(started.ids == [1, 2, 3, 4, 5])
        gate.leave(from: "a4")
        gate.leave(from: "a5")
        // Every slot is back: two more start at once.
        #expect(gate.enter(from: "b", started.start(6)))
        #expect(gate.enter(from: "c", started.start(7)))
        #expect(started.ids.suffix(2) == [6, 7])
    }

    @Test func oneAddressCannotHoldMoreThanItsShareRunningOrWaiting() {
        let gate = OpeningGate(limit: 1, perAddress: 2)
        let started = Started()
        #expect(gate.enter(from: "x", started.start(1)))
        #expect(gate.enter(from: "x", started.start(2)))
        #expect(!gate.enter(from: "x", started.start(3)))
        // Another address still gets in line.
        #expect(gate.enter(from: "y", started.start(4)))
        #expect(started.ids == [1])
        gate.leave(from: "x")
        #expect(started.ids == [1, 2])
        // x has one open again: it may queue another.
        #expect(gate.enter(from: "x", started.start(5)))
        gate.leave(from: "x")
        gate.leave(from: "y")
        #expect(started.ids == [1, 2, 4, 5])
        #expect(!started.ids.contains(3))
    }
}
