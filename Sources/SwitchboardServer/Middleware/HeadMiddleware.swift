import HTTPTypes
import Hummingbird

/// A HEAD request's response, whatever it is (an error included), carries its header and no body. The router answers
/// HEAD wherever GET is routed, but an error (401, 404, 429) is made further out with a JSON body: sent after a HEAD,
/// those bytes would be read over HTTP/1.1 as the start of the next response, and over HTTP/2 break the stream's
/// declared length, so that the server resets it.
struct HeadMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        let response = try await next(request, context)
        return request.method == .head ? response.createHeadResponse() : response
    }
}
