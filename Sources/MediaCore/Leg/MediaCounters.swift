/// Why the secure relay dropped a datagram.
public enum DropCause: String, Sendable, Hashable, CaseIterable, Codable {
    /// SRTP/SRTCP authentication failed (a forged or corrupted packet).
    case authentication
    /// SRTP/SRTCP replay protection refused a packet index already seen (or too old).
    case replay
    /// From a 5-tuple that did not complete an ICE check with this leg.
    case unknownSource = "unknown_source"
    /// For a call whose legs were torn down.
    case afterHangup = "after_hangup"
    /// Media before both legs completed DTLS with verified fingerprints.
    case notReady = "not_ready"
    /// Not STUN, DTLS, RTP or RTCP, or cut short.
    case malformed
    /// A STUN request the ICE-lite agent refused (wrong credentials, missing attributes).
    case stunRefused = "stun_refused"
    /// A DTLS record the leg's engine could not take (a handshake failure, a ClientHello flood).
    case dtls
    /// The socket's send buffer was full: the relay drops rather than queue without bound.
    case congested
}

/// Packet and byte counts of one leg, as seen from Switchboard: `in` arrived from the party, `out` went to it.
public struct MediaCounters: Sendable, Hashable {
    public var packetsIn = 0
    public var bytesIn = 0
    public var packetsOut = 0
    public var bytesOut = 0
    public var drops: [DropCause: Int] = [:]

    public init() {}

    public mutating func drop(_ cause: DropCause, count: Int = 1) {
        drops[cause, default: 0] += count
    }

    /// Adds what `counters` counted since `earlier` (a snapshot of the same counters).
    public mutating func add(_ counters: MediaCounters, since earlier: MediaCounters) {
        packetsIn += counters.packetsIn - earlier.packetsIn
        bytesIn += counters.bytesIn - earlier.bytesIn
        packetsOut += counters.packetsOut - earlier.packetsOut
        bytesOut += counters.bytesOut - earlier.bytesOut
        for (cause, count) in counters.drops { drop(cause, count: count - (earlier.drops[cause] ?? 0)) }
    }
}
