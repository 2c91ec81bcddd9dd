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

/// The data path: what a datagram thread (or a TCP or TLS connection) read, forwarded under the one lock, and
/// the core's actions carried out into an ``Outbox`` sent after the lock is released.
extension RelayTables {
    // MARK: Datagram threads

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
            // On a wildcard socket, the address the client sent to (IP_PKTINFO) is the 5-tuple's server address.
            var server = serverAddress
            if serverIsWildcard, let locals = read.locals, let local = SocketAddressBytes.read(locals + index) {
                server = TransportAddress(ip: local.ip, port: serverAddress.port)
            }
            let bytes = UnsafeRawBufferPointer(start: read.datagram(index), count: length)
            handle(bytes, from: FiveTuple(client: client, server: server), replyFD: replyFD, now: now, into: &outbox)
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
                case .datagram(let address, let source):
                    // The ChannelData header goes in the slot's headroom, in front of the payload: no copy.
                    let header = payload - 4
                    header.storeBytes(of: channel.bigEndian, as: UInt16.self)
                    (header + 2).storeBytes(of: UInt16(truncatingIfNeeded: length).bigEndian, as: UInt16.self)
                    outbox.append(
                        UnsafeRawPointer(header), length: length + 4, fd: replyFD, to: address, from: source,
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
                case .datagram(let address, let source):
                    message.withUnsafeBytes {
                        outbox.append(
                            copying: $0, fd: replyFD, to: address, from: source, kind: .toClient(payload: length))
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
                bytes.withUnsafeBytes {
                    outbox.append(
                        copying: $0, fd: replyFD, to: fiveTuple.client, from: replySource(fiveTuple), kind: .reply)
                }
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
                outbox.closes.append(connection)
                return
            }
        }
        outbox.streams.append((connection, connection.allocator.buffer(bytes: bytes)))
    }
}
