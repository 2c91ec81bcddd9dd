import DequeModule
import NIOCore
import Synchronization

/// One open SSE stream: a bounded queue of encoded frames between the signaling state (which never waits) and the
/// HTTP response writer (which waits for the client): a task awaiting ``next()``, or an event-loop writer polling
/// with ``poll(notify:)``.
///
/// When the client reads too slowly and the queue passes its bounds, the stream is cut: the queue stops taking
/// frames and the connection is closed, so the server's memory per stream stays bounded.
final class EventStream: Sendable {
    /// Why a stream stopped.
    enum Ending: Sendable {
        case finished
        case slowReader
        case superseded
    }

    let serial: Int
    let user: String
    let device: String
    /// Streams of admins watching every call's lifecycle.
    let watchesAll: Bool
    private let channel: (any Channel)?
    private let maxFrames: Int
    private let maxBytes: Int
    private let state = Mutex(State())

    private struct State {
        var frames = Deque<ByteBuffer>()
        var bytes = 0
        var waiter: Waiter?
        var ending: Ending?
        var forgotten = false
        var responseComplete = false
        /// While the stream catches up (its replay is being read from the store), live events wait here; nil once
        /// it has caught up.
        var held: [(id: Int64, frame: ByteBuffer)]? = []
        var heldBytes = 0
        /// The highest event id queued: a stored event can reach a stream twice (in its replay, then from a bus
        /// that delivers after the commit), and is queued once.
        var lastID: Int64 = 0
    }

    init(
        serial: Int, user: String, device: String, watchesAll: Bool, channel: (any Channel)?, maxFrames: Int,
        maxBytes: Int
    ) {
        self.serial = serial
        self.user = user
        self.device = device
        self.watchesAll = watchesAll
        self.channel = channel
        self.maxFrames = maxFrames
        self.maxBytes = maxBytes
    }

    /// Queues a stored event as it is published. Until ``catchUp(first:replay:after:)``, it waits behind the
    /// replay; a stream whose held events pass its bounds is cut like a slow reader.
    @discardableResult
    func enqueue(_ frame: ByteBuffer, id: Int64) -> EnqueueResult {
        let held = state.withLock { state -> EnqueueResult? in
            guard state.ending == nil else { return .ended }
            guard state.held != nil else {
                guard id > state.lastID else { return .queued }
                state.lastID = id
                return nil
            }
            guard state.held!.count < maxFrames, state.heldBytes + frame.readableBytes <= maxBytes else {
                state.ending = .slowReader
                state.held = nil
                return .overflowed
            }
            state.held!.append((id, frame))
            state.heldBytes += frame.readableBytes
            return .queued
        }
        if let held {
            if held == .overflowed { channel?.close(promise: nil) }
            return held
        }
        return enqueue(frame)
    }

    /// Ends catching up: queues `first` (retry, hello, resync), then the replay and the live events held
    /// meanwhile, in id order, each once, leaving out every id up to `after`.
    func catchUp(first: [ByteBuffer], replay: [(id: Int64, frame: ByteBuffer)], after: Int64) {
        for frame in first { enqueue(frame) }
        var pending = replay
        var last = after
        // Live events keep being held while the earlier ones are queued, so nothing overtakes them.
        while true {
            let frames = state.withLock { state -> [(id: Int64, frame: ByteBuffer)]? in
                let held = state.held ?? []
                guard !held.isEmpty || !pending.isEmpty else {
                    state.held = nil
                    state.heldBytes = 0
                    state.lastID = last
                    return nil
                }
                state.held = state.held == nil ? nil : []
                state.heldBytes = 0
                return held
            }
            guard let frames else { return }
            var seen: Set<Int64> = []
            for (id, frame) in (frames + pending).sorted(by: { $0.id < $1.id })
            where id > last && seen.insert(id).inserted {
                guard enqueue(frame) == .queued else { return }
                last = id
            }
            pending = []
        }
    }

    /// Who waits for the next frames: a task in ``next()``, or an event-loop writer told by a call.
    private enum Waiter {
        case task(CheckedContinuation<[ByteBuffer]?, Never>)
        case notify(@Sendable () -> Void)

        /// Hands `frames` (nil: the stream is over) to a task, or tells a writer to poll.
        func wake(_ frames: [ByteBuffer]?) {
            switch self {
            case .task(let continuation): continuation.resume(returning: frames)
            case .notify(let notify): notify()
            }
        }

        /// Whether the waiter takes the frames it is woken with (a polling writer takes them from the queue).
        var takesFrames: Bool {
            if case .task = self { return true }
            return false
        }
    }

    /// What became of a frame given to ``enqueue(_:)``.
    enum EnqueueResult: Sendable, Equatable {
        case queued
        /// The stream had already ended; the frame was dropped.
        case ended
        /// This frame passed the stream's bounds: the stream is now cut and its connection closing.
        case overflowed
    }

    /// Queues a frame without ever waiting.
    @discardableResult
    func enqueue(_ frame: ByteBuffer) -> EnqueueResult {
        let (result, waiter) = state.withLock { state -> (EnqueueResult, Waiter?) in
            guard state.ending == nil else { return (.ended, nil) }
            if let waiter = state.waiter, waiter.takesFrames {
                state.waiter = nil
                return (.queued, waiter)
            }
            guard state.frames.count < maxFrames, state.bytes + frame.readableBytes <= maxBytes else {
                state.ending = .slowReader
                state.frames.removeAll()
                state.bytes = 0
                state.waiter = nil
                return (.overflowed, nil)
            }
            state.frames.append(frame)
            state.bytes += frame.readableBytes
            defer { state.waiter = nil }
            return (.queued, state.waiter)
        }
        waiter?.wake([frame])
        if result == .overflowed { channel?.close(promise: nil) }
        return result
    }

    /// Ends the stream after the frames already queued and `final`, if given. A reader that does not take them
    /// within a few seconds has its connection closed, so a stalled client cannot hold up a shutdown.
    func finish(_ ending: Ending, final: ByteBuffer?) {
        let (ended, waiter) = state.withLock { state -> (Bool, (Waiter, [ByteBuffer]?)?) in
            guard state.ending == nil else { return (false, nil) }
            state.ending = ending
            if let final { state.frames.append(final) }
            guard let waiter = state.waiter else { return (true, nil) }
            state.waiter = nil
            guard waiter.takesFrames else { return (true, (waiter, nil)) }
            let frames = Array(state.frames)
            state.frames.removeAll()
            return (true, (waiter, frames.isEmpty ? nil : frames))
        }
        if let (waiter, frames) = waiter { waiter.wake(frames) }
        if ended, let channel {
            // Only a response still unfinished by then is cut: a connection that went on to serve other requests
            // after its stream ended is left alone.
            channel.eventLoop.scheduleTask(in: .seconds(3)) { [self] in
                if !isResponseComplete { channel.close(promise: nil) }
            }
        }
    }

    /// The frames queued so far, waiting for at least one; nil once the stream is over and drained.
    func next() async -> [ByteBuffer]? {
        await withCheckedContinuation { (continuation: CheckedContinuation<[ByteBuffer]?, Never>) in
            switch poll(waiter: .task(continuation)) {
            case .frames(let frames): continuation.resume(returning: frames)
            case .ended: continuation.resume(returning: nil)
            case .waiting: break
            }
        }
    }

    /// What ``poll(notify:)`` found.
    enum Poll {
        case frames([ByteBuffer])
        /// The stream is over and drained.
        case ended
        /// Nothing queued: `notify` is called once when there is (or when the stream ends).
        case waiting
    }

    /// The frames queued so far, without waiting: when there are none, `notify` is called (from whichever thread
    /// queues the next frame or ends the stream) once there are.
    func poll(notify: @escaping @Sendable () -> Void) -> Poll {
        poll(waiter: .notify(notify))
    }

    private func poll(waiter: Waiter) -> Poll {
        state.withLock { state in
            if !state.frames.isEmpty {
                let frames = Array(state.frames)
                state.frames.removeAll(keepingCapacity: true)
                state.bytes = 0
                return .frames(frames)
            }
            if state.ending != nil { return .ended }
            state.waiter = waiter
            return .waiting
        }
    }

    var ending: Ending? { state.withLock { $0.ending } }

    /// Whether the HTTP response carrying this stream was written to its end.
    var isResponseComplete: Bool { state.withLock { $0.responseComplete } }

    func markResponseComplete() { state.withLock { $0.responseComplete = true } }

    /// True exactly once: the first time the stream's owner forgets it.
    func markForgotten() -> Bool {
        state.withLock { state in
            defer { state.forgotten = true }
            return !state.forgotten
        }
    }
}
