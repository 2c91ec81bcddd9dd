import Foundation
import NIOCore
import NIOPosix
import RelayCore
import STUN
import Synchronization

/// A TURN client over one TCP connection (RFC 8656 §3.1), written for tests: it frames STUN by its length.
final class TURNConnection: Sendable {
    private let channel: any Channel
    /// Whole STUN messages as they arrive; finished when the server closes the connection.
    private let messages: AsyncStream<[UInt8]>
    /// The long-term credential of the last Allocate: its key, realm and nonce.
    private let credential = Mutex<(key: [UInt8], attributes: [STUNAttribute])?>(nil)

    private init(channel: any Channel, messages: AsyncStream<[UInt8]>) {
        self.channel = channel
        self.messages = messages
    }

    /// `receiveBuffer` sets SO_RCVBUF (a small one keeps the kernel from absorbing much of what the server sends).
    static func open(port: Int, receiveBuffer: Int? = nil) async throws -> TURNConnection {
        let framer = Framer()
        var bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        if let receiveBuffer {
            bootstrap = bootstrap.channelOption(.socketOption(.so_rcvbuf), value: SocketOptionValue(receiveBuffer))
        }
        let channel =
            try await bootstrap
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(framer) }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return TURNConnection(channel: channel, messages: framer.stream)
    }

    func send(_ bytes: [UInt8]) async throws { try await channel.writeAndFlush(ByteBuffer(bytes: bytes)) }

    /// The next STUN message (5 s at most), or nil when the connection ended first.
    func receive() async throws -> STUNMessage? {
        try await nextElement(of: messages, timeout: 5).map { try STUNMessage(decoding: $0) }
    }

    func binding() async throws -> STUNMessage? {
        try await send(STUNMessage(type: .bindingRequest, transactionID: .random()).encode(fingerprint: true))
        return try await receive()
    }

    /// Allocates with long-term credentials (the 401 first) and returns the relayed address.
    func allocate(username: String, password: String) async throws -> TransportAddress {
        guard let response = try await allocateResponse(username: username, password: password),
            let relayed = try response.xorRelayedAddress
        else {
            throw TestFailure("the Allocate did not succeed")
        }
        return relayed
    }

    /// The answer to an authenticated Allocate (after the 401 that gives the nonce), nil if none came.
    func allocateResponse(username: String, password: String) async throws -> STUNMessage? {
        let type = STUNMessageType(method: .allocate, class: .request)
        try await send(
            STUNMessage(type: type, transactionID: .random(), attributes: [.requestedTransport(17)]).encode())
        guard let challenge = try await receive(), let realm = try challenge.realm, let nonce = try challenge.nonce
        else { throw TestFailure("no 401 challenge") }
        let key = LongTermCredential.key(username: username, realm: realm, password: password)
        let request = STUNMessage(
            type: type, transactionID: .random(),
            attributes: [.requestedTransport(17), .username(username), .realm(realm), .nonce(nonce)])
        try await send(try request.encode(integrity: key, fingerprint: true))
        let response = try await receive()
        credential.withLock { $0 = (key, [.username(username), .realm(realm), .nonce(nonce)]) }
        return response
    }

    /// A CreatePermission for `peer` with the Allocate's credential; true when it succeeded.
    func createPermission(_ peer: TransportAddress) async throws -> Bool {
        try await send(try createPermissionRequest(peer))
        return try await receive()?.type.messageClass == .successResponse
    }

    /// The bytes of a CreatePermission for `peer` with the Allocate's credential.
    func createPermissionRequest(_ peer: TransportAddress) throws -> [UInt8] {
        guard let (key, attributes) = credential.withLock({ $0 }) else { throw TestFailure("no allocation") }
        let transaction = TransactionID.random()
        let request = STUNMessage(
            type: STUNMessageType(method: .createPermission, class: .request), transactionID: transaction,
            attributes: [.xorPeerAddress(peer, transactionID: transaction)] + attributes)
        return try request.encode(integrity: key, fingerprint: true)
    }

    /// Stops reading from the socket: what the server sends piles up in the kernel, then in the server.
    func stopReading() async throws { try await channel.setOption(.autoRead, value: false).get() }

    func close() async throws { try await channel.close() }

    /// Waits (5 s at most) for the server to close the connection, reading past anything it still sends.
    func waitForClose() async throws {
        while try await nextElement(of: messages, timeout: 5) != nil {}
    }

    /// Cuts the byte stream into STUN messages.
    private final class Framer: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let stream: AsyncStream<[UInt8]>
        private let continuation: AsyncStream<[UInt8]>.Continuation
        private let pending = Mutex(ByteBuffer())

        init() { (stream, continuation) = AsyncStream.makeStream() }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var chunk = unwrapInboundIn(data)
            pending.withLock { pending in
                pending.writeBuffer(&chunk)
                while pending.readableBytes >= 20,
                    let length = pending.getInteger(at: pending.readerIndex + 2, as: UInt16.self),
                    pending.readableBytes >= 20 + Int(length),
                    let message = pending.readBytes(length: 20 + Int(length))
                {
                    continuation.yield(message)
                }
            }
        }

        func channelInactive(context: ChannelHandlerContext) { continuation.finish() }
    }
}

extension STUNMessage {
    /// The ERROR-CODE's number, if the message has one.
    var code: Int? { (try? errorCode)?.code }
}
