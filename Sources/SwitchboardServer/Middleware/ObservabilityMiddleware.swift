import Foundation
import HTTPTypes
import Hummingbird
import Logging

/// Gives every request a request id (logged, and returned as `X-Request-Id`), logs one line per request and records
/// its latency by route.
///
/// The log line holds the method, the path without its query (stream tickets travel in the query) and the user
/// once ``AuthenticationMiddleware`` knows it; never a header, so bearer tokens never reach the logs.
struct ObservabilityMiddleware: RouterMiddleware {
    typealias Context = SwitchboardContext
    let metrics: SignalingMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        let start = ContinuousClock.now
        var response: Response
        do {
            response = try await next(request, context)
        } catch {
            // ErrorMiddleware, inside this one, answers every error; this is for one thrown past it.
            response = try ErrorMiddleware.response(for: error, request: request, context: context)
        }
        response.headers[HTTPField.Name("X-Request-Id")!] = context.id
        let route = context.endpointPath ?? "unmatched"
        let duration = ContinuousClock.now - start
        metrics.recordRequest(
            method: request.method.rawValue, route: route, status: response.status.code, duration: duration)
        var metadata: Logger.Metadata = [
            "method": .string(request.method.rawValue),
            "path": .string(request.uri.path), "status": .stringConvertible(response.status.code),
            "ms": .stringConvertible((Double(duration.nanoseconds) / 1e6 * 1000).rounded() / 1000),
        ]
        if let user = context.requester.user { metadata["user"] = .string(user) }
        context.logger.info("request", metadata: metadata)
        return response
    }
}
