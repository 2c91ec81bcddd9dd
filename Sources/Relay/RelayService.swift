public import CoreMetrics
import Foundation
public import Logging
public import NIOCore
import NIOPosix
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

    public init(
        host: String = "127.0.0.1", port: Int = 3478, relayPorts: ClosedRange<Int> = 49152...65535,
        relayBindAddress: IPAddress? = nil, core: RelayConfiguration
    ) {
        self.host = host
        self.port = port
        self.relayPorts = relayPorts
        self.relayBindAddress = relayBindAddress
        self.core = core
    }
}

/// The TURN relay's SwiftNIO adapter (RFC 8656 over UDP): one server socket and one relay socket per allocation,
/// all on one event loop, feeding the pure ``TURNServer`` and carrying out its actions.
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
    private var clients: [AllocationID: SocketAddress] = [:]
    private var dirtyRelays: [any Channel] = []
    private var listenerDirty = false
    private var counters = Counters()
    private let metrics: RelayMetrics
    private let bound = Readiness()

    /// Datagrams read per `recvmmsg` on the server socket and on each relay socket; NIO splits one receive buffer
    /// evenly between them, so each gets ``datagramSize`` bytes, and a datagram that fills its slot may have been
    /// cut short (NIO does not report MSG_TRUNC): it is dropped, never relayed truncated.
    static let serverBatch = 64
    static let relayBatch = 8
    static let datagramSize = 2048

    struct Counters {
        var packetsToPeers: Int64 = 0
        var bytesToPeers: Int64 = 0
        var packetsToClients: Int64 = 0
        var bytesToClients: Int64 = 0
        var drops: [RelayDropReason: Int64] = [:]
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
    public func boundPort() async throws -> Int { try await bound.wait() }

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
        let ticker = eventLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            self.tick()
        }
        logger.info("TURN relay listening", metadata: ["address": "\(local)", "realm": "\(configuration.core.realm)"])
        bound.succeed(Int(port))
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
        try? await eventLoop.submit {
            for action in self.core.removeAll() { self.perform(action) }
            self.flushCounters()
        }.get()
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
        let fiveTuple = FiveTuple(client: client, server: serverAddress)
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
        guard listener.isWritable else {
            counters.drops[.congested, default: 0] += 1
            return
        }
        let outgoing: ByteBuffer
        switch core.fromPeer(peer, length: payload.readableBytes, allocation: id, now: .now()) {
        case .channelData(let channel, _):
            var buffer = listener.allocator.buffer(capacity: 4 + payload.readableBytes)
            buffer.writeInteger(channel)
            buffer.writeInteger(UInt16(truncatingIfNeeded: payload.readableBytes))
            buffer.writeImmutableBuffer(payload)
            outgoing = buffer
        case .dataIndication:
            outgoing = listener.allocator.buffer(
                bytes: TURNServer.dataIndication(from: peer, payload: Array(payload.readableBytesView)))
        case .drop(let reason):
            counters.drops[reason, default: 0] += 1
            return
        }
        listener.write(AddressedEnvelope(remoteAddress: client, data: outgoing), promise: nil)
        listenerDirty = true
        counters.packetsToClients += 1
        counters.bytesToClients += Int64(payload.readableBytes)
    }

    /// End of a read batch: one flush per socket written to.
    fileprivate func readComplete() {
        if listenerDirty {
            listenerDirty = false
            listener?.flush()
        }
        for relay in dirtyRelays { relay.flush() }
        dirtyRelays.removeAll(keepingCapacity: true)
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

    /// Binds a relay socket on a random port of the range (an even one when asked); a port in use is retried
    /// elsewhere up to 16 times before the allocation fails with 508.
    private func openRelay(_ pending: PendingAllocation, attempt: Int) {
        let range = configuration.relayPorts
        var candidate = Int.random(in: range)
        if pending.evenPort && candidate % 2 == 1 {
            candidate = candidate == range.upperBound ? candidate - 1 : candidate + 1
        }
        let port = candidate
        let id = pending.id
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
            .bind(host: bindAddress(for: pending.relayAddress).description, port: port)
            .hop(to: eventLoop)
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    let address = TransportAddress(ip: pending.relayAddress, port: UInt16(port))
                    let actions = self.core.relayOpened(id, at: address, now: .now())
                    if actions.contains(where: { if case .closeRelay = $0 { true } else { false } }) {
                        channel.close(promise: nil)
                    } else {
                        self.relays[id] = channel
                        self.clients[id] = SocketAddress(pending.fiveTuple.client)
                    }
                    for action in actions where !Self.isClose(action) { self.perform(action) }
                    self.listener?.flush()
                case .failure(let error):
                    // Only a port in use is worth another port; any other error would fail again.
                    let inUse = (error as? IOError)?.errnoCode == EADDRINUSE
                    if inUse && attempt < 16 {
                        self.openRelay(pending, attempt: attempt + 1)
                    } else {
                        self.logger.warning("no relay port could be bound", metadata: ["error": "\(error)"])
                        for action in self.core.relayFailed(id) { self.perform(action) }
                        self.listener?.flush()
                    }
                }
            }
    }

    private static func isClose(_ action: RelayAction) -> Bool {
        if case .closeRelay = action { return true }
        return false
    }

    private func tick() {
        for action in core.expire(now: .now()) { perform(action) }
        listener?.flush()
        flushCounters()
    }

    private func flushCounters() {
        metrics.record(counters, core: core)
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

/// Resolves once the server socket is bound.
final class Readiness: Sendable {
    private enum State {
        case waiting([CheckedContinuation<Int, any Error>])
        case bound(Int)
        case failed(any Error)
    }
    private let state = Mutex(State.waiting([]))

    func wait() async throws -> Int {
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

    func succeed(_ port: Int) { resolve(.bound(port)) }
    func fail(_ error: any Error) { resolve(.failed(error)) }

    private func resolve(_ outcome: State) {
        let waiters = state.withLock { state -> [CheckedContinuation<Int, any Error>] in
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
