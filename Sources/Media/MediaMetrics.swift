import CoreMetrics
import MediaCore

/// The secure relay's metrics through swift-metrics: media packets and bytes by direction (`in` from a party, `out`
/// to one), drops by cause, legs by state and the DTLS handshake time. Counters are added once a second.
struct MediaMetrics {
    let packets: [String: CoreMetrics.Counter]
    let bytes: [String: CoreMetrics.Counter]
    let drops: [DropCause: CoreMetrics.Counter]
    let legs: [String: CoreMetrics.Gauge]
    let handshakeTime: CoreMetrics.Timer

    static let legStates = ["new", "checking", "connected", "forwarding", "failed"]

    init(factory: any MetricsFactory) {
        func counters(_ label: String) -> [String: CoreMetrics.Counter] {
            Dictionary(
                uniqueKeysWithValues: ["in", "out"].map {
                    ($0, Counter(label: label, dimensions: [("direction", $0)], factory: factory))
                })
        }
        packets = counters("switchboard_media_packets_total")
        bytes = counters("switchboard_media_bytes_total")
        drops = Dictionary(
            uniqueKeysWithValues: DropCause.allCases.map {
                (
                    $0,
                    Counter(
                        label: "switchboard_media_dropped_total", dimensions: [("cause", $0.rawValue)],
                        factory: factory)
                )
            })
        legs = Dictionary(
            uniqueKeysWithValues: Self.legStates.map {
                ($0, Gauge(label: "switchboard_media_legs", dimensions: [("state", $0)], factory: factory))
            })
        handshakeTime = Timer(
            label: "switchboard_media_dtls_handshake_seconds", preferredDisplayUnit: .seconds, factory: factory)
    }

    func record(_ tally: MediaCounters, legs counts: [String: Int]) {
        if tally.packetsIn > 0 {
            packets["in"]?.increment(by: tally.packetsIn)
            bytes["in"]?.increment(by: tally.bytesIn)
        }
        if tally.packetsOut > 0 {
            packets["out"]?.increment(by: tally.packetsOut)
            bytes["out"]?.increment(by: tally.bytesOut)
        }
        for (cause, count) in tally.drops { drops[cause]?.increment(by: count) }
        for state in Self.legStates { legs[state]?.record(counts[state] ?? 0) }
    }
}

extension MediaMetrics {
    func recordHandshake(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        handshakeTime.recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
