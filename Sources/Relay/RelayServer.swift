internal import CDatagram
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

#if canImport(Glibc)
    import Glibc
#endif

/// Where the relay listens and which ports its allocations use.
public struct RelayServerConfiguration: Sendable {
    /// The address of the TURN server sockets (UDP, and TCP and TLS when configured).
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
    /// Datagram threads (`--relay-threads`), each with its own UDP server socket on the TURN port
    /// (`SO_REUSEPORT`) and its share of the relay sockets; one allocation table for all. Default: one per core.
    public var threads = RelayServerConfiguration.defaultThreads

    /// One datagram thread per core.
    public static var defaultThreads: Int { max(1, ProcessInfo.processInfo.activeProcessorCount) }

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

/// The TURN relay's adapter (RFC 8656). UDP, the data path, is raw: ``RelayServerConfiguration/threads`` datagram
/// threads (``DatagramWorker``), each reading its own server socket on the TURN port and the relay sockets it owns
/// with `recvmmsg`, and sending with `sendmmsg`, no per-datagram allocation or address formatting. TCP and TLS
/// clients, timers and the admin API live on a SwiftNIO event loop. Both feed the one pure ``TURNServer`` inside
/// ``RelayTables`` (one lock, taken once per read batch) and carry out its actions. A `Service` for the service
/// group: ``run()`` binds, serves until graceful shutdown, then closes every socket.
public final class RelayServer: Service, @unchecked Sendable {
    public let configuration: RelayServerConfiguration
    let eventLoop: any EventLoop
    let logger: Logger
    let shared: SharedTables
    private let metrics: RelayMetrics
    private let bound = Readiness<RelayPorts>()
    /// TCP and TLS connections written to since the last flush; touched on `eventLoop` only.
    private var dirtyStreams: [any Channel] = []

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
        shared = SharedTables(
            RelayTables(
                core: TURNServer(configuration: core), relayPorts: configuration.relayPorts,
                relayBindAddress: configuration.relayBindAddress, logger: logger))
        metrics = RelayMetrics(factory: metricsFactory ?? MetricsSystem.factory)
    }

    /// The bound server socket's port, once ``run()`` has bound it.
    public func boundPort() async throws -> Int { try await bound.wait().udp }

    /// Every bound port (UDP, and TCP and TLS when configured), once ``run()`` has bound them.
    public func boundPorts() async throws -> RelayPorts { try await bound.wait() }

    public func run() async throws {
        let workers: [DatagramWorker]
        let local: TransportAddress
        do {
            (workers, local) = try bindDatagramThreads()
        } catch {
            bound.fail(error)
            throw error
        }
        var streamListeners: [any Channel] = []
        var ports = RelayPorts(udp: Int(local.port))
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
            for channel in streamListeners { try? await channel.close() }
            shared.withLock { $0.closeAll(now: .now()) }
            bound.fail(error)
            throw error
        }
        for worker in workers { worker.start() }
        let ticker = eventLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            self.tick()
        }
        logger.info(
            "TURN relay listening",
            metadata: [
                "address": "\(local)", "tcp": "\(ports.tcp.map(String.init) ?? "off")",
                "tls": "\(ports.tls.map(String.init) ?? "off")", "realm": "\(configuration.core.realm)",
                "threads": "\(workers.count)",
            ])
        bound.succeed(ports)
        // Until graceful shutdown, or cancellation.
        try? await gracefulShutdown()
        ticker.cancel()
        for worker in workers { worker.stop() }
        for worker in workers { await worker.waitUntilEnded() }
        for channel in streamListeners { try? await channel.close() }
        try? await eventLoop.submit {
            let streams = self.shared.withLock { tables in
                tables.closeAll(now: .now())
                return tables.streams.values.map(\.channel)
            }
            for stream in streams { stream.close(promise: nil) }
            self.flushCounters()
        }.get()
    }

    /// N UDP server sockets on the TURN address (one when N is 1, else sharing it with `SO_REUSEPORT`), each with
    /// its epoll set and thread.
    private func bindDatagramThreads() throws -> ([DatagramWorker], TransportAddress) {
        guard let ip = IPAddress(configuration.host) else {
            throw SocketError("bind \(configuration.host)", code: EINVAL)
        }
        let count = max(1, configuration.threads)
        var serverFDs: [Int32] = []
        var pollFDs: [Int32] = []
        var local = TransportAddress(ip: ip, port: UInt16(clamping: configuration.port))
        do {
            for _ in 0..<count {
                let (fd, address) = try UDPSocket.bind(local, reusePort: count > 1, bufferBytes: 4 << 20)
                serverFDs.append(fd)
                // On a wildcard address, each datagram's local address (IP_PKTINFO) is what answers leave from.
                if ip.isUnspecified && sb_enable_pktinfo(fd, ip.isIPv4 ? AF_INET : AF_INET6) != 0 {
                    throw SocketError("setsockopt IP_PKTINFO")
                }
                // Port 0 picked a free port: the other sockets join it.
                local = address
                let poll = sb_poll_create()
                guard poll >= 0 else { throw SocketError("epoll_create1") }
                pollFDs.append(poll)
                guard sb_poll_add(poll, fd, 0) == 0 else { throw SocketError("epoll_ctl") }
            }
        } catch {
            for fd in serverFDs + pollFDs { close(fd) }
            throw error
        }
        shared.withLock { $0.attach(serverFDs: serverFDs, pollFDs: pollFDs, serverAddress: local) }
        let workers = (0..<count).map { index in
            DatagramWorker(
                index: index, serverFD: serverFDs[index], pollFD: pollFDs[index], readsLocalAddress: ip.isUnspecified,
                shared: shared,
                deliver: { [self] writes in eventLoop.execute { self.write(writes) } })
        }
        return (workers, local)
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
            self.locked { tables, outbox in
                let now = RelayTime.now()
                for action in tables.core.endCall(call, now: now) {
                    tables.perform(action, replyFD: tables.serverFDs.first ?? -1, now: now, into: &outbox)
                }
            }
        }
    }

    /// Live allocations, for the admin API.
    public func allocations() async -> [AllocationInfo] {
        shared.withLock { $0.core.snapshot(now: .now()) }
    }

    /// Per datagram thread: the client datagrams it has read from its server socket, and the relay sockets it owns.
    package func datagramThreads() -> [(clientDatagrams: Int, relaySockets: Int)] {
        shared.withLock { tables in
            tables.clientDatagramsByThread.indices.map { worker in
                (tables.clientDatagramsByThread[worker], tables.relays.values.count { $0.owner == worker })
            }
        }
    }

    // MARK: On the event loop

    /// Runs `body` under the tables' lock from the event loop: its datagrams are sent before the lock is released
    /// (a relay socket may be closed once it is), its stream writes are written (and flushed at the end of the read
    /// batch).
    func locked<Result: Sendable>(_ body: (inout RelayTables, inout Outbox) -> Result) -> Result {
        var outbox = Outbox()
        let result = shared.withLock { tables in
            let result = body(&tables, &outbox)
            outbox.sendDatagrams(with: tables.sender, counters: &tables.counters)
            return result
        }
        for (channel, buffer) in outbox.streams {
            channel.write(buffer, promise: nil)
            markDirty(stream: channel)
        }
        for channel in outbox.closes { channel.close(promise: nil) }
        return result
    }

    /// Writes to TCP and TLS connections that a datagram thread left, flushed at once.
    private func write(_ writes: [(channel: any Channel, buffer: ByteBuffer)]) {
        for (channel, buffer) in writes {
            channel.write(buffer, promise: nil)
            markDirty(stream: channel)
        }
        readComplete()
    }

    func markDirty(stream: any Channel) {
        if !dirtyStreams.contains(where: { $0 === stream }) { dirtyStreams.append(stream) }
    }

    /// End of a read batch: one flush per connection written to.
    func readComplete() {
        for stream in dirtyStreams { stream.flush() }
        dirtyStreams.removeAll(keepingCapacity: true)
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

    private func tick() {
        let idle = locked { tables, outbox in
            let now = RelayTime.now()
            for action in tables.core.expire(now: now) {
                tables.perform(action, replyFD: tables.serverFDs.first ?? -1, now: now, into: &outbox)
            }
            return tables.idleStreams(timeout: configuration.idleConnectionTimeout)
        }
        for channel in idle { channel.close(promise: nil) }
        readComplete()
        flushCounters()
    }

    private func flushCounters() {
        shared.withLock { tables in
            metrics.record(tables.counters, core: tables.core, connections: tables.streams.count)
            tables.counters = RelayCounters()
        }
    }
}

extension RelayTime {
    /// The wall clock (TURN REST credentials carry Unix times).
    static func now() -> RelayTime {
        RelayTime(milliseconds: Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)))
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
