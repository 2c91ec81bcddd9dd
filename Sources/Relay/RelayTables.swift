internal import CDatagram
import DatagramPump
import Logging
import NIOCore
import RelayCore
import STUN
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// How the relay reaches a client: from a UDP server socket, or down its TCP or TLS connection.
enum ClientRoute {
    case datagram(TransportAddress)
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

/// One `recvmmsg` batch in a datagram thread's slots: datagram `i` is `lengths[i]` bytes at
/// `slots + i * slotSize + headroom`, the `headroom` bytes in front of it free for a header.
struct ReadSlots {
    let slots: UnsafeMutableRawPointer
    let sources: UnsafeMutablePointer<sockaddr_storage>
    let lengths: UnsafeMutablePointer<UInt32>
    let truncated: UnsafeMutablePointer<Int32>
    let count: Int

    static let headroom = 64
    /// Room for the largest UDP datagram: the kernel's MSG_TRUNC, not a length guess, says when one did not fit.
    static let slotSize = headroom + 65_536

    func datagram(_ index: Int) -> UnsafeMutableRawPointer { slots + index * Self.slotSize + Self.headroom }
}

/// What a pass over the tables leaves to send once their lock is released: datagrams (in place from a read slot,
/// or an owned copy) and writes to TCP and TLS connections.
struct Outbox {
    /// What a datagram is, for the counters: relayed data (with its payload's length) or a STUN reply.
    enum Kind {
        case toPeer(payload: Int)
        case toClient(payload: Int)
        case reply
    }

    struct Datagram {
        var fd: Int32
        var pointer: UnsafeRawPointer
        var length: Int
        var to: TransportAddress
        var kind: Kind
    }

    var datagrams: [Datagram] = []
    var streams: [(channel: any Channel, buffer: ByteBuffer)] = []
    private var owned: [UnsafeMutableRawBufferPointer] = []
    private var order: [Int] = []

    mutating func append(_ pointer: UnsafeRawPointer, length: Int, fd: Int32, to: TransportAddress, kind: Kind) {
        datagrams.append(Datagram(fd: fd, pointer: pointer, length: length, to: to, kind: kind))
    }

    /// Queues a copy of `bytes`.
    mutating func append(copying bytes: UnsafeRawBufferPointer, fd: Int32, to: TransportAddress, kind: Kind) {
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 8)
        if let base = bytes.baseAddress { copy.baseAddress!.copyMemory(from: base, byteCount: bytes.count) }
        owned.append(copy)
        append(UnsafeRawPointer(copy.baseAddress!), length: bytes.count, fd: fd, to: to, kind: kind)
    }

    /// Forgets the datagrams unsent.
    mutating func discardDatagrams() {
        for buffer in owned { buffer.deallocate() }
        owned.removeAll(keepingCapacity: true)
        datagrams.removeAll(keepingCapacity: true)
    }

    /// Sends the datagrams, in order within each socket and one `sendmmsg` run per socket, and tallies what went
    /// and what a full send buffer refused. Then forgets them (the stream writes stay).
    mutating func sendDatagrams(with sender: DatagramSender, counters: inout RelayCounters) {
        defer { discardDatagrams() }
        guard !datagrams.isEmpty else { return }
        order.removeAll(keepingCapacity: true)
        order.append(contentsOf: datagrams.indices)
        let datagrams = self.datagrams
        if datagrams.count > 1 {
            order.sort { datagrams[$0].fd != datagrams[$1].fd ? datagrams[$0].fd < datagrams[$1].fd : $0 < $1 }
        }
        let order = self.order
        var start = 0
        while start < order.count {
            let fd = datagrams[order[start]].fd
            var end = start + 1
            while end < order.count && datagrams[order[end]].fd == fd { end += 1 }
            for index in order[start..<end] { counters.count(datagrams[index].kind, by: 1) }
            _ = sender.send(from: fd, count: end - start) { offset in
                let datagram = datagrams[order[start + offset]]
                return (datagram.pointer, datagram.length, datagram.to)
            } dropped: { offset in
                counters.count(datagrams[order[start + offset]].kind, by: -1)
                counters.drops[.congested, default: 0] += 1
            }
            start = end
        }
    }
}

extension RelayCounters {
    fileprivate mutating func count(_ kind: Outbox.Kind, by sign: Int64) {
        switch kind {
        case .toPeer(let payload):
            packetsToPeers += sign
            bytesToPeers += sign * Int64(payload)
        case .toClient(let payload):
            packetsToClients += sign
            bytesToClients += sign * Int64(payload)
        case .reply:
            break
        }
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
        observed = Array(repeating: 0, count: pollFDs.count)
        clientDatagramsByThread = Array(repeating: 0, count: pollFDs.count)
    }

    // MARK: Datagram threads

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

    /// The descriptor of the relay socket named `token`, while it is open.
    func fd(of token: UInt64) -> Int32? {
        byToken[token].flatMap { relays[$0]?.fd }
    }

    /// A batch read on a UDP server socket: ChannelData, or STUN (RFC 7983 demultiplexing by first byte).
    mutating func fromClients(
        _ read: ReadSlots, worker: Int, replyFD: Int32, now: RelayTime, into outbox: inout Outbox
    ) {
        clientDatagramsByThread[worker] += read.count
        for index in 0..<read.count {
            let length = Int(read.lengths[index])
            guard read.truncated[index] == 0 else {
                counters.drops[.truncated, default: 0] += 1
                continue
            }
            guard length > 0, let client = SocketAddressBytes.read(read.sources + index) else {
                counters.drops[.malformed, default: 0] += 1
                continue
            }
            let bytes = UnsafeRawBufferPointer(start: read.datagram(index), count: length)
            handle(
                bytes, from: FiveTuple(client: client, server: serverAddress), replyFD: replyFD, now: now,
                into: &outbox)
        }
    }

    /// A batch read on the relay socket named `token`: datagrams from peers, to their allocation's client.
    mutating func fromPeers(token: UInt64, _ read: ReadSlots, replyFD: Int32, now: RelayTime, into outbox: inout Outbox)
    {
        guard let id = byToken[token], let client = clients[id] else {
            counters.drops[.noAllocation, default: 0] += Int64(read.count)
            return
        }
        for index in 0..<read.count {
            let length = Int(read.lengths[index])
            guard read.truncated[index] == 0 else {
                counters.drops[.truncated, default: 0] += 1
                continue
            }
            guard let peer = SocketAddressBytes.read(read.sources + index) else {
                counters.drops[.malformed, default: 0] += 1
                continue
            }
            if case .stream(let connection) = client, !connection.isWritable {
                counters.drops[.congested, default: 0] += 1
                continue
            }
            let payload = read.datagram(index)
            switch core.fromPeer(peer, length: length, allocation: id, now: now) {
            case .channelData(let channel, _):
                switch client {
                case .datagram(let address):
                    // The ChannelData header goes in the slot's headroom, in front of the payload: no copy.
                    let header = payload - 4
                    header.storeBytes(of: channel.bigEndian, as: UInt16.self)
                    (header + 2).storeBytes(of: UInt16(truncatingIfNeeded: length).bigEndian, as: UInt16.self)
                    outbox.append(
                        UnsafeRawPointer(header), length: length + 4, fd: replyFD, to: address,
                        kind: .toClient(payload: length))
                case .stream(let connection):
                    // Over TCP and TLS, ChannelData is padded to a multiple of 4 bytes (RFC 8656 §12.5).
                    let padding = (4 - length % 4) % 4
                    var buffer = connection.allocator.buffer(capacity: 4 + length + padding)
                    buffer.writeInteger(channel)
                    buffer.writeInteger(UInt16(truncatingIfNeeded: length))
                    buffer.writeBytes(UnsafeRawBufferPointer(start: payload, count: length))
                    buffer.writeRepeatingByte(0, count: padding)
                    queue(buffer, to: connection, relayed: length, into: &outbox)
                }
            case .dataIndication:
                let message = TURNServer.dataIndication(
                    from: peer, payload: Array(UnsafeRawBufferPointer(start: payload, count: length)))
                switch client {
                case .datagram(let address):
                    message.withUnsafeBytes {
                        outbox.append(copying: $0, fd: replyFD, to: address, kind: .toClient(payload: length))
                    }
                case .stream(let connection):
                    queue(connection.allocator.buffer(bytes: message), to: connection, relayed: length, into: &outbox)
                }
            case .drop(let reason):
                counters.drops[reason, default: 0] += 1
            }
        }
    }

    private mutating func queue(
        _ buffer: ByteBuffer, to connection: any Channel, relayed length: Int, into outbox: inout Outbox
    ) {
        outbox.streams.append((connection, buffer))
        counters.packetsToClients += 1
        counters.bytesToClients += Int64(length)
    }

    // MARK: Any transport

    /// A STUN or ChannelData message from a client. Only those reach a TURN server socket: RFC 7983's 64–79 for
    /// ChannelData, widened to the 0b01 prefix (64–127) of RFC 5766 channels when the relay accepts those; the core
    /// refuses unbound channels.
    mutating func handle(
        _ bytes: UnsafeRawBufferPointer, from fiveTuple: FiveTuple, replyFD: Int32, now: RelayTime,
        into outbox: inout Outbox
    ) {
        guard let first = bytes.first else {
            counters.drops[.malformed, default: 0] += 1
            return
        }
        if PacketClass(firstByte: first) == .stun {
            for action in core.receive(Array(bytes), from: fiveTuple, now: now) {
                perform(action, replyFD: replyFD, now: now, into: &outbox)
            }
        } else if first & 0xC0 == 0x40 {
            guard bytes.count >= 4 else {
                counters.drops[.malformed, default: 0] += 1
                return
            }
            let channel = UInt16(bytes[0]) << 8 | UInt16(bytes[1])
            let length = Int(UInt16(bytes[2]) << 8 | UInt16(bytes[3]))
            guard bytes.count >= 4 + length else {
                counters.drops[.malformed, default: 0] += 1
                return
            }
            switch core.channelData(channel, length: length, from: fiveTuple, now: now) {
            case .toPeer(let id, let peer):
                guard let relay = relays[id] else {
                    counters.drops[.noRelaySocket, default: 0] += 1
                    return
                }
                outbox.append(
                    bytes.baseAddress! + 4, length: length, fd: relay.fd, to: peer, kind: .toPeer(payload: length))
            case .drop(let reason):
                counters.drops[reason, default: 0] += 1
            }
        } else {
            counters.drops[.malformed, default: 0] += 1
        }
    }

    /// Carries out one of the core's actions; UDP replies leave from `replyFD`.
    mutating func perform(_ action: RelayAction, replyFD: Int32, now: RelayTime, into outbox: inout Outbox) {
        switch action {
        case .sendToClient(let bytes, let fiveTuple):
            if fiveTuple.transport.isStream {
                sendReply(bytes, over: fiveTuple, into: &outbox)
            } else {
                bytes.withUnsafeBytes { outbox.append(copying: $0, fd: replyFD, to: fiveTuple.client, kind: .reply) }
            }
        case .openRelay(let pending):
            openRelay(pending, replyFD: replyFD, now: now, into: &outbox)
        case .closeRelay(let id):
            closeRelay(id)
        case .sendToPeer(let id, let payload, let peer):
            guard let relay = relays[id] else {
                counters.drops[.noRelaySocket, default: 0] += 1
                return
            }
            payload.withUnsafeBytes {
                outbox.append(copying: $0, fd: relay.fd, to: peer, kind: .toPeer(payload: payload.count))
            }
        case .dropped(let reason):
            counters.drops[reason, default: 0] += 1
        }
    }

    /// A reply is never dropped (over TCP a client does not retransmit), but a connection that does not read its
    /// replies is cut once they pass the cap.
    private mutating func sendReply(_ bytes: [UInt8], over fiveTuple: FiveTuple, into outbox: inout Outbox) {
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
        outbox.streams.append((connection, connection.allocator.buffer(bytes: bytes)))
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
    private mutating func openRelay(
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
        } else if let (port, fd, reservedFD) = bindRelay(for: pending) {
            let owner = nextOwner
            nextOwner = (nextOwner + 1) % max(pollFDs.count, 1)
            register(fd, as: id, owner: owner)
            clients[id] = route(to: pending.fiveTuple)
            let reserved = reservedFD.map { _ in TransportAddress(ip: pending.relayAddress, port: UInt16(port + 1)) }
            actions = core.relayOpened(
                id, at: TransportAddress(ip: pending.relayAddress, port: UInt16(port)), reserved: reserved, now: now)
            // The reservation lives only if its allocation does.
            if let reservedFD, let pair = pending.reservation {
                if relays[id] != nil { register(reservedFD, as: pair, owner: owner) } else { close(reservedFD) }
            }
        } else {
            actions = core.relayFailed(id)
        }
        for action in actions { perform(action, replyFD: replyFD, now: now, into: &outbox) }
    }

    /// A bound port of the range for `pending` (and the one above it for a reservation), or nil.
    private func bindRelay(for pending: PendingAllocation) -> (port: Int, fd: Int32, reserved: Int32?)? {
        let bind =
            if let address = relayBindAddress, address.family == pending.relayAddress.family { address } else {
                pending.relayAddress
            }
        let pair = pending.reservation != nil
        for _ in 0..<16 {
            guard let port = RelayServer.relayPort(in: relayPorts, even: pending.evenPort, pair: pair) else {
                return nil
            }
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
                logger.warning("no relay port could be bound", metadata: ["error": "\(error)"])
                return nil
            }
        }
        logger.warning("no relay port could be bound", metadata: ["error": "16 ports in use"])
        return nil
    }

    private mutating func register(_ fd: Int32, as id: AllocationID, owner: Int) {
        let token = nextToken
        nextToken += 1
        if owner < pollFDs.count { _ = sb_poll_add(pollFDs[owner], fd, token) }
        relays[id] = RelaySocket(fd: fd, token: token, owner: owner)
        byToken[token] = id
    }

    private mutating func closeRelay(_ id: AllocationID) {
        clients[id] = nil
        guard let relay = relays.removeValue(forKey: id) else { return }
        byToken[relay.token] = nil
        if relay.owner < pollFDs.count { _ = sb_poll_remove(pollFDs[relay.owner], relay.fd) }
        retired.append((relay.fd, epoch))
        epoch += 1
    }

    /// Where relayed data for a client goes: its UDP address, or its connection (if it is still open).
    private func route(to fiveTuple: FiveTuple) -> ClientRoute? {
        guard fiveTuple.transport.isStream else { return .datagram(fiveTuple.client) }
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

/// The tables, shared by reference between the relay and its datagram threads.
final class SharedTables: Sendable {
    let tables: Mutex<RelayTables>

    init(_ tables: consuming sending RelayTables) {
        self.tables = Mutex(tables)
    }
}
