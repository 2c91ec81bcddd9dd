import Foundation
import Synchronization

/// A token bucket per key (user id): `rate` requests per second, bursts of twice that.
final class RateLimiter: Sendable {
    private struct Bucket {
        var tokens: Double
        var updated: Date
    }

    private let rate: Double
    private let burst: Double
    private let buckets = Mutex<[String: Bucket]>([:])

    init(ratePerSecond: Double) {
        self.rate = ratePerSecond
        self.burst = max(1, ratePerSecond * 2)
    }

    /// Whether `key` may make a request now; takes a token when it may.
    func allow(_ key: String, now: Date) -> Bool {
        guard rate > 0 else { return true }
        return buckets.withLock { buckets in
            var bucket = buckets[key] ?? Bucket(tokens: burst, updated: now)
            // A wall clock stepping back gives no tokens rather than taking them away.
            bucket.tokens = min(burst, bucket.tokens + max(0, now.timeIntervalSince(bucket.updated)) * rate)
            bucket.updated = now
            let allowed = bucket.tokens >= 1
            if allowed { bucket.tokens -= 1 }
            buckets[key] = bucket
            if buckets.count > 100_000 {
                // Full buckets carry no information: forget them.
                buckets = buckets.filter { $0.value.tokens + now.timeIntervalSince($0.value.updated) * rate < burst }
            }
            return allowed
        }
    }
}
