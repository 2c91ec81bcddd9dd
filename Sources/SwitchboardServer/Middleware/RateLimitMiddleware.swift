import Hummingbird

/// Rate-limits what carries no valid credentials, per client address (``ClientAddress``): a public route costs one
/// token, and a failed authentication five, so that guessing tokens is slower than using them. Sits outside
/// ``AuthenticationMiddleware`` to see its refusals.
struct AddressRateLimitMiddleware: RouterMiddleware {
    typealias Context = SwitchboardContext
    let limiter: RateLimiter
    let signaling: Signaling
    /// Paths no bucket counts: the web client's files, served from memory at the cost of a 429. A page loads a
    /// dozen of them at once, and many people behind one NAT address, or one person opening ten tabs, would
    /// otherwise be refused the page.
    var exempt: Set<String> = []
    /// Tokens a failed authentication takes from its address's bucket.
    static let failedAuthenticationCost: Double = 5

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        let address = ClientAddress.key(context.channel.remoteAddress)
        if exempt.contains(request.uri.path) { return try await next(request, context) }
        guard AuthenticationMiddleware.isAPI(request) else {
            if let wait = limiter.take(address, now: signaling.clock()) { throw APIError.rateLimited(retryAfter: wait) }
            return try await next(request, context)
        }
        do {
            return try await next(request, context)
        } catch let error as APIError where error.code == APIError.unauthorized.code && context.requester.user == nil {
            if let wait = limiter.take(address, now: signaling.clock(), cost: Self.failedAuthenticationCost) {
                throw APIError.rateLimited(retryAfter: wait)
            }
            throw error
        }
    }
}

/// Rate-limits each authenticated user, inside ``AuthenticationMiddleware``.
struct UserRateLimitMiddleware: RouterMiddleware {
    typealias Context = SwitchboardContext
    let limiter: RateLimiter
    let signaling: Signaling

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        if let identity = context.identity, let wait = limiter.take(identity.user, now: signaling.clock()) {
            throw APIError.rateLimited(retryAfter: wait)
        }
        return try await next(request, context)
    }
}
