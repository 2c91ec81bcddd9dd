import Hummingbird
import Logging
import NIOCore
import NIOHTTP1

/// Turns every error into the API's JSON error body `{"error": {"code", "message"}}`, logging the 500s (and, at
/// debug, requests cut short by their client).
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = SwitchboardContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        do {
            return try await next(request, context)
        } catch {
            return try Self.response(for: error, request: request, context: context)
        }
    }

    static func response(for error: any Error, request: Request, context: Context) throws -> Response {
        let apiError = apiError(for: error)
        if apiError.status == .internalServerError {
            context.logger.error("request failed", metadata: ["error": "\(error)"])
        } else if [APIError.clientGone.code, APIError.badFraming.code].contains(apiError.code) {
            context.logger.debug("request cut short", metadata: ["error": "\(error)"])
        }
        return try apiError.response(from: request, context: context)
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
