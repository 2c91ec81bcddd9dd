public import Foundation
public import Hummingbird
import HummingbirdCore
import HummingbirdTLS
public import Logging
public import Media
import NIOCore
import NIOSSL
public import Relay
public import ServiceLifecycle
import Store
import Synchronization

/// The Switchboard server process: the HTTPS signaling plane, its timers and the TURN relay, as services of one
/// service group with one shutdown path.
public struct SwitchboardServer: Sendable {
    public let configuration: ServerConfiguration
    public let logger: Logger
    let signaling: Signaling
    let metrics: SignalingMetrics
    /// The TURN relay, when configured.
    public let relay: RelayServer?
    /// The secure relay's media endpoint, when configured.
    public let media: MediaServer?
    /// The connection caps every listener shares.
    let connectionLimiter: ConnectionLimiter
    /// The certificate and key every TLS listener presents, reloaded on SIGHUP.
    let identity: ServerIdentity
    /// Verifies bearer tokens (and issues the web client's dev tokens).
    let authority: TokenAuthority

    /// TLS 1.2+ with forward-secret AEAD suites only (Mozilla "intermediate"); TLS 1.3 suites are always on.
    static let cipherSuites = [
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    ].joined(separator: ":")

    public init(
        configuration: ServerConfiguration, logger: Logger, clock: @escaping @Sendable () -> Date = { Date() }
    ) async throws {
        self.configuration = configuration
        self.logger = logger
        let metrics = SignalingMetrics()
        self.metrics = metrics
        let media = try configuration.media.map {
            try MediaServer(
                configuration: $0, metricsFactory: metrics.factory, logger: Logger(label: "switchboard.media"))
        }
        self.media = media
        let store: any CallStore
        switch configuration.store {
        case .memory:
            store = MemoryCallStore(
                configuration: Signaling.registryConfiguration(configuration), backlogSize: configuration.backlogSize,
                encode: Signaling.envelopes)
        case .sqlite(let path):
            do {
                store = try SQLiteCallStore(
                    path: path, configuration: Signaling.registryConfiguration(configuration),
                    encode: Signaling.envelopes)
            } catch {
                throw ServerError("cannot open the SQLite store \(path): \(error)")
            }
        case .postgres(let url):
            do {
                store = try await PostgresCallStore(
                    url: url, configuration: Signaling.registryConfiguration(configuration),
                    encode: Signaling.envelopes, logger: logger,
                    deliveryLag: { [metrics] lag in metrics.recordNotifyLag(lag) })
            } catch {
                // The URL may hold a password: never print it.
                throw ServerError("cannot reach the PostgreSQL store: \(String(reflecting: error))")
            }
        }
        let identity = try Self.identity(configuration, logger: logger)
        self.identity = identity
        let relay = try configuration.relay.map { settings in
            var server = settings.server
            if let port = settings.turnsPort {
                // TURN over TLS presents the HTTPS certificate (browsers check it against the turns: URL's host).
                var tls = identity.tlsConfiguration(cipherSuites: Self.cipherSuites)
                tls.applicationProtocols = []
                server.tls = (port, try NIOSSLContext(configuration: tls))
            }
            return RelayServer(
                configuration: server, metricsFactory: metrics.factory, logger: Logger(label: "switchboard.relay"))
        }
        self.relay = relay
        let signaling = Signaling(
            configuration: configuration, metrics: metrics, media: media, relay: relay, store: store, clock: clock)
        self.signaling = signaling
        media?.setFailureHandler { [weak signaling] callID, failure in signaling?.mediaFailed(callID, failure) }
        do {
            try await signaling.endStrandedMediaCalls()
        } catch {
            logger.warning("could not end the secure-relay calls this node held before it started: \(error)")
        }
        let descriptors = DescriptorLimit.raise()
        let capacity = min(
            configuration.connections.maxConnections, DescriptorLimit.connectionCapacity(descriptors: descriptors))
        if capacity < configuration.connections.maxConnections {
            logger.notice(
                "connection cap lowered to fit the descriptor limit",
                metadata: ["cap": "\(capacity)", "descriptors": "\(descriptors)"])
        }
        self.connectionLimiter = ConnectionLimiter(
            capacity: capacity, perAddress: configuration.connections.maxPendingPerAddress)
        // Last: nothing after it throws, so the fetcher's HTTP client is always shut down (by ReloadService, or here).
        var identityProvider: KeySetFetcher?
        if let source = configuration.jwks {
            // Without them any token the provider signed, for any application or tenant, would be accepted.
            guard configuration.tokenPolicy.issuer != nil, configuration.tokenPolicy.audience != nil else {
                throw ServerError(
                    "--jwks-file and --jwks-url need --jwt-issuer and --jwt-audience: without them any token the provider signed for any application would be accepted"
                )
            }
            do {
                let fetcher = try KeySetFetcher(
                    source: source, trustRoots: configuration.jwksTrustRoots,
                    logger: Logger(label: "switchboard.auth"))
                identityProvider = fetcher
                do {
                    try await fetcher.load()
                } catch {
                    await fetcher.shutdown()
                    throw error
                }
            } catch {
                throw ServerError("cannot load the identity provider's keys from \(source): \(error)")
            }
        }
        self.authority = TokenAuthority(
            secret: configuration.tokenSecret, policy: configuration.tokenPolicy, identityProvider: identityProvider)
    }

    /// Every route behind its middleware: the responder of the HTTPS listener, and of in-process router tests.
    public func makeRouter() -> Router<SwitchboardContext> {
        // HEAD answers wherever GET does, with GET's headers and no body.
        let router = Router(context: SwitchboardContext.self, options: .autoGenerateHeadEndpoints)
        // Outermost: the chain runs in a child task, so that a long response (an event stream) does not keep its
        // frames' stack memory; no response to a HEAD carries a body, an error's included.
        router.add(middleware: ChildTaskMiddleware())
        router.add(middleware: HeadMiddleware())
        // Next, so error responses carry the headers too. HSTS only with an operator's certificate: the dev
        // certificate is for localhost, where HSTS would stick to every other local port.
        router.add(
            middleware: SecurityHeadersMiddleware(strictTransportSecurity: configuration.certificatePath != nil))
        // One concern each, outermost first: the log line and latency of every request, whatever came of it; every
        // error as the API's JSON body; the per-address limit on what carries no valid credentials (outside
        // authentication, to charge its refusals); authentication of the /v1/ routes; the per-user limit.
        router.add(middleware: ObservabilityMiddleware(metrics: metrics))
        router.add(middleware: ErrorMiddleware())
        let assets = StaticAssets.load()
        router.add(
            middleware: AddressRateLimitMiddleware(
                limiter: RateLimiter(ratePerSecond: configuration.unauthenticatedRateLimitPerSecond),
                signaling: signaling, exempt: configuration.webClient.enabled ? assets.paths : []))
        router.add(middleware: AuthenticationMiddleware(authority: authority, signaling: signaling))
        router.add(
            middleware: UserRateLimitMiddleware(
                limiter: RateLimiter(ratePerSecond: configuration.rateLimitPerSecond), signaling: signaling))
        Routes(signaling: signaling, metrics: metrics, configuration: configuration, relay: relay).register(on: router)
        var webClient = configuration.webClient
        webClient.mediaPolicy = media == nil ? MediaPolicy.direct.rawValue : configuration.mediaPolicy.rawValue
        WebClientRoutes(settings: webClient, authority: authority, assets: assets).register(on: router)
        return router
    }

    /// The services to run in one `ServiceGroup`, in start order; the group stops them in reverse, so open event
    /// streams get their final event before the HTTPS server stops. `onReady` gets the bound HTTPS port.
    public func services(onReady: @escaping @Sendable (Int) async -> Void = { _ in }) throws -> [any Service] {
        let responder = makeRouter().buildResponder()
        var services: [any Service] = []
        if let relay { services.append(relay) }
        if let media { services.append(media) }
        let boundPort = BoundPort(configuration.port)
        let tls = tlsConfiguration()
        let limits = configuration.connections
        let limiter = connectionLimiter
        let connectionMetrics = ConnectionMetrics(factory: metrics.factory)
        let openings = OpeningGate(limit: limits.concurrentStreamOpens, perAddress: limits.maxPendingPerAddress)
        let app = Application(
            responder: responder,
            server: HTTPServerBuilder { channelResponder in
                // GET /v1/events is served without a task per open stream, through the same responder.
                let events: EventStreamDispatcher.Responder = { try await responder.respond(to: $0, context: $1) }
                return GuardedUpgradeChannel(
                    sslContext: try NIOSSLContext(configuration: tls), http1: HTTP1Channel(responder: channelResponder),
                    http2IdleTimeout: limits.idleTimeout > 0
                        ? .milliseconds(Int64(min(limits.idleTimeout, 86_400) * 1000)) : nil,
                    events: events, openings: openings, limiter: limiter, limits: limits, metrics: connectionMetrics)
            },
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: nil),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                boundPort.set(port)
                await onReady(port)
            },
            logger: logger)
        services.append(app)
        if let redirectPort = configuration.httpRedirectPort {
            services.append(
                redirectApplication(
                    port: redirectPort, httpsPort: boundPort, limiter: limiter, metrics: connectionMetrics))
        }
        // Before the signaling service, so that it stops after it: SIGHUP and key refreshes still work while the
        // node drains.
        services.append(ReloadService(identity: identity, identityProvider: authority.identityProvider, logger: logger))
        services.append(
            SignalingService(signaling: signaling, drainTimeout: configuration.drainTimeout, logger: logger))
        services.append(
            MemoryTrimService(trimmer: MemoryTrimmer(factory: metrics.factory), limiter: connectionLimiter))
        return services
    }

    /// Runs until SIGINT or SIGTERM, then shuts down gracefully.
    public func run(onReady: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        let group = ServiceGroup(
            configuration: .init(
                services: try services(onReady: onReady).map { .init(service: $0) },
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await group.run()
    }

    /// The HTTPS listener's TLS: the server identity, HTTP/2 or HTTP/1.1 by ALPN.
    func tlsConfiguration() -> TLSConfiguration {
        var tls = identity.tlsConfiguration(cipherSuites: Self.cipherSuites)
        // HTTP/2 first: a browser multiplexes its tabs' event streams and requests over one connection.
        tls.applicationProtocols = ["h2", "http/1.1"]
        return tls
    }

    /// The operator's certificate and key (`--cert`, `--key`), or the dev certificate, made on first run.
    static func identity(_ configuration: ServerConfiguration, logger: Logger) throws -> ServerIdentity {
        switch (configuration.certificatePath, configuration.privateKeyPath) {
        case (let certificate?, let key?):
            return try ServerIdentity(certificatePath: certificate, keyPath: key)
        case (nil, nil):
            let dev = DevCertificates(directory: configuration.certificatesDirectory)
            if try dev.ensure() { logger.notice("generated a dev certificate", metadata: ["ca": .string(dev.caPath)]) }
            return try ServerIdentity(certificatePath: dev.certificatePath, keyPath: dev.privateKeyPath)
        default:
            throw ServerError("--cert and --key go together")
        }
    }

    /// Plain HTTP that serves nothing but a redirect to HTTPS, behind the same connection caps.
    private func redirectApplication(
        port: Int, httpsPort: BoundPort, limiter: ConnectionLimiter, metrics: ConnectionMetrics
    ) -> some Service {
        let router = Router()
        router.add(middleware: RedirectToHTTPSMiddleware(host: configuration.effectivePublicHost, httpsPort: httpsPort))
        let limits = configuration.connections
        return Application(
            router: router,
            server: HTTPServerBuilder { responder in
                GuardedChannel(
                    base: HTTP1Channel(responder: responder), limiter: limiter, limits: limits, metrics: metrics,
                    tls: false)
            },
            configuration: .init(address: .hostname(configuration.host, port: port)), logger: logger)
    }
}

/// A startup failure, with a sentence for the operator.
public struct ServerError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The HTTPS port once bound (the configured one may be 0).
final class BoundPort: Sendable {
    private let port: Mutex<Int>
    init(_ port: Int) { self.port = Mutex(port) }
    func set(_ value: Int) { port.withLock { $0 = value } }
    var value: Int { port.withLock { $0 } }
}

/// Redirects to the same path on HTTPS at the configured host: never at the request's `Host`, which the client
/// chooses (a redirect built from it sends a victim wherever an attacker's link says).
struct RedirectToHTTPSMiddleware<Context: RequestContext>: RouterMiddleware {
    /// The host name or address of `--public-host` (or `--host`), IPv6 literals without brackets.
    let host: String
    let httpsPort: BoundPort

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        let authority = host.contains(":") ? "[\(host)]" : host
        // The path as the router read it: absolute, so "//evil.example" cannot become a scheme-relative host.
        let path = "/" + request.uri.path.split(separator: "/").joined(separator: "/")
        let query = request.uri.query.map { "?" + $0 } ?? ""
        let location = "https://\(authority):\(httpsPort.value)\(path)\(query)"
        return Response(status: .permanentRedirect, headers: [.location: location])
    }
}

/// Runs the signaling timers and, on graceful shutdown, drains (with a drain timeout: new calls refused, streams
/// told to reconnect, the timers still running while the calls under way end) and then ends every event stream
/// with a final event. The HTTPS server starts before this service, so it stops after it: it serves the drain.
struct SignalingService: Service {
    let signaling: Signaling
    let drainTimeout: TimeInterval
    let logger: Logger

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled { try await tick() }
        }
        if drainTimeout > 0 {
            signaling.beginDrain()
            logger.notice("draining", metadata: ["timeout": "\(drainTimeout)"])
            let deadline = ContinuousClock.now + .milliseconds(Int(drainTimeout * 1000))
            var drained = false
            var nextCheck = ContinuousClock.now
            while !Task.isCancelled, ContinuousClock.now < deadline {
                // The store is asked at most once a second; the timers run meanwhile (a ring timeout ends a call).
                if ContinuousClock.now >= nextCheck {
                    guard await signaling.callsInProgress() else {
                        drained = true
                        break
                    }
                    nextCheck = ContinuousClock.now + .seconds(1)
                }
                try? await tick()
            }
            logger.notice(drained ? "drained: no call under way" : "drain timeout: stopping with calls under way")
        }
        signaling.shutdown()
    }

    /// Runs the timers once and waits until they are next due (at most 250 ms).
    private func tick() async throws {
        let next = await signaling.tick()
        let wait = min(max(next.timeIntervalSince(signaling.clock()), 0.005), 0.25)
        try await Task.sleep(for: .milliseconds(Int(wait * 1000)))
    }
}
