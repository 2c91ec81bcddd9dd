public import HTTPTypes
public import Hummingbird
import NIOCore
import SwitchboardCore

/// An error the API returns: a status and `{"error": {"code": "...", "message": "..."}}`.
public struct APIError: HTTPResponseError, Sendable {
    public let status: HTTPResponse.Status
    public let code: String
    public let message: String
    public var headers: HTTPFields = [:]

    public init(_ status: HTTPResponse.Status, _ code: String, _ message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        Response(status: status, headers: fields, body: .init(byteBuffer: body))
    }

    /// The response's headers: the error's own, and those of every JSON error.
    var fields: HTTPFields {
        var fields = headers
        fields[.contentType] = "application/json; charset=utf-8"
        fields[.cacheControl] = "no-store"
        return fields
    }

    /// `{"error": {"code", "message"}}`.
    var body: ByteBuffer { ByteBuffer(bytes: JSON.encode(ErrorBody(error: .init(code: code, message: message)))) }

    struct ErrorBody: Encodable {
        struct Detail: Encodable {
            let code: String
            let message: String
        }
        let error: Detail
    }

    static func badRequest(_ message: String) -> APIError { APIError(.badRequest, "bad_request", message) }
    static let unauthorized: APIError = {
        var error = APIError(.unauthorized, "unauthorized", "a valid bearer token is required")
        error.headers[.wwwAuthenticate] = "Bearer"
        return error
    }()
    static func forbidden(_ message: String) -> APIError { APIError(.forbidden, "forbidden", message) }
    static func notFound(_ message: String) -> APIError { APIError(.notFound, "not_found", message) }
    /// The request's HTTP framing is malformed (a bad chunk size, say).
    static let badFraming = APIError(.badRequest, "bad_framing", "malformed HTTP message framing")
    /// The connection closed while the request body was being read; nobody is left to read the answer.
    static let clientGone = APIError(
        .badRequest, "client_gone", "the connection closed before the request was complete")
    static let rateLimited = rateLimited(retryAfter: 1)
    static func rateLimited(retryAfter seconds: Int, _ message: String = "too many requests; slow down") -> APIError {
        var error = APIError(.tooManyRequests, "rate_limited", message)
        error.headers[.retryAfter] = String(seconds)
        return error
    }

    /// The API error for a refusal of the call state machine.
    init(_ error: CallError) {
        switch error.code {
        case .callNotFound: self.init(.notFound, error.code.rawValue, error.message)
        case .invalidTransition: self.init(.conflict, error.code.rawValue, error.message)
        case .forbidden: self.init(.forbidden, error.code.rawValue, error.message)
        case .mediaUnavailable, .storeUnavailable:
            self.init(.serviceUnavailable, error.code.rawValue, error.message)
        default: self.init(.badRequest, error.code.rawValue, error.message)
        }
    }
}
