import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTPTypes

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
/// Every other request goes on to Hummingbird. On HTTP/1.1 the handler sits where Hummingbird's `NIOAsyncChannel`
/// would: a connection whose first request is anything else gets its `NIOAsyncChannel` then (handed to the
/// connection's task through `mode`'s promise) and the handler leaves. A connection that served a stream this way
/// closes when the stream ends, as it has no task to serve another request.
final class EventStreamDispatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundOut = HTTPResponsePart
    typealias Connection = NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>
    typealias Responder = @Sendable (Request, SwitchboardContext) async throws -> Response

    /// The protocol of the channel it sits in.
    enum Mode {
        /// An HTTP/1.1 connection: the promise gets the `NIOAsyncChannel` for Hummingbird's task, or nil when the
        /// connection needs none (it serves an event stream, or closed first).
        case http1(EventLoopPromise<Connection?>)
        /// One HTTP/2 stream (Hummingbird's task and `NIOAsyncChannel` exist already, after this handler).
        case http2
    }

    private enum State {
        /// Waiting for a request's head.
        case idle
        /// `GET /v1/events` read, waiting for the end of its request.
        case reading(HTTPRequest)
        /// The router answers it, in its own task.
        case opening
        case streaming(EventStream)
        /// Anything else: the parts go on (HTTP/2; an HTTP/1.1 handler leaves the pipeline instead).
        case passing
        case done
    }

    private let mode: Mode
    /// The HTTP/1.1 connection's promise, until kept.
    private var promise: EventLoopPromise<Connection?>?
    private let responder: Responder
    private let logger: Logger
    private var state = State.idle
    private var context: ChannelHandlerContext?

    init(mode: Mode, responder: @escaping Responder, logger: Logger) {
        self.mode = mode
        if case .http1(let promise) = mode { self.promise = promise }
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
        self.context = nil
        decide(nil)
        if case .passing = state { return }
        state = .done
    }

    func channelInactive(context: ChannelHandlerContext) {
        decide(nil)
        state = .done
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            switch state {
            case .reading, .opening, .streaming, .done:
                // Hummingbird's connection-state handler after this one never saw this request and would take the
                // stream for idle and close it: the stream ends with the shutdown's final event instead.
                if case .http2 = mode { return }
            case .idle, .passing:
                break
            }
        }
        context.fireUserInboundEventTriggered(event)
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

    /// Goes on to Hummingbird with `first` (what came in): on HTTP/1.1, the connection gets its `NIOAsyncChannel`
    /// and this handler leaves.
    private func pass(context: ChannelHandlerContext, first: (ChannelHandlerContext) -> Void) {
        state = .passing
        guard case .http1 = mode else {
            first(context)
            return
        }
        do {
            let connection = try Connection(
                wrappingChannelSynchronously: context.channel, configuration: .init(isOutboundHalfClosureEnabled: true))
            decide(connection)
            first(context)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        } catch {
            logger.debug("cannot serve the connection: \(error)")
            decide(nil)
            context.close(promise: nil)
        }
    }

    /// Hands the HTTP/1.1 connection's task its `NIOAsyncChannel`, or nil (it has none to serve), once.
    private func decide(_ connection: Connection?) {
        promise?.succeed(connection)
        promise = nil
    }

    private func open(_ head: HTTPRequest, context: ChannelHandlerContext) {
        state = .opening
        // The connection's task has nothing to serve: it ends now rather than wait for the stream.
        decide(nil)
        let opening = Opening(
            head: head, channel: context.channel, handler: NIOLoopBound(self, eventLoop: context.eventLoop),
            responder: responder, logger: logger)
        Task { await opening.run() }
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
            logger.debug("Unrecognised Error", metadata: ["error.type": "\(error)"])
            response = Response(status: .internalServerError)
        }
        response.headers[.date] = HTTPDate.now()
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
        guard let stream = answer.stream else {
            var head = answer.head
            if case .http1 = mode { head.headerFields[.connection] = "close" }
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            if let body = answer.body, body.readableBytes > 0 {
                context.write(wrapOutboundOut(.body(body)), promise: nil)
            }
            finish(context: context)
            return
        }
        context.write(wrapOutboundOut(.head(answer.head)), promise: nil)
        context.flush()
        state = .streaming(stream)
        drain()
    }

    /// Writes the stream's queued frames while the connection takes them; when none are queued, asks to be told.
    private func drain() {
        guard case .streaming(let stream) = state, let context else { return }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        while context.channel.isWritable {
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
        if case .http1 = mode {
            let channel = context.channel
            written.futureResult.whenComplete { _ in channel.close(promise: nil) }
        }
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
