import DequeModule
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTPTypes
import Synchronization

/// Serves `GET /v1/events` without a task per open stream.
///
/// Hummingbird serves an HTTP/1.1 connection, or an HTTP/2 stream, from one task, and that task lives as long as
/// its connection. Swift keeps a task's stack slabs until the task ends, so every open event stream held the
/// high-water mark of the task's async frames (about 15 KiB, measured with heaptrack) for its whole life. Here the
/// request still goes through the whole router (every middleware: the log line, the rate limits, authentication),
/// from a task that ends as soon as the stream is open; the route leaves the stream in the context's
/// ``EventStreamHandover`` and this handler writes its frames from the event loop, as they are queued and as the
/// connection (or the HTTP/2 stream's flow-control window) takes them.
///
/// Every other request goes on to Hummingbird. The handler sits where Hummingbird's `NIOAsyncChannel` would: an
/// HTTP/1.1 connection, or an HTTP/2 stream, whose first request is anything else gets its `NIOAsyncChannel` then
/// (handed to a Hummingbird task through `connection`) and the handler leaves. An HTTP/1.1 connection that served a
/// stream this way closes when the stream ends, as it has no task to serve another request.
final class EventStreamDispatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundOut = HTTPResponsePart
    typealias Connection = NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>
    typealias Responder = @Sendable (Request, SwitchboardContext) async throws -> Response

    /// The protocol of the channel it sits in: an HTTP/1.1 connection, or one HTTP/2 stream.
    enum Version {
        case http1, http2
    }

    private enum State {
        /// Waiting for a request's head.
        case idle
        /// `GET /v1/events` read, waiting for the end of its request.
        case reading(HTTPRequest)
        /// The router answers it, in its own task.
        case opening
        case streaming(EventStream)
        /// Anything else: Hummingbird serves it (the handler is leaving the pipeline).
        case passing
        case done
    }

    private let version: Version
    /// The promise of a `NIOAsyncChannel` for Hummingbird's task, until kept: nil when the channel needs none (it
    /// serves an event stream, or closed first).
    private var promise: EventLoopPromise<Connection?>?
    private let responder: Responder
    private let logger: Logger
    private let gate: OpeningGate
    private var state = State.idle
    private var context: ChannelHandlerContext?

    init(
        version: Version, connection: EventLoopPromise<Connection?>, responder: @escaping Responder,
        gate: OpeningGate, logger: Logger
    ) {
        self.gate = gate
        self.version = version
        self.promise = connection
        self.responder = responder
        self.logger = logger
    }

    /// Whether `head` opens an event stream: `GET /v1/events`, with any query.
    static func opensEventStream(_ head: HTTPRequest) -> Bool {
        guard head.method == .get, let path = head.path else { return false }
        return path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first == "/v1/events"
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        // Without a context nothing more is written (``opened(_:)`` and ``drain()`` check it).
        self.context = nil
        decide(nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        decide(nil)
        state = .done
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { drain() }
        context.fireChannelWritabilityChanged()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        switch (state, part) {
        case (.idle, .head(let head)) where Self.opensEventStream(head):
            state = .reading(head)
        case (.idle, _):
            pass(data, context: context)
        case (.passing, _):
            context.fireChannelRead(data)
        case (.reading(let head), .end):
            open(head, context: context)
        case (.reading, .body), (.opening, .body), (.opening, .end), (.streaming, .body), (.streaming, .end),
            (.done, _):
            // A GET's body, whatever it holds, is not read.
            break
        case (_, .head):
            // A request pipelined behind an event stream: it would never be answered.
            state = .done
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch state {
        case .idle:
            // A malformed first request: Hummingbird answers it (400) and closes.
            pass(context: context) { $0.fireErrorCaught(error) }
        case .passing:
            context.fireErrorCaught(error)
        case .reading, .opening, .streaming, .done:
            state = .done
            context.close(promise: nil)
        }
    }

    /// Anything but an event stream goes on to Hummingbird.
    private func pass(_ data: NIOAny, context: ChannelHandlerContext) {
        pass(context: context) { $0.fireChannelRead(data) }
    }

    /// Goes on to Hummingbird with `first` (what came in): the channel gets its `NIOAsyncChannel` (as Hummingbird
    /// sets it up for each protocol) and this handler leaves.
    private func pass(context: ChannelHandlerContext, first: (ChannelHandlerContext) -> Void) {
        state = .passing
        do {
            let connection = try Connection(
                wrappingChannelSynchronously: context.channel,
                configuration: .init(isOutboundHalfClosureEnabled: version == .http1))
            decide(connection)
            first(context)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        } catch {
            logger.debug("cannot serve the connection: \(error)")
            decide(nil)
            context.close(promise: nil)
        }
    }

    /// Hands Hummingbird's task its `NIOAsyncChannel`, or nil (it has nothing to serve), once.
    private func decide(_ connection: Connection?) {
        promise?.succeed(connection)
        promise = nil
    }

    private func open(_ head: HTTPRequest, context: ChannelHandlerContext) {
        state = .opening
        // Hummingbird's task has nothing to serve: it ends now rather than wait for the stream.
        decide(nil)
        let opening = Opening(
            head: head, channel: context.channel, handler: NIOLoopBound(self, eventLoop: context.eventLoop),
            responder: responder, logger: logger)
        let gate = gate
        let address = ClientAddress.key(context.channel.remoteAddress)
        let admitted = gate.enter(from: address) {
            Task {
                // A client that left while its open waited costs nothing more.
                if opening.channel.isActive { await opening.run() }
                gate.leave(from: address)
            }
        }
        guard admitted else {
            // One address cannot fill the queue that every other client's opens wait in.
            let refusal = APIError.rateLimited(
                retryAfter: 1, "too many event streams from this address are waiting to open; retry in a second")
            let body = refusal.body
            var head = HTTPResponse(status: refusal.status, headerFields: refusal.fields)
            head.headerFields[.contentLength] = String(body.readableBytes)
            opened(Answer(head: head, body: body))
            return
        }
    }

    /// What the task that opens a stream needs.
    private struct Opening: Sendable {
        let head: HTTPRequest
        let channel: any Channel
        let handler: NIOLoopBound<EventStreamDispatcher>
        let responder: Responder
        let logger: Logger

        func run() async {
            let answer = await EventStreamDispatcher.respond(
                head, channel: channel, responder: responder, logger: logger)
            let handler = handler
            channel.eventLoop.execute { handler.value.opened(answer) }
        }
    }

    /// The router's answer: the stream it opened, or the whole response (an error) when it opened none.
    private struct Answer: Sendable {
        var head: HTTPResponse
        var body: ByteBuffer?
        var stream: EventStream?
    }

    private static func respond(_ head: HTTPRequest, channel: any Channel, responder: Responder, logger: Logger) async
        -> Answer
    {
        var logger = logger
        logger[metadataKey: "hb.request.id"] = .stringConvertible(RequestID())
        var context = SwitchboardContext(source: .init(channel: channel, logger: logger))
        let handover = EventStreamHandover()
        context.handover = handover
        var response: Response
        do {
            response = try await responder(Request(head: head, body: .init(buffer: ByteBuffer())), context)
        } catch {
            logger.debug("unrecognised error", metadata: ["error.type": "\(error)"])
            response = Response(status: .internalServerError)
        }
        if let stream = handover.stream {
            // The stream's length is unknown: not the empty placeholder body's.
            response.headers[.contentLength] = nil
            return Answer(head: response.head, stream: stream)
        }
        let body = BodyCollector()
        do {
            try await response.body.write(body)
        } catch {
            logger.debug("cannot write the response: \(error)")
        }
        return Answer(head: response.head, body: body.buffer)
    }

    private func opened(_ answer: Answer) {
        guard case .opening = state, let context else {
            // The connection closed meanwhile: its close ends the stream.
            answer.stream?.finish(.finished, final: nil)
            return
        }
        var head = answer.head
        head.headerFields[.date] = HTTPDate.now()
        // The connection closes after this response (a refusal, or the stream's end): a client must not reuse it.
        if version == .http1 { head.headerFields[.connection] = "close" }
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        guard let stream = answer.stream else {
            if let body = answer.body, body.readableBytes > 0 {
                context.write(wrapOutboundOut(.body(body)), promise: nil)
            }
            finish(context: context)
            return
        }
        context.flush()
        state = .streaming(stream)
        drain()
    }

    /// Writes the stream's queued frames while the connection takes them; when none are queued, asks to be told.
    private func drain() {
        guard case .streaming(let stream) = state, let context else { return }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        // A flush may close the channel at once (a write error): the state says so before the next turn.
        while case .streaming = state, context.channel.isWritable {
            switch stream.poll(notify: { eventLoop.execute { handler.value.drain() } }) {
            case .frames(let frames):
                for frame in frames { context.write(wrapOutboundOut(.body(frame)), promise: nil) }
                context.flush()
            case .waiting:
                return
            case .ended:
                stream.markResponseComplete()
                finish(context: context)
                return
            }
        }
    }

    /// Ends the response; an HTTP/1.1 connection closes after it (it has no task to read another request), an
    /// HTTP/2 stream closes by itself.
    private func finish(context: ChannelHandlerContext) {
        state = .done
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: written)
        if version == .http1 {
            let channel = context.channel
            written.futureResult.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}

/// Bounds the event streams being opened at once, server-wide.
///
/// Opening a stream is the costly part of its life: the whole middleware chain, authentication, the store's
/// catch-up read, each in a task with its own stack. When thousands of clients reconnect at once (a node restarted,
/// a network came back), running every open at the same time buys no throughput on a few cores, and its peak of
/// short-lived memory stays behind as allocator fragmentation, in the RSS of every stream that follows. Past the
/// bound, opens wait their turn in arrival order.
package final class OpeningGate: Sendable {
    package let limit: Int
    /// Opens from one client address (an IPv6 /64) running or waiting at once; more are refused (429).
    package let perAddress: Int
    private struct State {
        var running = 0
        var waiting = Deque<@Sendable () -> Void>()
        var unanswered: [String: Int] = [:]
    }
    private let state = Mutex(State())

    package init(limit: Int, perAddress: Int) {
        self.limit = max(1, limit)
        self.perAddress = max(1, perAddress)
    }

    /// Runs `start` now if under the bound, or once an earlier open leaves; false (and `start` never runs) when
    /// `address` already has ``perAddress`` opens running or waiting.
    package func enter(from address: String, _ start: @escaping @Sendable () -> Void) -> Bool {
        let now = state.withLock { state -> Bool? in
            let unanswered = state.unanswered[address, default: 0]
            guard unanswered < perAddress else { return nil }
            state.unanswered[address] = unanswered + 1
            guard state.running < limit else {
                state.waiting.append(start)
                return false
            }
            state.running += 1
            return true
        }
        guard let now else { return false }
        if now { start() }
        return true
    }

    /// An open from `address` has ended: the next waiting one starts.
    package func leave(from address: String) {
        let next = state.withLock { state -> (@Sendable () -> Void)? in
            let left = state.unanswered[address, default: 1] - 1
            state.unanswered[address] = left > 0 ? left : nil
            guard let next = state.waiting.popFirst() else {
                state.running -= 1
                return nil
            }
            return next
        }
        next?()
    }
}

/// Collects a short response body (an error's JSON) to write from the event loop.
private final class BodyCollector: ResponseBodyWriter, @unchecked Sendable {
    // Used by one task at a time: the one that writes the response.
    var buffer = ByteBuffer()

    func write(_ buffer: ByteBuffer) async throws {
        var buffer = buffer
        self.buffer.writeBuffer(&buffer)
    }

    func finish(_ trailingHeaders: HTTPFields?) async throws {}
}

/// The `Date` header's value (RFC 9110 §5.6.7, IMF-fixdate), as Hummingbird's own responses carry it.
enum HTTPDate {
    static func now() -> String {
        var seconds = time(nil)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let date = "\(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(1900 + parts.tm_year)"
        let time = "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))"
        return "\(days[Int(parts.tm_wday)]), \(date) \(time) GMT"
    }
}
