public import Hummingbird
public import NIOCore
import Synchronization

/// The request context of every route: Hummingbird's core storage, the connection's channel (so a slow SSE
/// reader's connection can be closed) and, once authenticated, who is asking.
public struct SwitchboardContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let channel: any Channel
    public var identity: Identity?
    /// What the middleware outside authentication learns from it (a context is a value: the copy a middleware
    /// hands on is not the one it holds).
    let requester = Requester()
    /// Set when the connection's own event-loop writer serves `GET /v1/events` (``EventStreamDispatcher``): the
    /// route leaves its opened stream here instead of writing it from the request's task.
    var handover: EventStreamHandover?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
        self.identity = nil
    }
}

/// The authenticated user of one request, for its log line and the address rate limit.
final class Requester: Sendable {
    private let state = Mutex<String?>(nil)

    var user: String? {
        get { state.withLock { $0 } }
        set { state.withLock { $0 = newValue } }
    }
}

/// Where `GET /v1/events` leaves the stream it opened, for the ``EventStreamDispatcher`` that asked.
final class EventStreamHandover: Sendable {
    private let state = Mutex<EventStream?>(nil)

    var stream: EventStream? {
        get { state.withLock { $0 } }
        set { state.withLock { $0 = newValue } }
    }
}
