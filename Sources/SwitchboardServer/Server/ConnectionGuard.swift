import CoreMetrics
public import Foundation
import HummingbirdCore
import Logging
package import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOHTTPTypesHTTP2
import NIOSSL
import NIOTLS
import Synchronization

/// How many connections the server holds and how long each phase of one may take, so that a hostile client can
/// neither hold descriptors for ever nor take the server offline (see docs/threat-model.md, "Connections").
///
/// The defaults follow nginx's spirit but are shorter, since Switchboard's clients are programs and browsers on
/// a call, not slow uploads: nginx waits 60 s for a TLS handshake, a request header and each body read, and 75 s
/// on an idle keep-alive connection.
public struct ConnectionLimits: Sendable {
    /// Connections open at once (HTTPS and the plain-HTTP redirect together); above it new connections are closed
    /// as soon as they are accepted. The server lowers it to the descriptor limit minus a reserve at start.
    public var maxConnections: Int = 16_384
    /// Connections from one client address that have not yet sent a whole request (a TLS handshake or a header in
    /// progress; over HTTP/2, until a first stream's header); more are closed as soon as they are accepted.
    public var maxPendingPerAddress: Int = 64
    /// Seconds from accept until the TLS handshake completes.
    public var handshakeTimeout: TimeInterval = 10
    /// Seconds from the handshake until the first request's header is complete.
    public var headerTimeout: TimeInterval = 20
    /// Seconds from a request's header until its body is complete (a whole-body deadline, not a per-read one, so a
    /// body dripping one byte at a time is cut).
    public var bodyTimeout: TimeInterval = 30
    /// Seconds a kept-alive connection may wait, with no request in progress, for the next request's header. An
    /// event stream is a response in progress: it is exempt.
    public var idleTimeout: TimeInterval = 75
    /// Event streams being opened at once, server-wide (authenticated, caught up from the store); more wait their
    /// turn. A reconnect storm is admitted this many at a time: as fast on a few cores, and without a peak of
    /// short-lived memory that would stay behind as fragmentation (see ``OpeningGate``).
    public var concurrentStreamOpens: Int = 32

    public init() {}
}

/// Why a connection was refused on accept.
enum ConnectionRefusal: String, CaseIterable, Error {
    /// The server holds ``ConnectionLimits/maxConnections``.
    case capacity
    /// The client address holds ``ConnectionLimits/maxPendingPerAddress`` connections without a whole request.
    case perAddress = "per_address"
}

/// Which deadline closed a connection.
enum ConnectionPhase: String, CaseIterable {
    case handshake, header, body, idle
}

/// The counts behind the connection caps, shared by every listener of one server.
final class ConnectionLimiter: Sendable {
    let capacity: Int
    let perAddress: Int
    private struct State {
        var open = 0
        var pending: [String: Int] = [:]
        var lastCapacityNotice: ContinuousClock.Instant?
    }
    private let state = Mutex(State())

    init(capacity: Int, perAddress: Int) {
        self.capacity = capacity
        self.perAddress = perAddress
    }

    /// Takes a slot for a new connection from `address` (counted as pending until its first request is read), or
    /// says why there is none.
    func admit(_ address: String) -> ConnectionRefusal? {
        state.withLock { state in
            guard state.open < capacity else { return .capacity }
            let pending = state.pending[address, default: 0]
            guard pending < perAddress else { return .perAddress }
            state.open += 1
            state.pending[address] = pending + 1
            return nil
        }
    }

    /// The connection from `address` has sent its first whole request.
    func requestRead(_ address: String) {
        state.withLock { Self.unpend(address, in: &$0) }
    }

    /// The connection from `address` has closed.
    func release(_ address: String, pending: Bool) {
        state.withLock { state in
            state.open -= 1
            if pending { Self.unpend(address, in: &state) }
        }
    }

    var open: Int { state.withLock { $0.open } }

    /// Whether a refusal at the cap should be logged now: at most once every 10 s, so a storm is visible in the log
    /// without flooding it.
    func shouldNoticeCapacity(now: ContinuousClock.Instant = .now) -> Bool {
        state.withLock { state in
            if let last = state.lastCapacityNotice, now - last < .seconds(10) { return false }
            state.lastCapacityNotice = now
            return true
        }
    }

    private static func unpend(_ address: String, in state: inout State) {
        let left = state.pending[address, default: 1] - 1
        state.pending[address] = left > 0 ? left : nil
    }
}

/// The connection metrics: open connections, refusals on accept by reason, and connections closed by a deadline.
struct ConnectionMetrics: Sendable {
    let open: CoreMetrics.Gauge
    let refused: [ConnectionRefusal: CoreMetrics.Counter]
    let timedOut: [ConnectionPhase: CoreMetrics.Counter]

    init(factory: some MetricsFactory) {
        open = Gauge(label: "switchboard_connections_open", factory: factory)
        refused = Self.counters("switchboard_connections_refused_total", by: "reason", factory: factory)
        timedOut = Self.counters("switchboard_connection_timeouts_total", by: "phase", factory: factory)
    }

    /// Closes `context`'s channel in `seconds` (at most a day: the flags are checked, and a larger value would
    /// overflow the nanoseconds), counting a timeout of `phase`; no deadline when `seconds` is 0.
    func closeAfter(_ seconds: TimeInterval, _ phase: ConnectionPhase, _ context: ChannelHandlerContext)
        -> Scheduled<Void>?
    {
        guard seconds > 0 else { return nil }
        let counter = timedOut[phase]
        return context.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(Int64(min(seconds, 86_400) * 1e9))) {
            counter?.increment()
            context.close(promise: nil)
        }
    }

    /// One counter per case of `Key`, its raw value as the `dimension` label.
    private static func counters<Key: CaseIterable & Hashable & RawRepresentable<String>>(
        _ label: String, by dimension: String, factory: some MetricsFactory
    ) -> [Key: CoreMetrics.Counter] {
        Dictionary(
            uniqueKeysWithValues: Key.allCases.map {
                ($0, Counter(label: label, dimensions: [(dimension, $0.rawValue)], factory: factory))
            })
    }
}

/// A listener's child channel behind the connection caps and deadlines: refuses a connection on accept when a cap
/// is reached, otherwise sets `Base` up (TLS and HTTP/1.1) and puts a ``ConnectionGuardHandler`` after the HTTP
/// codec.
struct GuardedChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value
    let base: Base
    let limiter: ConnectionLimiter
    let limits: ConnectionLimits
    let metrics: ConnectionMetrics
    /// Whether `Base` starts with a TLS handshake (the redirect listener does not).
    let tls: Bool

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let address = ClientAddress.key(channel.remoteAddress)
        if let refusal = limiter.admit(address) {
            metrics.refused[refusal]?.increment()
            if refusal == .capacity, limiter.shouldNoticeCapacity() {
                logger.notice(
                    "connection cap reached: refusing new connections",
                    metadata: ["cap": "\(limiter.capacity)"])
            }
            // A failed setup makes NIO drop the channel without registering it; it must be closed here.
            channel.close(promise: nil)
            return channel.eventLoop.makeFailedFuture(refusal)
        }
        metrics.open.record(limiter.open)
        let limiter = limiter
        let limits = limits
        let metrics = metrics
        let tls = tls
        return base.setup(channel: channel, logger: logger).flatMapThrowing { value in
            let operations = channel.pipeline.syncOperations
            let state = try operations.handler(type: HTTPConnectionStateHandler.self)
            try operations.addHandler(
                ConnectionGuardHandler(
                    address: address, limiter: limiter, limits: limits, metrics: metrics, handshaken: !tls),
                position: .before(state))
            return value
        }.flatMapErrorThrowing { error in
            limiter.release(address, pending: true)
            metrics.open.record(limiter.open)
            channel.close(promise: nil)
            throw error
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

extension GuardedChannel: HTTPChannelHandler where Base: HTTPChannelHandler {
    var responder: HTTPChannelHandler.Responder { base.responder }
}

/// Closes its connection when a phase outlasts its deadline: the TLS handshake, the first request's header, a
/// request's body, or the wait for the next request on a kept-alive connection. While a response is in progress
/// (an event stream, say) no deadline runs. Also gives the connection's slots back to the ``ConnectionLimiter``.
final class ConnectionGuardHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let address: String
    private let limiter: ConnectionLimiter
    private let limits: ConnectionLimits
    private let metrics: ConnectionMetrics
    private var handshaken: Bool
    /// No request has been read whole yet: the connection holds a pending slot of its address.
    private var pending = true
    private var readingRequest = false
    private var responsesInProgress = 0
    private var deadline: Scheduled<Void>?

    init(
        address: String, limiter: ConnectionLimiter, limits: ConnectionLimits, metrics: ConnectionMetrics,
        handshaken: Bool
    ) {
        self.address = address
        self.limiter = limiter
        self.limits = limits
        self.metrics = metrics
        self.handshaken = handshaken
    }

    func handlerAdded(context: ChannelHandlerContext) {
        arm(handshaken ? .header : .handshake, context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        limiter.release(address, pending: pending)
        pending = false
        metrics.open.record(limiter.open)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if !handshaken, let event = event as? TLSUserEvent, case .handshakeCompleted = event {
            handshaken = true
            if !readingRequest && responsesInProgress == 0 { arm(.header, context: context) }
        }
        if !handshaken, case ChannelEvent.inputClosed = event {
            // The listener allows half-closure, and TLS that has read nothing yet passes the FIN on without closing:
            // a client that connected and left would hold its slot until the handshake deadline.
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            readingRequest = true
            responsesInProgress += 1
            arm(.body, context: context)
        case .body:
            break
        case .end:
            readingRequest = false
            if pending {
                pending = false
                limiter.requestRead(address)
            }
            // The response may already be written (a 401 or 429 before the body was read): then the connection
            // waits for its next request, under the idle deadline.
            if responsesInProgress == 0 { arm(.idle, context: context) } else { disarm() }
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) {
            responsesInProgress = max(0, responsesInProgress - 1)
            // A connection that has not sent a whole request yet (its first was refused unread, say) keeps the
            // shorter header deadline, and its pending slot, rather than the idle one.
            if responsesInProgress == 0 && !readingRequest { arm(pending ? .header : .idle, context: context) }
        }
        context.write(data, promise: promise)
    }

    private func arm(_ phase: ConnectionPhase, context: ChannelHandlerContext) {
        deadline?.cancel()
        let seconds: TimeInterval =
            switch phase {
            case .handshake: limits.handshakeTimeout
            case .header: limits.headerTimeout
            case .body: limits.bodyTimeout
            case .idle: limits.idleTimeout
            }
        deadline = metrics.closeAfter(seconds, phase, context)
    }

    private func disarm() {
        deadline?.cancel()
        deadline = nil
    }
}

/// The key per-address limits count a client under: its IPv4 address, or the /64 of its IPv6 address (one
/// subscriber's prefix: any IPv6 client holds at least that many addresses, so counting each alone would let it
/// rotate past every limit). IPv4-mapped IPv6 addresses count as IPv4.
package enum ClientAddress {
    package static func key(_ address: SocketAddress?) -> String {
        switch address {
        case .v4?:
            return address?.ipAddress ?? "v4"
        case .v6(let v6)?:
            var storage = v6.address.sin6_addr
            let bytes = withUnsafeBytes(of: &storage) { Array($0) }
            if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF {
                return bytes[12..<16].map(String.init).joined(separator: ".")
            }
            return bytes[0..<8].map { byte in
                let hex = String(byte, radix: 16)
                return hex.count == 1 ? "0" + hex : hex
            }.joined() + "::/64"
        default:
            return "other"
        }
    }
}

/// The process's descriptor limit: raises the soft limit to the hard one, and says how many connections fit below
/// it with a reserve left for the relays' sockets, files and the database.
enum DescriptorLimit {
    static func raise() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return Int(clamping: limit.rlim_cur)
    }

    /// Connections that fit below `descriptors`: a quarter of them, at most 1,024, stay in reserve.
    static func connectionCapacity(descriptors: Int) -> Int {
        max(16, descriptors - min(1024, descriptors / 4))
    }
}

/// The HTTPS listener's child channel: TLS with ALPN (`h2`, then `http/1.1`), behind the same caps and deadlines as
/// ``GuardedChannel``. Until ALPN has chosen, a ``HandshakeGuardHandler`` holds the connection's slot and its
/// handshake deadline; then HTTP/1.1 gets the ``ConnectionGuardHandler`` of every HTTP/1 connection, and HTTP/2 an
/// ``HTTP2ConnectionGuardHandler`` (the slot, the header, idle and quiesce deadlines) with a ``StreamGuardHandler``
/// on each stream (its body deadline); streams are capped per connection by the SETTINGS the server sends. NIO's
/// HTTP/2 connection manager closes an idle connection and sends the GOAWAYs of a graceful shutdown.
struct GuardedUpgradeChannel: HTTPChannelHandler {
    /// An HTTP/1.1 connection's, or an HTTP/2 stream's, `NIOAsyncChannel` once its first request needs one (nil:
    /// it serves an event stream, or closed first; see ``EventStreamDispatcher``).
    typealias Served = EventLoopFuture<EventStreamDispatcher.Connection?>
    typealias Streams = NIOHTTP2Handler.AsyncStreamMultiplexer<Served>

    struct Value: ServerChildChannelValue {
        let negotiated: EventLoopFuture<NIONegotiatedHTTPVersion<Served, Streams>>
        let channel: any Channel
    }

    let sslContext: NIOSSLContext
    /// Serves each request that is not an event stream, over either protocol, with Hummingbird's task. The
    /// pipelines are set up here, as `HTTP1Channel` and `HTTP2Channel` would, with an ``EventStreamDispatcher`` where
    /// their `NIOAsyncChannel` would be.
    let http1: HTTP1Channel
    /// Closes an HTTP/2 connection with no stream open (a GOAWAY first); nil: never.
    let http2IdleTimeout: TimeAmount?
    let events: EventStreamDispatcher.Responder
    /// Shared by every connection: the event streams being opened at once.
    let openings: OpeningGate
    let limiter: ConnectionLimiter
    let limits: ConnectionLimits
    let metrics: ConnectionMetrics

    var responder: HTTPChannelHandler.Responder { http1.responder }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let address = ClientAddress.key(channel.remoteAddress)
        if let refusal = limiter.admit(address) {
            metrics.refused[refusal]?.increment()
            if refusal == .capacity, limiter.shouldNoticeCapacity() {
                logger.notice(
                    "connection cap reached: refusing new connections", metadata: ["cap": "\(limiter.capacity)"])
            }
            channel.close(promise: nil)
            return channel.eventLoop.makeFailedFuture(refusal)
        }
        metrics.open.record(limiter.open)
        let (limiter, limits, metrics, events, idleTimeout) = (limiter, limits, metrics, events, http2IdleTimeout)
        let openings = openings
        let guardHandler = HandshakeGuardHandler(address: address, limiter: limiter, limits: limits, metrics: metrics)
        do {
            let operations = channel.pipeline.syncOperations
            try operations.addHandler(NIOSSLServerHandler(context: sslContext))
            try operations.addHandler(guardHandler)
        } catch {
            limiter.release(address, pending: true)
            metrics.open.record(limiter.open)
            channel.close(promise: nil)
            return channel.eventLoop.makeFailedFuture(error)
        }
        let handshake = NIOLoopBound(guardHandler, eventLoop: channel.eventLoop)
        return channel.configureHTTP2AsyncSecureUpgrade { channel in
            channel.eventLoop.makeCompletedFuture {
                let operations = channel.pipeline.syncOperations
                var decoderLimits = NIOHTTPDecoderLimitConfiguration()
                decoderLimits.maxHeaderFieldSize = 80 * 1024
                decoderLimits.maxHeaderListSize = 80 * 1024
                decoderLimits.maxHeaderFieldCount = 1000
                try operations.configureHTTPServerPipeline(
                    withPipeliningAssistance: false, withErrorHandling: false, withOutboundHeaderValidation: false,
                    withEncoderConfiguration: .init(), withDecoderLimitConfiguration: decoderLimits)
                try operations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                try operations.addHandler(
                    ConnectionGuardHandler(
                        address: address, limiter: limiter, limits: limits, metrics: metrics, handshaken: true))
                try operations.addHandler(HTTPConnectionStateHandler(idleTimeout: nil, logger: logger))
                let served = try Self.addDispatcher(.http1, to: channel, events, openings, logger)
                handshake.value.handOver()
                return served
            }
        } http2ConnectionInitializer: { channel in
            channel.eventLoop.makeCompletedFuture {
                // NIO's connection manager: the idle close, and on graceful shutdown the two GOAWAYs.
                let multiplexer = try channel.pipeline.syncOperations.configureAsyncHTTP2Pipeline(
                    mode: .server,
                    connectionManagerConfiguration: .init(
                        maxIdleTime: idleTimeout, maxAge: nil, maxGraceTime: nil, keepalive: nil)
                ) { stream in
                    stream.eventLoop.makeCompletedFuture {
                        let operations = stream.pipeline.syncOperations
                        try operations.addHandler(HTTP2FramePayloadToHTTPServerCodec())
                        try operations.addHandler(StreamGuardHandler(limits: limits, metrics: metrics))
                        return try Self.addDispatcher(.http2, to: stream, events, openings, logger)
                    }
                }
                try channel.pipeline.syncOperations.addHandler(
                    HTTP2ConnectionGuardHandler(address: address, limiter: limiter, limits: limits, metrics: metrics))
                handshake.value.handOver()
                return multiplexer
            }
        }.map { Value(negotiated: $0, channel: channel) }
    }

    /// Puts an ``EventStreamDispatcher`` at the end of `channel`'s pipeline; the future of what Hummingbird serves.
    private static func addDispatcher(
        _ version: EventStreamDispatcher.Version, to channel: any Channel,
        _ events: @escaping EventStreamDispatcher.Responder, _ openings: OpeningGate, _ logger: Logger
    ) throws -> Served {
        let served = channel.eventLoop.makePromise(of: EventStreamDispatcher.Connection?.self)
        do {
            try channel.pipeline.syncOperations.addHandler(
                EventStreamDispatcher(
                    version: version, connection: served, responder: events, gate: openings, logger: logger))
        } catch {
            served.fail(error)
            throw error
        }
        return served.futureResult
    }

    func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.negotiated.get() {
            case .http1_1(let connection):
                guard let connection = try await connection.get() else { return }
                await http1.handle(value: connection, logger: logger)
            case .http2(let multiplexer):
                // One task per stream until its first request is read; one that is an event stream needs it no more.
                // The others are served as Hummingbird serves a connection's requests: its loop reads HTTP parts,
                // whichever protocol framed them, and a stream's parts end after its one request.
                try await withThrowingDiscardingTaskGroup { group in
                    for try await stream in multiplexer.inbound {
                        group.addTask {
                            guard let stream = try? await stream.get() else { return }
                            await http1.handle(value: stream, logger: logger)
                        }
                    }
                }
            }
        } catch {
            logger.debug("connection failed (TLS, ALPN or HTTP/2): \(error)")
            value.channel.close(promise: nil)
        }
    }
}

/// Until ALPN has chosen a protocol: the TLS handshake deadline, and the connection's slot (given back if the
/// connection closes before; handed over to the protocol's handler after).
final class HandshakeGuardHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    private let address: String
    private let limiter: ConnectionLimiter
    private let limits: ConnectionLimits
    private let metrics: ConnectionMetrics
    private var ownsSlot = true
    private var deadline: Scheduled<Void>?

    init(address: String, limiter: ConnectionLimiter, limits: ConnectionLimits, metrics: ConnectionMetrics) {
        self.address = address
        self.limiter = limiter
        self.limits = limits
        self.metrics = metrics
    }

    /// The protocol's handler holds the slot from now on.
    func handOver() {
        ownsSlot = false
        deadline?.cancel()
        deadline = nil
    }

    func handlerAdded(context: ChannelHandlerContext) {
        deadline = metrics.closeAfter(limits.handshakeTimeout, .handshake, context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        if ownsSlot {
            ownsSlot = false
            limiter.release(address, pending: true)
            metrics.open.record(limiter.open)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if ownsSlot, case ChannelEvent.inputClosed = event {
            // A client that connected and left before the handshake ended (the listener allows half-closure).
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}

/// An HTTP/2 connection's slot and deadlines, as ``ConnectionGuardHandler`` keeps them for HTTP/1.1: the connection
/// stays pending (counted against its address's cap) under the header deadline until its first stream's header
/// arrives; with no stream open it is closed at the idle deadline (HTTP/2's own idle close, a GOAWAY then a PING, needs
/// the client's answer: this one does not, and comes a second later); once the server quiesces, it is closed after
/// the grace period whatever its client does. The slot is given back when the connection closes.
final class HTTP2ConnectionGuardHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    /// How long a quiescing connection has to end its streams after the server's GOAWAY.
    static let quiesceGrace: TimeAmount = .seconds(10)

    private let address: String
    private let limiter: ConnectionLimiter
    private let limits: ConnectionLimits
    private let metrics: ConnectionMetrics
    private var pending = true
    private var openStreams = 0
    private var context: ChannelHandlerContext?
    private var deadline: Scheduled<Void>?
    private var quiesceDeadline: Scheduled<Void>?

    init(address: String, limiter: ConnectionLimiter, limits: ConnectionLimits, metrics: ConnectionMetrics) {
        self.address = address
        self.limiter = limiter
        self.limits = limits
        self.metrics = metrics
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        arm(.header, seconds: limits.headerTimeout)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        quiesceDeadline?.cancel()
        deadline = nil
        quiesceDeadline = nil
        self.context = nil
        limiter.release(address, pending: pending)
        pending = false
        metrics.open.record(limiter.open)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent, quiesceDeadline == nil {
            quiesceDeadline = context.eventLoop.assumeIsolated().scheduleTask(in: Self.quiesceGrace) {
                context.close(promise: nil)
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// A stream of this connection has its request header (``StreamGuardHandler``).
    func streamOpened() {
        openStreams += 1
        if pending {
            pending = false
            limiter.requestRead(address)
        }
        deadline?.cancel()
        deadline = nil
    }

    /// A stream of this connection has closed.
    func streamClosed() {
        openStreams = max(0, openStreams - 1)
        // One second after HTTP/2's own idle close (see the type's comment).
        if openStreams == 0 { arm(.idle, seconds: limits.idleTimeout > 0 ? limits.idleTimeout + 1 : 0) }
    }

    private func arm(_ phase: ConnectionPhase, seconds: TimeInterval) {
        deadline?.cancel()
        deadline = context.flatMap { metrics.closeAfter(seconds, phase, $0) }
    }
}

/// An HTTP/2 stream's deadline: its request's body must be whole within ``ConnectionLimits/bodyTimeout`` of its
/// header (the stream is reset otherwise, and the connection's other streams go on). The header and idle deadlines
/// are the connection's (``HTTP2ConnectionGuardHandler``): a stream begins with a whole header block.
final class StreamGuardHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    private let limits: ConnectionLimits
    private let metrics: ConnectionMetrics
    private var deadline: Scheduled<Void>?
    /// The connection's guard, told when this stream opens and closes (the stream runs on its event loop).
    private var connection: HTTP2ConnectionGuardHandler?

    init(limits: ConnectionLimits, metrics: ConnectionMetrics) {
        self.limits = limits
        self.metrics = metrics
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        connection?.streamClosed()
        connection = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            if connection == nil {
                connection = try? context.channel.parent?.pipeline.syncOperations.handler(
                    type: HTTP2ConnectionGuardHandler.self)
                connection?.streamOpened()
            }
            deadline = metrics.closeAfter(limits.bodyTimeout, .body, context)
        case .body:
            break
        case .end:
            deadline?.cancel()
            deadline = nil
        }
        context.fireChannelRead(data)
    }
}
