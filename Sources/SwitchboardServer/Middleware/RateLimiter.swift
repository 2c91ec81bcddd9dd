import Foundation
import Synchronization

/// A token bucket per key (a user id, or a client address before authentication): `rate` requests per second,
/// bursts of twice that.
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

    /// Takes `cost` tokens from `key`'s bucket when it holds them and returns nil; otherwise takes nothing and
    /// returns the whole seconds until it will hold them (for `Retry-After`).
    func take(_ key: String, now: Date, cost: Double = 1) -> Int? {
        guard rate > 0 else { return nil }
        return buckets.withLock { buckets -> Int? in
            var bucket = buckets[key] ?? Bucket(tokens: burst, updated: now)
            // A wall clock stepping back gives no tokens rather than taking them away.
            bucket.tokens = min(burst, bucket.tokens + max(0, now.timeIntervalSince(bucket.updated)) * rate)
            bucket.updated = now
            let cost = min(cost, burst)
            let allowed = bucket.tokens >= cost
            if allowed { bucket.tokens -= cost }
            buckets[key] = bucket
            if buckets.count > 100_000 {
                // Full buckets carry no information: forget them.
                buckets = buckets.filter { $0.value.tokens + now.timeIntervalSince($0.value.updated) * rate < burst }
            }
            // At most a day, whatever the rate: the seconds must fit an Int.
            return allowed ? nil : max(1, Int(min(((cost - bucket.tokens) / rate).rounded(.up), 86_400)))
        }
    }
}
