import Hummingbird

/// Authenticates every `/v1/` route: a bearer token (Switchboard's own or the identity provider's, see
/// ``TokenAuthority``), or a stream ticket on `GET /v1/events` (for browsers' `EventSource`, which cannot send
/// headers). The identity goes into the context for the routes, and the user into the request's log line.
struct AuthenticationMiddleware: RouterMiddleware {
    typealias Context = SwitchboardContext
    let authority: TokenAuthority
    let signaling: Signaling

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        guard Self.isAPI(request) else { return try await next(request, context) }
        var context = context
        let identity = try await authenticate(request)
        context.identity = identity
        context.requester.user = identity.user
        return try await next(request, context)
    }

    /// Whether the request is for a `/v1/` route, by path segments as the router matches them ("//v1/calls" is
    /// "/v1/calls" to it).
    static func isAPI(_ request: Request) -> Bool {
        request.uri.path.split(separator: "/").first == "v1"
    }

    private func authenticate(_ request: Request) async throws(APIError) -> Identity {
        if let header = request.headers[.authorization] {
            let prefix = "Bearer "
            guard header.count > prefix.count, header.prefix(prefix.count).lowercased() == prefix.lowercased(),
                case .success(let identity) = await authority.verify(
                    String(header.dropFirst(prefix.count)), now: signaling.clock())
            else { throw APIError.unauthorized }
            return identity
        }
        if request.uri.path == "/v1/events", request.method == .get,
            let ticket = request.uri.queryParameters["ticket"],
            let redeemed = await signaling.redeemTicket(String(ticket))
        {
            let identity = redeemed.identity
            return Identity(user: identity.user, isAdmin: identity.isAdmin, device: redeemed.device ?? identity.device)
        }
        throw APIError.unauthorized
    }
}
