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
/// 5-tuple; its end ends the allocation made over it.
final class StreamClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let relay: RelayServer
    let transport: ClientTransport
    private var fiveTuple: FiveTuple?

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
        guard let fiveTuple else { return }
        relay.streamRead(unwrapInboundIn(data), from: fiveTuple)
    }

    func channelReadComplete(context: ChannelHandlerContext) { relay.readComplete() }

    func channelInactive(context: ChannelHandlerContext) {
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

    /// One framed message from a TCP or TLS client.
    func streamRead(_ buffer: ByteBuffer, from fiveTuple: FiveTuple) {
        locked { tables, outbox in
            buffer.withUnsafeReadableBytes { bytes in
                tables.handle(
                    bytes, from: fiveTuple, replyFD: tables.serverFDs.first ?? -1, now: .now(), into: &outbox)
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
