import NIOCore
import RelayCore
import STUN

/// Frames TURN over a byte stream (RFC 8656 §3.1): a STUN message is its 20-byte header and the length it gives; a
/// ChannelData message is its 4-byte header, the length it gives, and padding to a multiple of 4 (§12.5), which is
/// read and dropped. Anything else cannot be resynchronised: the decoder fails and the connection closes. A frame
/// is shorter than ``maximumFrame`` bytes, as a datagram is on UDP (what is relayed goes to peers as one UDP
/// datagram), so a connection makes the decoder buffer no more than that.
struct TURNFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    struct NotTURN: Error {}

    /// Frames are shorter than this: what one connection can make the relay buffer stays small.
    static let maximumFrame = 2048

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let start = buffer.readerIndex
        guard let first = buffer.getInteger(at: start, as: UInt8.self),
            let length = buffer.getInteger(at: start + 2, as: UInt16.self)
        else { return .needMoreData }
        let frame: Int
        let padded: Int
        switch first >> 6 {
        case 0:
            frame = 20 + Int(length)
            padded = frame
        case 1:
            frame = 4 + Int(length)
            padded = (frame + 3) & ~3
        default:
            throw NotTURN()
        }
        guard padded < Self.maximumFrame else { throw NotTURN() }
        guard buffer.readableBytes >= padded, let message = buffer.readSlice(length: frame) else {
            return .needMoreData
        }
        buffer.moveReaderIndex(forwardBy: padded - frame)
        context.fireChannelRead(wrapInboundOut(message))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws
        -> DecodingState
    {
        while try decode(context: context, buffer: &buffer) == .continue {}
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return .needMoreData
    }
}

/// One client's TCP or TLS connection to the server port: framed messages go to the relay under the connection's
/// 5-tuple, a read's worth at a time (one lock, one `sendmmsg` for all they relay, as a datagram thread's batch);
/// its end ends the allocation made over it.
final class StreamClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let relay: RelayServer
    let transport: ClientTransport
    private var fiveTuple: FiveTuple?
    /// The frames of the read under way (bounded by what one read of the channel brings).
    private var frames: [ByteBuffer] = []

    init(relay: RelayServer, transport: ClientTransport) {
        self.relay = relay
        self.transport = transport
    }

    func channelActive(context: ChannelHandlerContext) {
        guard let client = context.channel.remoteAddress.flatMap(TransportAddress.init),
            let server = context.channel.localAddress.flatMap(TransportAddress.init)
        else {
            context.close(promise: nil)
            return
        }
        let fiveTuple = FiveTuple(client: client, server: server, transport: transport)
        if relay.streamOpened(context.channel, fiveTuple) {
            self.fiveTuple = fiveTuple
        } else {
            context.close(promise: nil)
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard fiveTuple != nil else { return }
        frames.append(unwrapInboundIn(data))
        // A full batch goes at once: reading and relaying interleave instead of a whole read waiting behind its sends.
        if frames.count >= Self.batch { flushFrames() }
    }

    /// Frames relayed under one lock at most: one `sendmmsg` batch.
    static let batch = 64

    func channelReadComplete(context: ChannelHandlerContext) {
        flushFrames()
        relay.readComplete()
    }

    private func flushFrames() {
        guard let fiveTuple, !frames.isEmpty else { return }
        // Taken before they are relayed: relaying may close this connection (a client not reading its replies),
        // which runs channelInactive, and so this, at once.
        let batch = frames
        frames.removeAll(keepingCapacity: true)
        relay.streamRead(batch, from: fiveTuple)
    }

    func channelInactive(context: ChannelHandlerContext) {
        // Frames read before the end still count (a Refresh deleting the allocation, the last data).
        flushFrames()
        if let fiveTuple { relay.streamClosed(fiveTuple) }
        fiveTuple = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A frame that is not TURN, a failed TLS handshake, a reset: the connection cannot go on.
        relay.streamFailed(error)
        context.close(promise: nil)
    }
}

extension RelayServer {
    /// A client connected over TCP or TLS: admitted unless its address or the relay is at its connection limit.
    func streamOpened(_ channel: any Channel, _ fiveTuple: FiveTuple) -> Bool {
        let limits = (configuration.maximumConnections, configuration.maximumConnectionsPerAddress)
        return shared.withLock { $0.streamOpened(channel, fiveTuple, limits: limits) }
    }

    /// Framed messages from a TCP or TLS client, in order, under one lock. Datagrams they relay point into
    /// `frames`, which outlive the sends (``locked(_:)`` sends before it returns).
    func streamRead(_ frames: [ByteBuffer], from fiveTuple: FiveTuple) {
        locked { tables, outbox in
            let now = RelayTime.now()
            let replyFD = tables.serverFDs.first ?? -1
            for frame in frames {
                frame.withUnsafeReadableBytes { bytes in
                    tables.handle(bytes, from: fiveTuple, replyFD: replyFD, now: now, into: &outbox)
                }
            }
        }
    }

    /// A TCP or TLS client's connection closed: its allocation ends.
    func streamClosed(_ fiveTuple: FiveTuple) {
        locked { tables, outbox in tables.streamClosed(fiveTuple, now: .now(), into: &outbox) }
    }

    /// A TCP or TLS connection failed (a frame that is not TURN, a TLS error); it is being closed.
    func streamFailed(_ error: any Error) {
        shared.withLock { $0.counters.connectionsFailed += 1 }
        logger.debug("TURN connection failed", metadata: ["error": "\(error)"])
    }
}
