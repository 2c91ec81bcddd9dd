internal import CDatagram
import DatagramPump
import Logging
import NIOConcurrencyHelpers
import NIOCore
import RelayCore
import STUN

#if canImport(Glibc)
    import Glibc
#endif

/// How the relay reaches a client: from a UDP server socket (from the local address `from` when the socket is bound
/// to a wildcard address, the one the client sent to), or down its TCP or TLS connection.
enum ClientRoute {
    case datagram(TransportAddress, from: IPAddress?)
    case stream(any Channel)
}

/// A client's TCP or TLS connection, since when it has had no allocation, and the STUN replies queued while it
/// was not writable.
struct StreamClient {
    let channel: any Channel
    var idleSince: ContinuousClock.Instant?
    var backlog = 0
}

/// One allocation's (or reservation's) UDP relay socket, named by `token` in the epoll set of the datagram thread
/// that reads it (`owner`).
struct RelaySocket {
    let fd: Int32
    let token: UInt64
    let owner: Int
}

/// The relay's tallies between two reports to swift-metrics (once a second, never per packet).
struct RelayCounters {
    var packetsToPeers: Int64 = 0
    var bytesToPeers: Int64 = 0
    var packetsToClients: Int64 = 0
    var bytesToClients: Int64 = 0
    var drops: [RelayDropReason: Int64] = [:]
    /// TCP and TLS connections closed at once for being past a limit, and ones that failed (not TURN, TLS).
    var connectionsRefused: Int64 = 0
    var connectionsFailed: Int64 = 0

    mutating func merge(_ other: RelayCounters) {
        packetsToPeers += other.packetsToPeers
        bytesToPeers += other.bytesToPeers
        packetsToClients += other.packetsToClients
        bytesToClients += other.bytesToClients
        for (reason, count) in other.drops { drops[reason, default: 0] += count }
        connectionsRefused += other.connectionsRefused
        connectionsFailed += other.connectionsFailed
    }
}

/// Everything the relay's threads share, behind one lock (taken once per read batch, not per datagram): the pure
/// ``TURNServer``, the relay sockets, how to reach each client, TCP and TLS connections and the counters.
///
/// A relay socket is read only by its owner thread, but written by any thread that forwards to it. A closed one is
/// therefore retired, not closed: its descriptor is closed once every datagram thread has begun a new pass after the
/// retirement (each notes the epoch it saw when it begins one), so no thread can still be sending on a number the
/// kernel has handed to a new socket. Sendable because it is only ever reached through the lock of
/// ``SharedTables``.
struct RelayTables: @unchecked Sendable {
    var core: TURNServer
    let relayPorts: ClosedRange<Int>
    let relayBindAddress: IPAddress?
    let logger: Logger
    var serverAddress = TransportAddress(ip: IPAddress(ipv4: 0), port: 0)
    /// The server sockets are bound to a wildcard address: each datagram's local address comes from IP_PKTINFO, is
    /// its 5-tuple's server address, and is the source of everything sent to that client.
    var serverIsWildcard = false
    /// Each datagram thread's UDP server socket and epoll set.
    var serverFDs: [Int32] = []
    var pollFDs: [Int32] = []
    var relays: [AllocationID: RelaySocket] = [:]
    var byToken: [UInt64: AllocationID] = [:]
    var clients: [AllocationID: ClientRoute] = [:]
    var streams: [FiveTuple: StreamClient] = [:]
    var streamsPerAddress: [IPAddress: Int] = [:]
    var counters = RelayCounters()
    /// Client datagrams each datagram thread has read from its server socket (the kernel's `SO_REUSEPORT` spread).
    var clientDatagramsByThread: [Int] = []
    /// Sends for callers that are not datagram threads (the event loop), under the lock.
    let sender = DatagramSender()
    private var nextToken: UInt64 = 1
    private var nextOwner = 0
    private var epoch: UInt64 = 0
    private var observed: [UInt64] = []
    private var retired: [(fd: Int32, epoch: UInt64)] = []

    /// STUN replies a TCP or TLS connection may have queued past its write buffer's high mark before it is closed.
    static let maximumReplyBacklog = 64 * 1024

    init(core: TURNServer, relayPorts: ClosedRange<Int>, relayBindAddress: IPAddress?, logger: Logger) {
        self.core = core
        self.relayPorts = relayPorts
        self.relayBindAddress = relayBindAddress
        self.logger = logger
    }

    mutating func attach(serverFDs: [Int32], pollFDs: [Int32], serverAddress: TransportAddress) {
        self.serverFDs = serverFDs
        self.pollFDs = pollFDs
        self.serverAddress = serverAddress
        serverIsWildcard = serverAddress.ip.isUnspecified
        observed = Array(repeating: 0, count: pollFDs.count)
        clientDatagramsByThread = Array(repeating: 0, count: pollFDs.count)
    }

    // MARK: Retiring relay sockets (each datagram thread notes its passes)

    /// Datagram thread `worker` begins a pass: relay sockets retired before now may be closed once all have.
    mutating func observe(worker: Int) {
        observed[worker] = epoch
        guard let floor = observed.min(), retired.contains(where: { $0.epoch < floor }) else { return }
        retired.removeAll { socket in
            guard socket.epoch < floor else { return false }
            close(socket.fd)
            return true
        }
    }

    // MARK: TCP and TLS clients

    /// A client connected over TCP or TLS: admitted unless its address or the relay is at its connection limit.
    mutating func streamOpened(_ channel: any Channel, _ fiveTuple: FiveTuple, limits: (total: Int, perAddress: Int))
        -> Bool
    {
        // IPv6 clients are counted per /64: one host can hold a whole /64.
        let address = SourceRateLimiter.source(of: fiveTuple.client.ip)
        guard streams.count < limits.total, streamsPerAddress[address, default: 0] < limits.perAddress else {
            counters.connectionsRefused += 1
            return false
        }
        streams[fiveTuple] = StreamClient(channel: channel, idleSince: .now)
        streamsPerAddress[address, default: 0] += 1
        return true
    }

    /// A TCP or TLS client's connection closed: its allocation ends.
    mutating func streamClosed(_ fiveTuple: FiveTuple, now: RelayTime, into outbox: inout Outbox) {
        guard streams.removeValue(forKey: fiveTuple) != nil else { return }
        let address = SourceRateLimiter.source(of: fiveTuple.client.ip)
        let remaining = streamsPerAddress[address, default: 1] - 1
        streamsPerAddress[address] = remaining > 0 ? remaining : nil
        for action in core.connectionClosed(fiveTuple) {
            perform(action, replyFD: serverFDs.first ?? -1, now: now, into: &outbox)
        }
    }

    /// TCP and TLS connections that have had no allocation for `timeout`, to be closed.
    mutating func idleStreams(timeout: Duration) -> [any Channel] {
        let now = ContinuousClock.now
        var idle: [any Channel] = []
        for (fiveTuple, stream) in streams {
            if core.hasAllocation(for: fiveTuple) {
                if stream.idleSince != nil { streams[fiveTuple]?.idleSince = nil }
            } else if let since = stream.idleSince {
                if now - since >= timeout { idle.append(stream.channel) }
            } else {
                streams[fiveTuple]?.idleSince = now
            }
        }
        return idle
    }

    // MARK: Relay sockets

    /// Binds a relay socket on a random port of the range (an even one when asked, and the odd one above it too for
    /// a reservation); a port in use is retried elsewhere up to 16 times before the allocation fails with 508. A
    /// claimed reservation's socket is bound already.
    mutating func openRelay(
        _ pending: PendingAllocation, replyFD: Int32, now: RelayTime, into outbox: inout Outbox
    ) {
        let id = pending.id
        var actions: [RelayAction]
        if let port = pending.reservedPort {
            if relays[id] != nil {
                clients[id] = route(to: pending.fiveTuple)
                actions = core.relayOpened(id, at: TransportAddress(ip: pending.relayAddress, port: port), now: now)
            } else {
                actions = core.relayFailed(id)
            }
        } else if let (port, fd, reservedFD) = bindRelay(
            on: pending.relayAddress, even: pending.evenPort, pair: pending.reservation != nil)
        {
            let owner = nextOwner
            nextOwner = (nextOwner + 1) % max(pollFDs.count, 1)
            register(fd, as: id, owner: owner)
            clients[id] = route(to: pending.fiveTuple)
            let reserved = reservedFD.map { _ in TransportAddress(ip: pending.relayAddress, port: UInt16(port + 1)) }
            // A dual allocation's second family: any free port of the range; without one, the allocation is made
            // with its first family alone (the core tells the client why in ADDRESS-ERROR-CODE).
            let second = pending.additional.flatMap { additional in
                bindRelay(on: additional.relayAddress, even: false, pair: false).map {
                    (
                        id: additional.id,
                        address: TransportAddress(ip: additional.relayAddress, port: UInt16($0.port)),
                        fd: $0.fd
                    )
                }
            }
            let opened = core.relayOpened(
                id, at: TransportAddress(ip: pending.relayAddress, port: UInt16(port)), reserved: reserved,
                additional: second?.address, now: now)
            for action in opened { perform(action, replyFD: replyFD, now: now, into: &outbox) }
            // The reservation and the second family live only if their allocation does (an allocation that ended
            // while its socket was bound gets its socket closed by the actions just performed).
            let lives = relays[id] != nil
            if let reservedFD, let pair = pending.reservation {
                if lives { register(reservedFD, as: pair, owner: owner) } else { close(reservedFD) }
            }
            if let second {
                if lives {
                    register(second.fd, as: second.id, owner: owner)
                    clients[second.id] = clients[id]
                } else {
                    close(second.fd)
                }
            }
            actions = []
        } else {
            actions = core.relayFailed(id)
        }
        for action in actions { perform(action, replyFD: replyFD, now: now, into: &outbox) }
    }

    /// A bound port of the range on `address` (or the bind address of its family), even when asked, and the one
    /// above it too for a pair, or nil.
    private func bindRelay(on address: IPAddress, even: Bool, pair: Bool) -> (port: Int, fd: Int32, reserved: Int32?)? {
        let bind = relayBindAddress.flatMap { $0.family == address.family ? $0 : nil } ?? address
        for _ in 0..<16 {
            guard let port = RelayServer.relayPort(in: relayPorts, even: even, pair: pair) else { return nil }
            do {
                let fd = try UDPSocket.bind(TransportAddress(ip: bind, port: UInt16(port))).fd
                guard pair else { return (port, fd, nil) }
                do {
                    return (port, fd, try UDPSocket.bind(TransportAddress(ip: bind, port: UInt16(port + 1))).fd)
                } catch {
                    close(fd)
                    throw error
                }
            } catch let error as SocketError where error.code == EADDRINUSE {
                // Only a port in use is worth another port; any other error would fail again.
                continue
            } catch {
                logger.warning(
                    "no relay port could be bound", metadata: ["error": "\(error)", "family": "\(address.family)"])
                return nil
            }
        }
        logger.warning(
            "no relay port could be bound", metadata: ["error": "16 ports in use", "family": "\(address.family)"])
        return nil
    }

    private mutating func register(_ fd: Int32, as id: AllocationID, owner: Int) {
        let token = nextToken
        nextToken += 1
        if owner < pollFDs.count { _ = sb_poll_add(pollFDs[owner], fd, token) }
        relays[id] = RelaySocket(fd: fd, token: token, owner: owner)
        byToken[token] = id
    }

    mutating func closeRelay(_ id: AllocationID) {
        clients[id] = nil
        guard let relay = relays.removeValue(forKey: id) else { return }
        byToken[relay.token] = nil
        if relay.owner < pollFDs.count { _ = sb_poll_remove(pollFDs[relay.owner], relay.fd) }
        retired.append((relay.fd, epoch))
        epoch += 1
    }

    /// The local address UDP datagrams to this client leave from: the one it sent to, when the server sockets are
    /// bound to a wildcard address (nil: the kernel's choice, which is the bound address).
    func replySource(_ fiveTuple: FiveTuple) -> IPAddress? {
        serverIsWildcard && !fiveTuple.server.ip.isUnspecified ? fiveTuple.server.ip : nil
    }

    /// Where relayed data for a client goes: its UDP address, or its connection (if it is still open).
    func route(to fiveTuple: FiveTuple) -> ClientRoute? {
        guard fiveTuple.transport.isStream else { return .datagram(fiveTuple.client, from: replySource(fiveTuple)) }
        return streams[fiveTuple].map { .stream($0.channel) }
    }

    /// Ends every allocation and closes every socket (the datagram threads have stopped).
    mutating func closeAll(now: RelayTime) {
        var outbox = Outbox()
        for action in core.removeAll() { perform(action, replyFD: -1, now: now, into: &outbox) }
        outbox.discardDatagrams()
        for relay in relays.values { close(relay.fd) }
        relays = [:]
        byToken = [:]
        for socket in retired { close(socket.fd) }
        retired = []
        for fd in serverFDs + pollFDs { close(fd) }
        serverFDs = []
        pollFDs = []
    }
}

/// The tables, shared by reference between the relay and its datagram threads, behind a pthread mutex (NIOLock)
/// rather than Synchronization's `Mutex`: on Linux that one is a futex ThreadSanitizer cannot see, so every access
/// under it looked like a race, and the data path's threads could not be checked at all.
final class SharedTables: @unchecked Sendable {
    private let lock = NIOLock()
    private var tables: RelayTables

    init(_ tables: RelayTables) {
        self.tables = tables
    }

    /// Runs `body` on the tables under the lock.
    func withLock<T>(_ body: (inout RelayTables) throws -> T) rethrows -> T {
        try lock.withLock { try body(&tables) }
    }
}
