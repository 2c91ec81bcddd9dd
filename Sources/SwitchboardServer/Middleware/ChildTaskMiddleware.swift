import Hummingbird

/// Runs the rest of the chain (middleware, router, route) in a child task, whose task-local stack is freed when the
/// response is made.
///
/// Swift keeps a task's stack slabs, once allocated, until the task ends. Hummingbird serves a connection (or an
/// HTTP/2 stream) from one task, and an event stream's response lasts as long as the stream: without this, every
/// open stream would hold the high-water mark of the whole chain's async frames (about 18 KiB per stream, measured
/// with heaptrack at 2,000 streams) for its lifetime, though only the body writer's few frames are still in use.
/// Most streams no longer run in such a task (``EventStreamDispatcher`` serves them from the event loop); one
/// opened after another request on the same HTTP/1.1 connection still does.
struct ChildTaskMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        try await withoutActuallyEscaping(next) { next in
            // The parent does nothing but wait for the child, so `next` is never used from two tasks at once.
            let chain = Chain(next: next)
            async let response = chain.next(request, context)
            return try await response
        }
    }

    private struct Chain: @unchecked Sendable {
        let next: (Request, Context) async throws -> Response
    }
}
