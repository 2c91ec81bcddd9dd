import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1

/// Wraps every request: gives it a request id (logged, and returned as `X-Request-Id`), authenticates every `/v1/`
/// route (bearer token, or a stream ticket on `/v1/events`) and rate-limits it per user, rate-limits per client
/// address whatever carries no valid credentials (public routes, and failed authentication at five times the cost),
/// turns every error into the API's JSON error body, logs one line per request and records its latency.
///
/// The log line holds the method, the path without its query (stream tickets travel in the query) and the user
/// once known; never a header, so bearer tokens never reach the logs.
struct ObservabilityMiddleware: RouterMiddleware {
    typealias Context = SwitchboardContext
    let metrics: SignalingMetrics
    let authority: TokenAuthority
    let signaling: Signaling
    let rateLimiter: RateLimiter
    /// Per client address, for requests without valid credentials.
    let addressLimiter: RateLimiter
    /// Tokens a failed authentication takes from its address's bucket.
    static let failedAuthenticationCost: Double = 5

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        let start = ContinuousClock.now
        let requestID = context.id
        var response: Response
        var user: String?
        do {
            var context = context
            let address = ClientAddress.key(context.channel.remoteAddress)
            // By path segments, as the router matches them ("//v1/calls" is "/v1/calls" to it).
            if request.uri.path.split(separator: "/").first == "v1" {
                let identity: Identity
                do {
                    identity = try await authenticate(request)
                } catch {
                    if let wait = addressLimiter.take(
                        address, now: signaling.clock(), cost: Self.failedAuthenticationCost)
                    {
                        throw APIError.rateLimited(retryAfter: wait)
                    }
                    throw error
                }
                user = identity.user
                context.identity = identity
                if let wait = rateLimiter.take(identity.user, now: signaling.clock()) {
                    throw APIError.rateLimited(retryAfter: wait)
                }
            } else if let wait = addressLimiter.take(address, now: signaling.clock()) {
                throw APIError.rateLimited(retryAfter: wait)
            }
            response = try await next(request, context)
        } catch {
            let apiError = Self.apiError(for: error)
            if apiError.status == .internalServerError {
                context.logger.error("request failed", metadata: ["error": "\(error)"])
            } else if [APIError.clientGone.code, APIError.badFraming.code].contains(apiError.code) {
                context.logger.debug("request cut short", metadata: ["error": "\(error)"])
            }
            response = try apiError.response(from: request, context: context)
        }
        response.headers[HTTPField.Name("X-Request-Id")!] = requestID
        let route = context.endpointPath ?? "unmatched"
        let duration = ContinuousClock.now - start
        metrics.recordRequest(
            method: request.method.rawValue, route: route, status: response.status.code, duration: duration)
        var metadata: Logger.Metadata = [
            "method": .string(request.method.rawValue),
            "path": .string(request.uri.path), "status": .stringConvertible(response.status.code),
            "ms": .stringConvertible((Double(duration.nanoseconds) / 1e6 * 1000).rounded() / 1000),
        ]
        if let user { metadata["user"] = .string(user) }
        context.logger.info("request", metadata: metadata)
        return response
    }

    /// The identity of a bearer token, or of a stream ticket on `GET /v1/events` (for browsers' `EventSource`,
    /// which cannot send headers).
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

    static func apiError(for error: any Error) -> APIError {
        switch error {
        case let error as APIError:
            return error
        case is NIOTooManyBytesError:
            return APIError(.contentTooLarge, "body_too_large", "the request body is too large")
        case is HTTPParserError:
            // Malformed framing inside the body (a bad chunk size, say): the client's fault, not a server error.
            return APIError.badFraming
        case let error as HTTPError:
            switch error.status {
            case .notFound: return APIError(.notFound, "not_found", "no such route")
            case .methodNotAllowed: return APIError(.methodNotAllowed, "method_not_allowed", "method not allowed here")
            case .contentTooLarge: return APIError(.contentTooLarge, "body_too_large", "the request body is too large")
            case .badRequest: return .badRequest(error.body ?? "bad request")
            default:
                return APIError(
                    error.status, error.status.reasonPhrase.lowercased().replacingOccurrences(of: " ", with: "_"),
                    error.body ?? error.status.reasonPhrase)
            }
        default:
            return APIError(.internalServerError, "internal_error", "internal error")
        }
    }
}
