public import STUN

/// A token bucket per source IP for requests answered before authentication (RFC 8656 §21.1: a server should
/// limit the rate of unauthenticated requests it answers). Bounded: at most ``maximumSources`` buckets are kept;
/// full buckets are forgotten first, and a new source is refused while every kept bucket is in use.
public struct SourceRateLimiter: Sendable {
    static let maximumSources = 65_536

    private struct Bucket {
        var tokens: Double
        var updatedAt: RelayTime
    }

    let rate: Double
    let burst: Double
    private var buckets: [IPAddress: Bucket] = [:]

    init(rate: Int, burst: Int) {
        self.rate = Double(max(rate, 1))
        self.burst = Double(max(burst, 1))
    }

    /// Takes one token for `source`'s bucket; false when it has none left. IPv6 sources share a bucket per /64 (one
    /// host can hold a whole /64 and rotate through it).
    mutating func admit(_ address: IPAddress, now: RelayTime) -> Bool {
        let source = Self.source(of: address)
        var bucket = buckets[source] ?? Bucket(tokens: burst, updatedAt: now)
        if buckets[source] == nil && buckets.count >= Self.maximumSources {
            prune(now: now)
            guard buckets.count < Self.maximumSources else { return false }
        }
        let elapsed = Double(max(0, now.milliseconds - bucket.updatedAt.milliseconds)) / 1000
        bucket.tokens = min(burst, bucket.tokens + elapsed * rate)
        bucket.updatedAt = now
        guard bucket.tokens >= 1 else {
            buckets[source] = bucket
            return false
        }
        bucket.tokens -= 1
        buckets[source] = bucket
        return true
    }

    /// The source a per-address limit counts: an IPv6 address's /64, an IPv4 address itself.
    public static func source(of address: IPAddress) -> IPAddress {
        address.isIPv6 ? slash64(address) : address
    }

    static func slash64(_ address: IPAddress) -> IPAddress {
        let bytes = address.bytes
        return IPAddress(bytes: bytes[0..<8] + [UInt8](repeating: 0, count: 8)) ?? address
    }

    /// Forgets sources whose buckets have refilled.
    mutating func prune(now: RelayTime) {
        buckets = buckets.filter { _, bucket in
            let elapsed = Double(max(0, now.milliseconds - bucket.updatedAt.milliseconds)) / 1000
            return bucket.tokens + elapsed * rate < burst
        }
    }
}
