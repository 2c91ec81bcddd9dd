import CoreMetrics
import Foundation
import Prometheus
import SwitchboardCore

/// The signaling plane's metrics, recorded through swift-metrics into one Prometheus registry per server, so two
/// servers in one process (as in the tests) never share counters.
final class SignalingMetrics: Sendable {
    let registry: PrometheusCollectorRegistry
    let factory: PrometheusMetricsFactory
    let callSetups: CoreMetrics.Counter
    let sseStreamsOpen: CoreMetrics.Gauge
    let sseEventsSent: CoreMetrics.Counter
    let sseSlowReadersDropped: CoreMetrics.Counter
    let sseResyncs: CoreMetrics.Counter
    /// Requests about a secure-relay call's media that the node holding it did not answer in time.
    let mediaForwardingTimeouts: CoreMetrics.Counter
    /// Transitions the store could not run because its database failed.
    let storeFailures: CoreMetrics.Counter
    private let storeLatency: CoreMetrics.Timer
    private let notifyLag: CoreMetrics.Timer
    private let callsByState: [CallState: CoreMetrics.Gauge]
    private let endedByReason: [EndReason: CoreMetrics.Counter]

    init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
            .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
            .milliseconds(500), .seconds(1), .seconds(2.5),
        ]
        self.factory = factory
        callSetups = Counter(label: "switchboard_call_setups_total", factory: factory)
        sseStreamsOpen = Gauge(label: "switchboard_sse_streams_open", factory: factory)
        sseEventsSent = Counter(label: "switchboard_sse_events_sent_total", factory: factory)
        sseSlowReadersDropped = Counter(label: "switchboard_sse_slow_readers_dropped_total", factory: factory)
        sseResyncs = Counter(label: "switchboard_sse_resyncs_total", factory: factory)
        mediaForwardingTimeouts = Counter(label: "switchboard_media_forwarding_timeouts_total", factory: factory)
        storeFailures = Counter(label: "switchboard_store_failures_total", factory: factory)
        storeLatency = Timer(label: "switchboard_store_transition_duration_seconds", factory: factory)
        notifyLag = Timer(label: "switchboard_store_notify_lag_seconds", factory: factory)
        callsByState = Dictionary(
            uniqueKeysWithValues: CallState.allCases.map {
                ($0, Gauge(label: "switchboard_calls", dimensions: [("state", $0.rawValue)], factory: factory))
            })
        endedByReason = Dictionary(
            uniqueKeysWithValues: EndReason.allCases.map {
                (
                    $0,
                    Counter(
                        label: "switchboard_calls_ended_total", dimensions: [("reason", $0.rawValue)], factory: factory)
                )
            })
    }

    /// How long one transition took in the store (load, decide, commit, publish).
    func recordStoreLatency(_ duration: Duration) { storeLatency.recordNanoseconds(duration.nanoseconds) }

    /// How long after its transition began a batch of events reached this node over `LISTEN` (PostgreSQL store).
    func recordNotifyLag(_ seconds: TimeInterval) {
        notifyLag.recordNanoseconds(Int64(max(0, seconds) * 1_000_000_000))
    }

    func callEnded(_ reason: EndReason) { endedByReason[reason]?.increment() }

    func setCallCounts(_ counts: [CallState: Int]) {
        for (state, gauge) in callsByState { gauge.record(counts[state] ?? 0) }
    }

    /// Latency of one HTTP request, by method, route template and status.
    func recordRequest(method: String, route: String, status: Int, duration: Duration) {
        let dimensions = [("method", method), ("route", route), ("status", String(status))]
        Timer(label: "switchboard_http_request_duration_seconds", dimensions: dimensions, factory: factory)
            .recordNanoseconds(duration.nanoseconds)
        Counter(label: "switchboard_http_requests_total", dimensions: dimensions, factory: factory).increment()
    }

    func exposition() -> String { registry.emitToString() }
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
