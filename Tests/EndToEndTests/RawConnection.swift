import Foundation
import NIOCore
import NIOPosix
import NIOSSL

/// A raw TCP connection (TLS optional) to a test server from a chosen loopback source address, for clients that
/// misbehave: connect and say nothing, send half a handshake, drip a header or a body, frame a message wrongly.
final class RawConnection: Sendable {
    let channel: any Channel
    private let collector: Collector

    /// With `stayOpen`, the client allows half-closure: when the server stops sending it keeps its side open, as a
    /// hostile client would, until the server closes the connection for good.
    static func open(
        port: Int, from source: String = "127.0.0.1", tls: Bool, stayOpen: Bool = false
    ) async throws -> RawConnection {
        let collector = Collector()
        let context: NIOSSLContext? =
            tls
            ? try {
                var configuration = TLSConfiguration.makeClientConfiguration()
                // The server under test is the one just started; its identity is not what these tests check.
                configuration.certificateVerification = .none
                return try NIOSSLContext(configuration: configuration)
            }() : nil
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(to: try SocketAddress(ipAddress: source, port: 0))
            .channelOption(ChannelOptions.allowRemoteHalfClosure, value: stayOpen)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let context {
                        try channel.pipeline.syncOperations.addHandler(
                            try NIOSSLClientHandler(context: context, serverHostname: nil))
                    }
                    try channel.pipeline.syncOperations.addHandler(CollectingHandler(collector: collector))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return RawConnection(channel: channel, collector: collector)
    }

    private init(channel: any Channel, collector: Collector) {
        self.channel = channel
        self.collector = collector
    }

    func send(_ text: String) async throws { try await send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes))
    }

    /// Everything received so far, as text.
    var received: String { collector.text }

    /// Whether the connection closed within `timeout` seconds (returns as soon as it does).
    func closes(within timeout: Double) async -> Bool {
        let channel = channel
        return await withCheckedContinuation { continuation in
            let loop = channel.eventLoop
            loop.execute {
                let done = NIOLoopBoundBox(false, eventLoop: loop)
                let timer = loop.scheduleTask(in: .nanoseconds(Int64(timeout * 1e9))) {
                    guard !done.value else { return }
                    done.value = true
                    continuation.resume(returning: false)
                }
                channel.closeFuture.whenComplete { _ in
                    guard !done.value else { return }
                    done.value = true
                    timer.cancel()
                    continuation.resume(returning: true)
                }
            }
        }
    }

    /// Waits until `text` has been received or the connection closed; returns what was received.
    func receive(until text: String, timeout: Double = 10) async -> String {
        let deadline = ContinuousClock.now + .seconds(timeout)
        while ContinuousClock.now < deadline {
            let seen = collector.text
            if seen.contains(text) || !channel.isActive { return seen }
            await collector.waitForMore(timeout: deadline - ContinuousClock.now)
        }
        return collector.text
    }

    func close() { channel.close(promise: nil) }

    final class Collector: Sendable {
        private let state = LockedBox<(bytes: [UInt8], waiters: [CheckedContinuation<Void, Never>])>(([], []))

        func append(_ bytes: [UInt8]) {
            let waiters = state.withLock { state in
                state.bytes += bytes
                defer { state.waiters = [] }
                return state.waiters
            }
            for waiter in waiters { waiter.resume() }
        }

        var text: String { String(decoding: state.withLock { $0.bytes }, as: UTF8.self) }

        /// Returns when more bytes arrive, the connection closes (``append`` of nothing), or after `timeout`.
        func waitForMore(timeout: Duration) async {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    await withCheckedContinuation { continuation in
                        self.state.withLock { $0.waiters.append(continuation) }
                    }
                }
                group.addTask { try? await Task.sleep(for: timeout) }
                await group.next()
                group.cancelAll()
                // Wake the first task if the timer won.
                self.append([])
            }
        }
    }

    private final class CollectingHandler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let collector: Collector
        init(collector: Collector) { self.collector = collector }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var buffer = unwrapInboundIn(data)
            collector.append(buffer.readBytes(length: buffer.readableBytes) ?? [])
        }

        func channelInactive(context: ChannelHandlerContext) {
            collector.append([])
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}
