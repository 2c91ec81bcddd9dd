import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOHTTP2
import NIOSSL
import Relay
import Store
import SwitchboardAPI
import SwitchboardCore

/// The REST API v1 and the event stream, as `API.md` fixes them.
struct Routes: Sendable {
    let signaling: Signaling
    let metrics: SignalingMetrics
    let configuration: ServerConfiguration
    let relay: RelayServer?

    func register(on router: Router<SwitchboardContext>) {
        // Public: says whether this node can serve, and which kind of store it has, never where it is.
        router.get("/healthz") { _, _ in
            do {
                try await signaling.store.check()
                // A draining node tells its balancer to send new connections elsewhere.
                if signaling.isDraining {
                    return Self.json(
                        .serviceUnavailable,
                        HealthJSON(
                            status: "draining", store: .init(kind: signaling.store.kind, ok: true),
                            error: .init(code: "draining", message: "this node is draining")))
                }
                return Self.json(.ok, HealthJSON(status: "ok", store: .init(kind: signaling.store.kind, ok: true)))
            } catch {
                return Self.json(
                    .serviceUnavailable,
                    HealthJSON(
                        status: "unavailable", store: .init(kind: signaling.store.kind, ok: false),
                        error: .init(code: "store_unavailable", message: "the call store is unavailable")))
            }
        }
        // The OpenAPI 3.1 document of this API (docs/openapi.yaml), read once.
        let openAPI = Self.openAPIDocument
        router.get("/openapi.yaml") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "application/yaml; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: openAPI)))
        }
        router.get("/metrics") { _, _ in
            if let counts = try? await signaling.callCounts() { metrics.setCallCounts(counts) }
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: metrics.exposition())))
        }

        let v1 = router.group("v1")
        v1.post("stream-tickets") { request, context in
            let identity = try context.requireIdentity()
            let body = try await decode(TicketBody.self, request)
            let device = try resolveDevice(body.device, identity, required: false)
            let ticket = try await mapped { () async throws(CallError) in
                try await signaling.issueTicket(for: identity, device: device)
            }
            return Self.json(.created, TicketJSON(ticket: ticket, expiresIn: Int(configuration.ticketLifetime)))
        }
        v1.get("events") { request, context in try await events(request, context) }
        // HEAD answers what GET would, without opening a stream (which would tell the user's other devices).
        v1.head("events") { request, context in
            let identity = try context.requireIdentity()
            _ = try resolveDevice(request.uri.queryParameters["device"].map(String.init), identity, required: false)
            _ = try Self.watchesAll(request, identity)
            return Response(
                status: .ok, headers: [.contentType: "text/event-stream; charset=utf-8", .cacheControl: "no-store"])
        }
        RelayRoutes(settings: configuration.relay, relay: relay, signaling: signaling).register(on: v1)

        v1.post("calls") { request, context in
            let identity = try context.requireIdentity()
            guard !signaling.isDraining else {
                throw APIError(.serviceUnavailable, "draining", "this node is draining: place the call on another")
            }
            let body = try await decode(InviteBody.self, request)
            let device = try requiredDevice(body.device, identity)
            guard Identifier.isValid(body.to) else { throw APIError.badRequest("'to' must be a user id") }
            let call = try await mapped { () async throws(CallError) in
                try await signaling.invite(identity, device: device, to: body.to, offer: body.sdp, media: body.media)
            }
            return Self.json(.created, CallResponse(call: CallJSON(call)))
        }
        v1.get("calls") { request, context in
            let identity = try context.requireIdentity()
            var states: Set<CallState>?
            if let filter = request.uri.queryParameters["state"] {
                states = []
                for name in filter.split(separator: ",") {
                    guard let state = CallState(rawValue: String(name)) else {
                        throw APIError.badRequest("unknown state '\(name)'; use inviting, ringing, active or ended")
                    }
                    states?.insert(state)
                }
            }
            var limit = 100
            if let text = request.uri.queryParameters["limit"] {
                guard let value = Int(text), (1...500).contains(value) else {
                    throw APIError.badRequest("'limit' must be a whole number from 1 to 500")
                }
                limit = value
            }
            var before: HistoryCursor?
            if let text = request.uri.queryParameters["before"] {
                guard let cursor = HistoryCursor(token: String(text)) else {
                    throw APIError.badRequest("'before' is not a cursor this server handed out")
                }
                before = cursor
            }
            let calls = try await mapped { () async throws(CallError) in
                try await signaling.calls(for: identity, states: states, before: before, limit: limit)
            }
            // A full page may have more behind it: `next` is the cursor for the page after.
            let next = calls.count == limit ? calls.last.map { HistoryCursor($0).token } : nil
            return Self.json(.ok, CallListResponse(calls: calls.map { CallJSON($0) }, next: next))
        }
        v1.get("calls/:id") { _, context in
            let identity = try context.requireIdentity()
            let id = try callID(context)
            let call = try await mapped { () async throws(CallError) in try await signaling.call(id, for: identity) }
            return Self.json(
                .ok, CallResponse(call: CallJSON(call, timeline: true, legs: await signaling.mediaLegs(call))))
        }
        v1.post("calls/:id/ringing") { request, context in
            try await deviceAction(request, context) { id, identity, device async throws(CallError) in
                try await signaling.ring(id, identity, device: device)
            }
        }
        v1.post("calls/:id/decline") { request, context in
            try await deviceAction(request, context) { id, identity, device async throws(CallError) in
                try await signaling.decline(id, identity, device: device)
            }
        }
        v1.post("calls/:id/hangup") { request, context in
            try await deviceAction(request, context) { id, identity, device async throws(CallError) in
                try await signaling.hangup(id, identity, device: device)
            }
        }
        v1.post("calls/:id/accept") { request, context in
            let identity = try context.requireIdentity()
            let id = try callID(context)
            let body = try await decode(AcceptBody.self, request)
            let device = try requiredDevice(body.device, identity)
            let call = try await mapped { () async throws(CallError) in
                try await signaling.accept(id, identity, device: device, answer: body.sdp)
            }
            return Self.json(.ok, CallResponse(call: CallJSON(call)))
        }
        v1.post("calls/:id/signals") { request, context in
            let identity = try context.requireIdentity()
            let id = try callID(context)
            let body = try await decode(SignalBody.self, request)
            let device = try requiredDevice(body.device, identity)
            if let candidate = body.candidate {
                guard candidate.candidate.utf8.count <= 1024, (candidate.sdpMid?.utf8.count ?? 0) <= 64,
                    (candidate.usernameFragment?.utf8.count ?? 0) <= 256, (candidate.sdpMLineIndex ?? 0) >= 0
                else { throw APIError.badRequest("the candidate is malformed or too long") }
            }
            let signal = Signal(
                callID: id, fromUser: identity.user, fromDevice: device, kind: body.type, sdp: body.sdp,
                candidate: body.candidate)
            try await mapped { () async throws(CallError) in try await signaling.signal(signal) }
            return Self.json(.accepted, EmptyJSON())
        }
    }

    /// `GET /v1/events`: one SSE stream per device.
    private func events(_ request: Request, _ context: SwitchboardContext) async throws -> Response {
        let identity = try context.requireIdentity()
        var device = try resolveDevice(
            request.uri.queryParameters["device"].map(String.init), identity, required: false)
        if device == nil { device = "d-" + Base64URL.random(bytes: 6).replacingOccurrences(of: "_", with: "x") }
        let watchAll = try Self.watchesAll(request, identity)
        // Native EventSource sends Last-Event-ID itself when it reconnects; a page that had to open a new
        // EventSource (its ticket was spent) passes the id it saw as `lastEventId` instead.
        let lastEventID =
            request.headers[HTTPField.Name("Last-Event-ID")!]
            ?? request.uri.queryParameters["lastEventId"].map(String.init)
        let stream: EventStream
        switch await signaling.openStream(
            identity, device: device!, lastEventID: lastEventID, watchAll: watchAll, channel: context.channel)
        {
        case .opened(let opened): stream = opened
        case .shuttingDown: throw APIError(.serviceUnavailable, "shutting_down", "the server is shutting down")
        case .storeUnavailable: throw APIError(CallError.storeUnavailable)
        case .tooManyStreams:
            throw APIError(
                .tooManyRequests, "too_many_streams",
                "at most \(configuration.maxStreamsPerUser) streams per user; close one first")
        }
        // While it streams, the server reads nothing from the connection, and the listener allows half-closure, so a
        // client that goes away would only be noticed at the next heartbeat write. Watch for the peer's FIN instead
        // and end the stream as soon as its connection closes.
        // Over HTTP/2 the request's END_STREAM closes the stream's input at once, and a peer gone resets the stream
        // (closing its channel): no FIN to watch there.
        // (An HTTP/2 stream's parent is its connection, which holds the HTTP/2 handler; an HTTP/1 connection's parent
        // is the listening socket. getOption of an option a channel lacks traps, so it cannot tell them apart.)
        let isHTTP2Stream =
            (try? await context.channel.parent?.pipeline.containsHandler(type: NIOHTTP2Handler.self).get()) != nil
        if !isHTTP2Stream {
            context.channel.pipeline.addHandler(PeerClosedHandler(), position: .first).whenFailure { _ in
                stream.finish(.finished, final: nil)
            }
        }
        let signaling = self.signaling
        context.channel.closeFuture.whenComplete { _ in
            // Also when the response never started (the client left before its head was written).
            Task { signaling.closeStream(stream) }
        }
        let headers: HTTPFields = [
            .contentType: "text/event-stream; charset=utf-8",
            .cacheControl: "no-store",
            HTTPField.Name("X-Accel-Buffering")!: "no",
        ]
        if let handover = context.handover {
            // The connection's event-loop writer serves the stream: no task waits on it while it is open.
            handover.stream = stream
            return Response(status: .ok, headers: headers)
        }
        return Response(
            status: .ok, headers: headers,
            body: ResponseBody { writer in
                do {
                    while let frames = await stream.next() {
                        try await writer.write(contentsOf: frames)
                    }
                    signaling.closeStream(stream)
                    try await writer.finish(nil)
                    stream.markResponseComplete()
                } catch {
                    signaling.closeStream(stream)
                    throw error
                }
            })
    }

    private func deviceAction(
        _ request: Request,
        _ context: SwitchboardContext,
        _ action: (String, Identity, String) async throws(CallError) -> Call
    ) async throws -> Response {
        let identity = try context.requireIdentity()
        let id = try callID(context)
        let body = try await decode(DeviceBody.self, request)
        let device = try requiredDevice(body.device, identity)
        let call = try await mapped { () async throws(CallError) in try await action(id, identity, device) }
        return Self.json(.ok, CallResponse(call: CallJSON(call)))
    }

    private func decode<T: SwitchboardAPI.RequestBody>(_ type: T.Type, _ request: Request) async throws -> T {
        if let length = request.headers[.contentLength].flatMap(Int.init), length > configuration.maxBodyBytes {
            throw APIError(
                .contentTooLarge, "body_too_large",
                "the request body is larger than \(configuration.maxBodyBytes) bytes")
        }
        let buffer = try await request.collectAPIBody(upTo: configuration.maxBodyBytes)
        // No body at all reads as an empty object: `POST /v1/stream-tickets` needs none.
        return try JSON.decodeBody(type, from: buffer.readableBytes == 0 ? ByteBuffer(string: "{}") : buffer)
    }

    /// Whether an event-stream request asks for every call (`scope=all`, admins only).
    private static func watchesAll(_ request: Request, _ identity: Identity) throws(APIError) -> Bool {
        guard let scope = request.uri.queryParameters["scope"] else { return false }
        guard scope == "all" else { throw .badRequest("unknown scope '\(scope)'") }
        guard identity.isAdmin else { throw .forbidden("only admins can watch all calls") }
        return true
    }

    /// The device a request acts as: the body's, which must match the token's device claim when there is one.
    private func resolveDevice(_ given: String?, _ identity: Identity, required: Bool = true) throws(APIError)
        -> String?
    {
        if let given {
            guard Identifier.isValid(given) else {
                throw .badRequest("'device' must be 1-64 characters of [A-Za-z0-9._~-]")
            }
            if let bound = identity.device, bound != given {
                throw .forbidden("this token is bound to another device")
            }
            return given
        }
        if let bound = identity.device { return bound }
        if required { throw .badRequest("missing field 'device'") }
        return nil
    }

    private func requiredDevice(_ given: String?, _ identity: Identity) throws(APIError) -> String {
        try resolveDevice(given, identity, required: true)!
    }

    private func callID(_ context: SwitchboardContext) throws(APIError) -> String {
        guard let id = context.parameters.get("id"), Identifier.isValid(id) else {
            throw APIError(.notFound, "call_not_found", "no such call")
        }
        return id
    }

    @discardableResult
    private func mapped<T>(_ body: () async throws(CallError) -> T) async throws(APIError) -> T {
        do {
            return try await body()
        } catch {
            throw APIError(error)
        }
    }

    static func json(_ status: HTTPResponse.Status, _ value: some Encodable) -> Response {
        Response(
            status: status,
            headers: [.contentType: "application/json; charset=utf-8", .cacheControl: "no-store"],
            body: .init(byteBuffer: JSON.buffer(value)))
    }
}

extension Routes {
    /// The bundled `openapi.yaml` (empty if the bundle lacks it, which a test catches).
    static let openAPIDocument: [UInt8] = {
        guard let url = Bundle.module.url(forResource: "openapi", withExtension: "yaml"),
            let data = try? Data(contentsOf: url)
        else { return [] }
        return Array(data)
    }()
}

struct HealthJSON: Encodable {
    struct Store: Encodable {
        let kind: String
        let ok: Bool
    }

    var status: String
    var store: Store
    var error: APIError.ErrorBody.Detail?
}

struct TicketJSON: Encodable {
    let ticket: String
    let expiresIn: Int
}

extension SwitchboardContext {
    func requireIdentity() throws(APIError) -> Identity {
        guard let identity else { throw APIError.unauthorized }
        return identity
    }
}

/// Closes a connection whose peer closed its side: an SSE client that half-closes is gone.
final class PeerClosedHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = NIOAny

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .some(.inputClosed) = event as? ChannelEvent {
            context.close(promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }
}

extension Request {
    /// The whole body, at most `limit` bytes, for every route that reads one: a connection that goes away (or
    /// breaks its TLS) while the body is read is the client's doing, not a server error. Malformed framing is left
    /// to the middleware, which maps it wherever it is thrown.
    func collectAPIBody(upTo limit: Int) async throws -> ByteBuffer {
        var request = self
        do {
            return try await request.collectBody(upTo: limit)
        } catch is ChannelError {
            throw APIError.clientGone
        } catch is IOError {
            throw APIError.clientGone
        } catch is NIOSSLError {
            throw APIError.clientGone
        }
    }
}
