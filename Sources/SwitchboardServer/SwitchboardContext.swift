public import Hummingbird
public import NIOCore

/// The request context of every route: Hummingbird's core storage, the connection's channel (so a slow SSE
/// reader's connection can be closed) and, once authenticated, who is asking.
public struct SwitchboardContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let channel: any Channel
    public var identity: Identity?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
        self.identity = nil
    }
}
