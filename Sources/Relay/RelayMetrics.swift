import CoreMetrics
import RelayCore

/// The relay's metrics through swift-metrics: relayed packets and bytes by direction, drops by cause, the
/// allocation table's size and TCP/TLS connections. Counters are added once a second from the relay's own tallies.
struct RelayMetrics {
    let packets: [String: CoreMetrics.Counter]
    let bytes: [String: CoreMetrics.Counter]
    let drops: [RelayDropReason: CoreMetrics.Counter]
    let allocations: CoreMetrics.Gauge
    let permissions: CoreMetrics.Gauge
    let channels: CoreMetrics.Gauge
    let connections: CoreMetrics.Gauge
    let connectionsRefused: CoreMetrics.Counter
    let connectionsFailed: CoreMetrics.Counter

    init(factory: any MetricsFactory) {
        let directions = ["to_peer", "to_client"]
        packets = Dictionary(
            uniqueKeysWithValues: directions.map {
                (
                    $0,
                    Counter(label: "switchboard_relay_packets_total", dimensions: [("direction", $0)], factory: factory)
                )
            })
        bytes = Dictionary(
            uniqueKeysWithValues: directions.map {
                ($0, Counter(label: "switchboard_relay_bytes_total", dimensions: [("direction", $0)], factory: factory))
            })
        drops = Dictionary(
            uniqueKeysWithValues: RelayDropReason.allCases.map {
                (
                    $0,
                    Counter(
                        label: "switchboard_relay_dropped_total", dimensions: [("cause", $0.rawValue)], factory: factory
                    )
                )
            })
        allocations = Gauge(label: "switchboard_relay_allocations", factory: factory)
        permissions = Gauge(label: "switchboard_relay_permissions", factory: factory)
        channels = Gauge(label: "switchboard_relay_channels", factory: factory)
        connections = Gauge(label: "switchboard_relay_connections", factory: factory)
        connectionsRefused = Counter(
            label: "switchboard_relay_connections_total", dimensions: [("outcome", "refused")], factory: factory)
        connectionsFailed = Counter(
            label: "switchboard_relay_connections_total", dimensions: [("outcome", "failed")], factory: factory)
    }

    func record(_ counters: RelayCounters, core: TURNServer, connections open: Int) {
        if counters.packetsToPeers > 0 {
            packets["to_peer"]?.increment(by: counters.packetsToPeers)
            bytes["to_peer"]?.increment(by: counters.bytesToPeers)
        }
        if counters.packetsToClients > 0 {
            packets["to_client"]?.increment(by: counters.packetsToClients)
            bytes["to_client"]?.increment(by: counters.bytesToClients)
        }
        for (reason, count) in counters.drops { drops[reason]?.increment(by: count) }
        allocations.record(core.allocationCount)
        permissions.record(core.permissionCount)
        channels.record(core.channelCount)
        connections.record(open)
        if counters.connectionsRefused > 0 { connectionsRefused.increment(by: counters.connectionsRefused) }
        if counters.connectionsFailed > 0 { connectionsFailed.increment(by: counters.connectionsFailed) }
    }
}
