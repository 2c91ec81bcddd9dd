public import CoreMetrics
import Foundation
public import Logging
public import NIOCore
import NIOPosix
public import NIOSSL
public import RelayCore
public import STUN
public import ServiceLifecycle
import Synchronization

/// Where the relay listens and which ports its allocations use.
public struct RelayServerConfiguration: Sendable {
    /// The address of the TURN server socket (UDP).
    public var host: String
    /// Its port; 0 picks a free one.
    public var port: Int
    /// Relayed transport addresses take their ports from here.
    public var relayPorts: ClosedRange<Int>
    /// The address relay sockets bind to when it differs from the one clients are told (`core.relayAddresses`),
    /// as behind a 1:1 NAT: bind the private address, advertise the public one. Nil binds the advertised address.
    public var relayBindAddress: IPAddress?
    public var core: RelayConfiguration
    /// TURN over TCP (RFC 8656 §3.1) on `host` at this port (0 picks a free one); nil: none.
    public var tcpPort: Int?
    /// TURN over TLS on `host` at this port (0 picks a free one) with this server context (TLS 1.2 or later);
    /// nil: none.
    public var tls: (port: Int, context: NIOSSLContext)?
    /// TCP and TLS connections one client IP (IPv6: one /64) may hold, and all clients together: a connection past either is
    /// closed at once.
    public var maximumConnectionsPerAddress = 16
    public var maximumConnections = 10_000
    /// A TCP or TLS connection without an allocation (none made yet, or its allocation ended) is closed after this.
    public var idleConnectionTimeout: Duration = .seconds(30)

    public init(
        host: String = "127.0.0.1", port: Int = 3478, relayPorts: ClosedRange<Int> = 49152...65535,
        relayBindAddress: IPAddress? = nil, core: RelayConfiguration, tcpPort: Int? = nil,
        tls: (port: Int, context: NIOSSLContext)? = nil
    ) {
        self.host = host
        self.port = port
        self.relayPorts = relayPorts
        self.relayBindAddress = relayBindAddress
        self.core = core
        self.tcpPort = tcpPort
        self.tls = tls
    }

    /// A TLS server context for TURN over TLS: the certificate chain and key (PEM files), TLS 1.2 or later.
    public static func tlsContext(certificatePath: String, keyPath: String) throws -> NIOSSLContext {
        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(certificatePath).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: keyPath, format: .pem)))
        tls.minimumTLSVersion = .tlsv12
        // A client cut off (idle, over a limit) rarely sends close_notify: do not hold its descriptor 5 s for one.
        tls.shutdownTimeout = .seconds(1)
        return try NIOSSLContext(configuration: tls)
    }
}

/// The ports a relay listens on once bound.
public struct RelayPorts: Sendable, Equatable {
    public var udp: Int
    public var tcp: Int?
    public var tls: Int?
}

/// How the relay reaches a client: from the UDP server socket, or down its TCP or TLS connection.
enum ClientRoute {
    case datagram(SocketAddress)
    case stream(any Channel)
}

/// A client's TCP or TLS connection, since when it has had no allocation, and the STUN replies queued while it
/// was not writable.
struct StreamClient {
    let channel: any Channel
    var idleSince: ContinuousClock.Instant?
    var backlog = 0
}

/// The TURN relay's SwiftNIO adapter (RFC 8656): one UDP server socket, optional TCP and TLS listeners, and one
/// relay socket per allocation, all on one event loop, feeding the pure ``TURNServer`` and carrying out its actions.
///
/// Hot path: ChannelData from a client is forwarded as a slice of the received buffer (no copy, no allocation of
/// its own); a datagram from a peer gets one buffer for its ChannelData header and payload. Reads are vectored
/// (`recvmmsg`), writes are flushed once per read batch (`sendmmsg`), and counters reach swift-metrics once a
/// second, not per packet. A `Service` for the service group: ``run()`` binds, serves until graceful shutdown, then
/// closes every socket.
public final class RelayServer: Service, @unchecked Sendable {
    // Every mutable property below is touched on `eventLoop` only.
    public let configuration: RelayServerConfiguration
    let eventLoop: any EventLoop
    let logger: Logger
    private var core: TURNServer
    private var listener: (any Channel)?
    private var serverAddress = TransportAddress(ip: IPAddress(ipv4: 0), port: 0)
    private var relays: [AllocationID: any Channel] = [:]
    private var clients: [AllocationID: ClientRoute] = [:]
    private var streams: [FiveTuple: StreamClient] = [:]
    private var streamsPerAddress: [IPAddress: Int] = [:]
    private var dirtyRelays: [any Channel] = []
    private var dirtyStreams: [any Channel] = []
    private var listenerDirty = false
    private var counters = Counters()
    private let metrics: RelayMetrics
    private let bound = Readiness<RelayPorts>()

    /// Datagrams read per `recvmmsg` on the server socket and on each relay socket; NIO splits one receive buffer
    /// evenly between them, so each gets ``datagramSize`` bytes, and a datagram that fills its slot may have been
    /// cut short (NIO does not report MSG_TRUNC): it is dropped, never relayed truncated.
    static let serverBatch = 64
    static let relayBatch = 8
    static let datagramSize = 2048
    /// STUN replies a TCP or TLS connection may have queued past its write buffer's high mark before it is closed.
    static let maximumReplyBacklog = 64 * 1024

    struct Counters {
        var packetsToPeers: Int64 = 0
        var bytesToPeers: Int64 = 0
        var packetsToClients: Int64 = 0
        var bytesToClients: Int64 = 0
        var drops: [RelayDropReason: Int64] = [:]
        /// TCP and TLS connections closed at once for being past a limit, and ones that failed (not TURN, TLS).
        var connectionsRefused: Int64 = 0
        var connectionsFailed: Int64 = 0
    }

    public init(
        configuration: RelayServerConfiguration, eventLoop: (any EventLoop)? = nil,
        metricsFactory: (any MetricsFactory)? = nil, logger: Logger = Logger(label: "switchboard.relay")
    ) {
        self.configuration = configuration
        self.eventLoop = eventLoop ?? MultiThreadedEventLoopGroup.singleton.next()
        self.logger = logger
        var core = configuration.core
        core.relayPorts =
            UInt16(
                clamping: configuration.relayPorts.lowerBound)...UInt16(clamping: configuration.relayPorts.upperBound)
        self.core = TURNServer(configuration: core)
        metrics = RelayMetrics(factory: metricsFactory ?? MetricsSystem.factory)
    }

    /// The bound server socket's port, once ``run()`` has bound it.
    public func boundPort() async throws -> Int { try await bound.wait().udp }

    /// Every bound port (UDP, and TCP and TLS when configured), once ``run()`` has bound them.
    public func boundPorts() async throws -> RelayPorts { try await bound.wait() }

    public func run() async throws {
        let listener: any Channel
        do {
            listener = try await DatagramBootstrap(group: eventLoop)
                .channelOption(.socketOption(.so_reuseaddr), value: 1)
                .channelOption(.datagramVectorReadMessageCount, value: Self.serverBatch)
                .channelOption(
                    .recvAllocator,
                    value: FixedSizeRecvByteBufferAllocator(capacity: Self.serverBatch * Self.datagramSize)
                )
                .channelOption(.socketOption(.so_rcvbuf), value: 4 << 20)
                .channelOption(.socketOption(.so_sndbuf), value: 4 << 20)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ServerSocketHandler(relay: self))
                    }
                }
                .bind(host: configuration.host, port: configuration.port).get()
        } catch {
            bound.fail(error)
            throw error
        }
        let local = listener.localAddress.flatMap(TransportAddress.init) ?? serverAddress
        let port = local.port
        try await eventLoop.submit {
            self.listener = listener
            self.serverAddress = local
        }.get()
        var streamListeners: [any Channel] = []
        var ports = RelayPorts(udp: Int(port))
        do {
            if let tcpPort = configuration.tcpPort {
                let channel = try await bindStreamListener(port: tcpPort, tls: nil)
                streamListeners.append(channel)
                ports.tcp = channel.localAddress?.port
            }
            if let tls = configuration.tls {
                let channel = try await bindStreamListener(port: tls.port, tls: tls.context)
                streamListeners.append(channel)
                ports.tls = channel.localAddress?.port
            }
        } catch {
            for channel in streamListeners + [listener] { try? await channel.close() }
            bound.fail(error)
            throw error
        }
        let ticker = eventLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            self.tick()
        }
        logger.info(
            "TURN relay listening",
            metadata: [
                "address": "\(local)", "tcp": "\(ports.tcp.map(String.init) ?? "off")",
                "tls": "\(ports.tls.map(String.init) ?? "off")", "realm": "\(configuration.core.realm)",
            ])
        bound.succeed(ports)
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                try? await listener.closeFuture.get()
            } onGracefulShutdown: {
                listener.close(promise: nil)
            }
        } onCancel: {
            listener.close(promise: nil)
        }
        ticker.cancel()
        for channel in streamListeners { try? await channel.close() }
        try? await eventLoop.submit {
            for action in self.core.removeAll() { self.perform(action) }
            for stream in self.streams.values { stream.channel.close(promise: nil) }
            self.flushCounters()
        }.get()
    }

    /// A TCP listener on `host` (TLS inside when `tls` is given) whose connections are served on the relay's loop.
    private func bindStreamListener(port: Int, tls: NIOSSLContext?) async throws -> any Channel {
        try await ServerBootstrap(group: eventLoop)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 256)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            // What a client that stops reading can make the relay hold: writes past the high mark are dropped.
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 32 * 1024, high: 128 * 1024))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tls { try sync.addHandler(NIOSSLServerHandler(context: tls)) }
                    try sync.addHandler(ByteToMessageHandler(TURNFrameDecoder()))
                    try sync.addHandler(StreamClientHandler(relay: self, transport: tls == nil ? .tcp : .tls))
                }
            }
            .bind(host: configuration.host, port: port).get()
    }

    /// A call ended: the allocations made with credentials scoped to it stop relaying now (RFC 8656 has no way to
    /// tell their clients; their next request gets 437).
    public func endCall(_ call: String) {
        eventLoop.execute {
            for action in self.core.endCall(call, now: .now()) { self.perform(action) }
            self.readComplete()
        }
    }

    /// Live allocations, for the admin API.
    public func allocations() async -> [AllocationInfo] {
        (try? await eventLoop.submit { self.core.snapshot(now: .now()) }.get()) ?? []
    }

    // MARK: On the event loop

    /// A datagram on the server socket: ChannelData, or a STUN message (RFC 7983 demultiplexing by first byte).
    fileprivate func serverRead(_ envelope: AddressedEnvelope<ByteBuffer>) {
        let buffer = envelope.data
        guard buffer.readableBytes < Self.datagramSize else {
            counters.drops[.truncated, default: 0] += 1
            return
        }
        guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
            let client = TransportAddress(envelope.remoteAddress)
        else {
            counters.drops[.malformed, default: 0] += 1
            return
        }
        handle(buffer, first: first, from: FiveTuple(client: client, server: serverAddress))
    }

    /// A STUN or ChannelData message from a client, over any transport.
    private func handle(_ buffer: ByteBuffer, first: UInt8, from fiveTuple: FiveTuple) {
        // Only STUN and ChannelData reach a TURN server socket: RFC 7983's 64–79 for ChannelData, widened to the
        // 0b01 prefix (64–127) of RFC 5766 channels when the relay accepts those; the core refuses unbound channels.
        if PacketClass(firstByte: first) == .stun {
            for action in core.receive(Array(buffer.readableBytesView), from: fiveTuple, now: .now()) {
                perform(action)
            }
        } else if first & 0xC0 == 0x40 {
            forwardChannelData(buffer, from: fiveTuple)
        } else {
            counters.drops[.malformed, default: 0] += 1
        }
    }

    private func forwardChannelData(_ buffer: ByteBuffer, from fiveTuple: FiveTuple) {
        let start = buffer.readerIndex
        guard let channel = buffer.getInteger(at: start, as: UInt16.self),
            let length = buffer.getInteger(at: start + 2, as: UInt16.self),
            buffer.readableBytes >= 4 + Int(length),
            let payload = buffer.getSlice(at: start + 4, length: Int(length))
        else {
            counters.drops[.malformed, default: 0] += 1
            return
        }
        switch core.channelData(channel, length: Int(length), from: fiveTuple, now: .now()) {
        case .toPeer(let id, let peer):
            sendToPeer(id, payload, peer)
        case .drop(let reason):
            counters.drops[reason, default: 0] += 1
        }
    }

    /// A datagram from a peer on an allocation's relay socket.
    fileprivate func relayRead(_ envelope: AddressedEnvelope<ByteBuffer>, allocation id: AllocationID) {
        guard let listener, let peer = TransportAddress(envelope.remoteAddress), let client = clients[id] else {
            counters.drops[.noAllocation, default: 0] += 1
            return
        }
        let payload = envelope.data
        guard payload.readableBytes < Self.datagramSize else {
            counters.drops[.truncated, default: 0] += 1
            return
        }
        let out: any Channel
        switch client {
        case .datagram: out = listener
        case .stream(let connection): out = connection
        }
        guard out.isWritable else {
            counters.drops[.congested, default: 0] += 1
            return
        }
        var outgoing: ByteBuffer
        switch core.fromPeer(peer, length: payload.readableBytes, allocation: id, now: .now()) {
        case .channelData(let channel, _):
            // Over TCP and TLS, ChannelData is padded to a multiple of 4 bytes (RFC 8656 §12.5).
            let padding = if case .stream = client { (4 - payload.readableBytes % 4) % 4 } else { 0 }
            outgoing = out.allocator.buffer(capacity: 4 + payload.readableBytes + padding)
            outgoing.writeInteger(channel)
            outgoing.writeInteger(UInt16(truncatingIfNeeded: payload.readableBytes))
            outgoing.writeImmutableBuffer(payload)
            outgoing.writeRepeatingByte(0, count: padding)
        case .dataIndication:
            outgoing = out.allocator.buffer(
                bytes: TURNServer.dataIndication(from: peer, payload: Array(payload.readableBytesView)))
        case .drop(let reason):
            counters.drops[reason, default: 0] += 1
            return
        }
        switch client {
        case .datagram(let address):
            listener.write(AddressedEnvelope(remoteAddress: address, data: outgoing), promise: nil)
            listenerDirty = true
        case .stream(let connection):
            connection.write(outgoing, promise: nil)
            markDirty(stream: connection)
        }
        counters.packetsToClients += 1
        counters.bytesToClients += Int64(payload.readableBytes)
    }

    // MARK: TCP and TLS clients

    /// A client connected over TCP or TLS: admitted unless its address or the relay is at its connection limit.
    func streamOpened(_ channel: any Channel, _ fiveTuple: FiveTuple) -> Bool {
        // IPv6 clients are counted per /64: one host can hold a whole /64.
        let address = SourceRateLimiter.source(of: fiveTuple.client.ip)
        guard streams.count < configuration.maximumConnections,
            streamsPerAddress[address, default: 0] < configuration.maximumConnectionsPerAddress
        else {
            counters.connectionsRefused += 1
            return false
        }
        streams[fiveTuple] = StreamClient(channel: channel, idleSince: .now)
        streamsPerAddress[address, default: 0] += 1
        return true
    }

    /// One framed message from a TCP or TLS client.
    func streamRead(_ buffer: ByteBuffer, from fiveTuple: FiveTuple) {
        guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return }
        handle(buffer, first: first, from: fiveTuple)
    }

    /// A TCP or TLS client's connection closed: its allocation ends.
    func streamClosed(_ fiveTuple: FiveTuple) {
        guard streams.removeValue(forKey: fiveTuple) != nil else { return }
        let address = SourceRateLimiter.source(of: fiveTuple.client.ip)
        let remaining = streamsPerAddress[address, default: 1] - 1
        streamsPerAddress[address] = remaining > 0 ? remaining : nil
        for action in core.connectionClosed(fiveTuple) { perform(action) }
    }

    /// A TCP or TLS connection failed (a frame that is not TURN, a TLS error); it is being closed.
    func streamFailed(_ error: any Error) {
        counters.connectionsFailed += 1
        logger.debug("TURN connection failed", metadata: ["error": "\(error)"])
    }

    private func markDirty(stream: any Channel) {
        if !dirtyStreams.contains(where: { $0 === stream }) { dirtyStreams.append(stream) }
    }

    /// Closes TCP and TLS connections that have had no allocation for the idle timeout.
    private func closeIdleStreams() {
        let now = ContinuousClock.now
        for (fiveTuple, stream) in streams {
            if core.hasAllocation(for: fiveTuple) {
                if stream.idleSince != nil { streams[fiveTuple]?.idleSince = nil }
            } else if let since = stream.idleSince {
                if now - since >= configuration.idleConnectionTimeout { stream.channel.close(promise: nil) }
            } else {
                streams[fiveTuple]?.idleSince = now
            }
        }
    }

    /// End of a read batch: one flush per socket written to.
    func readComplete() {
        if listenerDirty {
            listenerDirty = false
            listener?.flush()
        }
        for relay in dirtyRelays { relay.flush() }
        dirtyRelays.removeAll(keepingCapacity: true)
        for stream in dirtyStreams { stream.flush() }
        dirtyStreams.removeAll(keepingCapacity: true)
    }

    /// Writes `payload` from an allocation's relay socket to `peer` (flushed at the end of the read batch). A full
    /// send buffer drops it instead of queueing without bound inside NIO.
    private func sendToPeer(_ id: AllocationID, _ payload: ByteBuffer, _ peer: TransportAddress) {
        guard let relay = relays[id] else {
            counters.drops[.noRelaySocket, default: 0] += 1
            return
        }
        guard relay.isWritable else {
            counters.drops[.congested, default: 0] += 1
            return
        }
        relay.write(AddressedEnvelope(remoteAddress: SocketAddress(peer), data: payload), promise: nil)
        markDirty(relay)
        counters.packetsToPeers += 1
        counters.bytesToPeers += Int64(payload.readableBytes)
    }

    private func markDirty(_ relay: any Channel) {
        if !dirtyRelays.contains(where: { $0 === relay }) { dirtyRelays.append(relay) }
    }

    private func perform(_ action: RelayAction) {
        switch action {
        case .sendToClient(let bytes, let fiveTuple):
            if fiveTuple.transport.isStream {
                // A reply is never dropped (over TCP a client does not retransmit), but a connection that does not
                // read its replies is cut once they pass the cap.
                guard let connection = streams[fiveTuple]?.channel else { return }
                if connection.isWritable {
                    streams[fiveTuple]?.backlog = 0
                } else {
                    let backlog = (streams[fiveTuple]?.backlog ?? 0) + bytes.count
                    streams[fiveTuple]?.backlog = backlog
                    guard backlog <= Self.maximumReplyBacklog else {
                        counters.connectionsFailed += 1
                        connection.close(promise: nil)
                        return
                    }
                }
                connection.write(connection.allocator.buffer(bytes: bytes), promise: nil)
                markDirty(stream: connection)
                return
            }
            guard let listener else { return }
            listener.write(
                AddressedEnvelope(
                    remoteAddress: SocketAddress(fiveTuple.client), data: listener.allocator.buffer(bytes: bytes)),
                promise: nil)
            listenerDirty = true
        case .openRelay(let pending):
            openRelay(pending, attempt: 1)
        case .closeRelay(let id):
            clients[id] = nil
            relays.removeValue(forKey: id)?.close(promise: nil)
        case .sendToPeer(let id, let payload, let peer):
            sendToPeer(id, ByteBuffer(bytes: payload), peer)
        case .dropped(let reason):
            counters.drops[reason, default: 0] += 1
        }
    }

    private func bindAddress(for advertised: IPAddress) -> IPAddress {
        guard let bind = configuration.relayBindAddress, bind.family == advertised.family else { return advertised }
        return bind
    }

    /// Binds a relay socket on a random port of the range (an even one when asked, and the odd one above it too for
    /// a reservation); a port in use is retried elsewhere up to 16 times before the allocation fails with 508. A
    /// claimed reservation's socket is bound already.
    private func openRelay(_ pending: PendingAllocation, attempt: Int) {
        let id = pending.id
        if let port = pending.reservedPort {
            guard relays[id] != nil else {
                for action in core.relayFailed(id) { perform(action) }
                return
            }
            clients[id] = route(to: pending.fiveTuple)
            let address = TransportAddress(ip: pending.relayAddress, port: port)
            for action in core.relayOpened(id, at: address, now: .now()) { perform(action) }
            return
        }
        let pair = pending.reservation
        guard let port = Self.relayPort(in: configuration.relayPorts, even: pending.evenPort, pair: pair != nil) else {
            for action in core.relayFailed(id) { perform(action) }
            return
        }
        let host = bindAddress(for: pending.relayAddress).description
        bindRelay(host: host, port: port, allocation: id)
            .flatMap { channel -> EventLoopFuture<(any Channel, (any Channel)?)> in
                guard let pair else { return self.eventLoop.makeSucceededFuture((channel, nil)) }
                return self.bindRelay(host: host, port: port + 1, allocation: pair)
                    .map { (channel, $0) }
                    .flatMapErrorThrowing { error in
                        channel.close(promise: nil)
                        throw error
                    }
            }
            .whenComplete { result in
                switch result {
                case .success(let (channel, reservedChannel)):
                    self.relays[id] = channel
                    self.clients[id] = self.route(to: pending.fiveTuple)
                    let reserved = reservedChannel.map { _ in
                        TransportAddress(ip: pending.relayAddress, port: UInt16(port + 1))
                    }
                    let address = TransportAddress(ip: pending.relayAddress, port: UInt16(port))
                    for action in self.core.relayOpened(id, at: address, reserved: reserved, now: .now()) {
                        self.perform(action)
                    }
                    // The reservation lives only if its allocation does.
                    if let reservedChannel, let pair {
                        if self.relays[id] == nil {
                            reservedChannel.close(promise: nil)
                        } else {
                            self.relays[pair] = reservedChannel
                        }
                    }
                    self.readComplete()
                case .failure(let error):
                    // Only a port in use is worth another port; any other error would fail again.
                    let inUse = (error as? IOError)?.errnoCode == EADDRINUSE
                    if inUse && attempt < 16 {
                        self.openRelay(pending, attempt: attempt + 1)
                    } else {
                        self.logger.warning("no relay port could be bound", metadata: ["error": "\(error)"])
                        for action in self.core.relayFailed(id) { self.perform(action) }
                        self.readComplete()
                    }
                }
            }
    }

    /// Where relayed data for a client goes: its UDP address, or its connection (if it is still open).
    private func route(to fiveTuple: FiveTuple) -> ClientRoute? {
        guard fiveTuple.transport.isStream else { return .datagram(SocketAddress(fiveTuple.client)) }
        return streams[fiveTuple].map { .stream($0.channel) }
    }

    /// A random port of `range`: an even one when asked, and one whose next-higher port is in the range too for a
    /// pair; nil when the range has none.
    static func relayPort(in range: ClosedRange<Int>, even: Bool, pair: Bool) -> Int? {
        let upper = pair ? range.upperBound - 1 : range.upperBound
        guard even else { return range.lowerBound <= upper ? Int.random(in: range.lowerBound...upper) : nil }
        let first = range.lowerBound + range.lowerBound % 2
        let last = upper - upper % 2
        guard first <= last else { return nil }
        return first + 2 * Int.random(in: 0...(last - first) / 2)
    }

    /// One relay socket, its datagrams handed to the relay as `allocation`'s; completes on the relay's loop.
    private func bindRelay(host: String, port: Int, allocation id: AllocationID) -> EventLoopFuture<any Channel> {
        DatagramBootstrap(group: eventLoop)
            .channelOption(.datagramVectorReadMessageCount, value: Self.relayBatch)
            .channelOption(
                .recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: Self.relayBatch * Self.datagramSize)
            )
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RelaySocketHandler(relay: self, allocation: id))
                }
            }
            .bind(host: host, port: port)
            .hop(to: eventLoop)
    }

    private func tick() {
        for action in core.expire(now: .now()) { perform(action) }
        closeIdleStreams()
        readComplete()
        flushCounters()
    }

    private func flushCounters() {
        metrics.record(counters, core: core, connections: streams.count)
        counters = Counters()
    }
}

extension RelayTime {
    /// The wall clock (TURN REST credentials carry Unix times).
    static func now() -> RelayTime {
        RelayTime(milliseconds: Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)))
    }
}

/// The server socket's handler: hands every datagram to the relay.
private final class ServerSocketHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    let relay: RelayServer

    init(relay: RelayServer) { self.relay = relay }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        relay.serverRead(unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) { relay.readComplete() }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // ICMP errors and the like surface here; a UDP server carries on.
        relay.logger.debug("server socket error", metadata: ["error": "\(error)"])
    }
}

/// One allocation's relay socket handler.
private final class RelaySocketHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    let relay: RelayServer
    let allocation: AllocationID

    init(relay: RelayServer, allocation: AllocationID) {
        self.relay = relay
        self.allocation = allocation
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        relay.relayRead(unwrapInboundIn(data), allocation: allocation)
    }

    func channelReadComplete(context: ChannelHandlerContext) { relay.readComplete() }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        relay.logger.debug("relay socket error", metadata: ["error": "\(error)"])
    }
}

/// Resolves once the server sockets are bound.
final class Readiness<Value: Sendable>: Sendable {
    private enum State {
        case waiting([CheckedContinuation<Value, any Error>])
        case bound(Value)
        case failed(any Error)
    }
    private let state = Mutex(State.waiting([]))

    func wait() async throws -> Value {
        try await withCheckedThrowingContinuation { continuation in
            state.withLock { state in
                switch state {
                case .waiting(let waiters): state = .waiting(waiters + [continuation])
                case .bound(let port): continuation.resume(returning: port)
                case .failed(let error): continuation.resume(throwing: error)
                }
            }
        }
    }

    func succeed(_ value: Value) { resolve(.bound(value)) }
    func fail(_ error: any Error) { resolve(.failed(error)) }

    private func resolve(_ outcome: State) {
        let waiters = state.withLock { state -> [CheckedContinuation<Value, any Error>] in
            guard case .waiting(let waiters) = state else { return [] }
            state = outcome
            return waiters
        }
        for waiter in waiters {
            switch outcome {
            case .bound(let port): waiter.resume(returning: port)
            case .failed(let error): waiter.resume(throwing: error)
            case .waiting: break
            }
        }
    }
}
