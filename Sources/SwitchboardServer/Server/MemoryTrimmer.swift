internal import CAllocator
import CoreMetrics
import ServiceLifecycle
import Synchronization

/// Gives memory back after a connection storm. glibc keeps what a burst of connections freed in its per-thread
/// arenas, so RSS would stay at the storm's peak for ever; when the open connections have fallen well below their
/// high-water mark since the last trim, the allocator is asked to return its free pages (`malloc_trim`).
final class MemoryTrimmer: Sendable {
    /// Connections that must have closed since the high-water mark before a trim is worth its cost.
    let minimumDrop: Int
    private let highWater = Mutex(0)
    private let trims: CoreMetrics.Counter
    private let freeBytes: CoreMetrics.Gauge

    init(minimumDrop: Int = 256, factory: some MetricsFactory) {
        self.minimumDrop = minimumDrop
        trims = Counter(label: "switchboard_memory_trims_total", factory: factory)
        // Free bytes the allocator held just before the last trim.
        freeBytes = Gauge(label: "switchboard_allocator_free_bytes", factory: factory)
    }

    /// Records `open` connections; trims when they have fallen to half the high-water mark or less, by at least
    /// ``minimumDrop``. Returns whether it trimmed.
    @discardableResult
    func observe(open: Int) -> Bool {
        let trim = highWater.withLock { mark in
            mark = max(mark, open)
            guard mark - open >= minimumDrop, open <= mark / 2 else { return false }
            mark = open
            return true
        }
        guard trim else { return false }
        // mallinfo2 walks every arena under its lock: only here, not every second.
        freeBytes.record(sb_allocator_free_bytes())
        _ = sb_allocator_trim()
        trims.increment()
        return true
    }
}

/// Runs the ``MemoryTrimmer`` once a second over the open-connection count.
struct MemoryTrimService: Service {
    let trimmer: MemoryTrimmer
    let limiter: ConnectionLimiter

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                trimmer.observe(open: limiter.open)
                try await Task.sleep(for: .seconds(1))
            }
        }
    }
}
