import ArgumentParser
import Foundation
import Logging
import Media
import STUN
import SwitchboardCore
import SwitchboardServer

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the server (HTTPS on 8443 with a generated dev certificate unless --cert/--key are given).")

    @Option(help: "Address to listen on.") var host: String = "127.0.0.1"
    @Option(help: "HTTPS port (0 picks a free one).") var port: Int = 8443
    @Option(help: "PEM certificate chain file.") var cert: String?
    @Option(help: "PEM private key file.") var key: String?
    @OptionGroup var secret: SecretOptions
    @OptionGroup(title: "Identity provider tokens") var identityProvider: IdentityProviderOptions
    @Option(help: "Seconds an unanswered call rings.") var ringTimeout: Double = 30
    @Option(help: "Seconds between SSE heartbeat comments.") var heartbeat: Double = 15
    @Option(help: "Frames an SSE stream may queue before a slow reader is cut.") var streamBuffer: Int = 256
    @Option(help: "Events kept per user for Last-Event-ID resumption.") var backlog: Int = 256
    @Option(help: "Open event streams (devices) per user.") var maxStreamsPerUser: Int = 16
    @Option(help: "Largest request body in bytes.") var maxBody: Int = 64 * 1024
    @Option(help: "Requests per second per user (0 disables).") var rateLimit: Double = 20
    @Option(help: "Plain-HTTP port that only redirects to HTTPS.") var httpRedirectPort: Int?
    @Option(help: "Host name clients reach the server by (the HTTP redirect's Location; default --host).")
    var publicHost: String?
    @Option(help: "Requests per second per client address without valid credentials (0 disables).")
    var unauthenticatedRateLimit: Double = 20
    @OptionGroup(title: "Connections") var connections: ConnectionOptions
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.") var logLevel: String = "info"
    @Option(help: "Demo users to print dev tokens for (dev certificate mode only).") var demoUsers: String = "alice,bob"
    @OptionGroup(title: "TURN relay") var relay: RelayOptions
    @Flag(help: "Run without the TURN relay.") var noRelay = false
    @Flag(help: "The web client sends every call through the TURN relay (iceTransportPolicy relay).")
    var webRelayOnly = false
    @Flag(help: "Let the web client sign in as a demo user without a token (dev secret on loopback only).")
    var devLogin = false
    @Flag(help: "Do not serve the web client.") var noWeb = false
    @Option(
        help:
            "Media path of calls: direct, secure-relay (every call through Switchboard's DTLS-SRTP relay) or caller-choice."
    )
    var media: String = "caller-choice"
    @Option(help: "UDP port of the secure relay's media endpoint, bound on --host (0 picks a free one).")
    var mediaPort: Int = 3479
    @Option(help: "Address advertised in the secure relay's candidates when it differs from --host (NAT).")
    var mediaIP: String?
    @Flag(help: "Run without the secure relay's media endpoint (secure-relay calls are then refused).")
    var noMedia = false
    @Option(
        help: ArgumentHelp(
            "Where calls and events are kept: sqlite:PATH, postgres://USER[:PASSWORD]@HOST[:PORT]/DB or memory.",
            discussion:
                "Default sqlite:data/switchboard.sqlite. SWITCHBOARD_DATABASE_URL (a postgres:// URL, which keeps the password out of the process list) or SWITCHBOARD_STORE set it too; the flag wins."
        ))
    var store: String?
    @Option(help: "Days ended calls stay in the history before they are pruned.") var historyDays: Double = 90
    @Option(
        help: ArgumentHelp(
            "Seconds SIGTERM (or SIGINT) drains for before it stops (0: stop at once).",
            discussion:
                "While draining, new calls get 503 draining, /healthz answers 503, every event stream gets a reconnect event, and the node stops as soon as no call it carries is under way."
        ))
    var drainTimeout: Double = 0
    @Option(
        help: ArgumentHelp(
            "This node's name in a cluster (1-64 of A-Z a-z 0-9 . _ ~ -), unique per node and kept across restarts.",
            discussion: "Default HOSTNAME-PORT (a random name with --port 0); SWITCHBOARD_NODE_ID sets it too."))
    var nodeID: String?

    func run() async throws {
        try await failingCleanly {
            let level = try bootstrapLogging(logLevel)
            let (secretBytes, isDevSecret) = try secret.resolve()
            var configuration = ServerConfiguration(tokenSecret: secretBytes)
            configuration.host = host
            configuration.port = port
            configuration.certificatePath = cert
            configuration.privateKeyPath = key
            configuration.certificatesDirectory = secret.certsDir
            try identityProvider.apply(to: &configuration)
            configuration.ringTimeout = ringTimeout
            configuration.heartbeatInterval = heartbeat
            configuration.streamBufferFrames = streamBuffer
            configuration.backlogSize = backlog
            configuration.maxStreamsPerUser = maxStreamsPerUser
            configuration.maxBodyBytes = maxBody
            for (flag, rate) in [
                ("--rate-limit", rateLimit), ("--unauthenticated-rate-limit", unauthenticatedRateLimit),
            ] {
                guard rate == 0 || (rate >= 0.01 && rate <= 1_000_000) else {
                    throw CommandFailure("\(flag) must be 0 (off) or between 0.01 and 1000000 requests per second")
                }
            }
            configuration.rateLimitPerSecond = rateLimit
            configuration.httpRedirectPort = httpRedirectPort
            if let publicHost {
                // A name or an address, nothing else: it becomes the authority of the redirect's Location.
                let name = publicHost.allSatisfy {
                    $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-")
                }
                guard !publicHost.isEmpty, name || IPAddress(publicHost) != nil else {
                    throw CommandFailure("--public-host must be a host name or an IP address (no port, no brackets)")
                }
            }
            configuration.publicHost = publicHost
            configuration.unauthenticatedRateLimitPerSecond = unauthenticatedRateLimit
            configuration.connections = try connections.limits()
            configuration.logLevel = level
            // Dev tokens are printed only for the dev secret: never mint tokens with an operator's secret.
            let devMode = cert == nil && key == nil && isDevSecret
            if !noRelay {
                configuration.relay = try relay.settings(certsDir: secret.certsDir, requireSecret: !devMode)
            }
            guard let policy = MediaPolicy(rawValue: media) else {
                throw CommandFailure("--media must be direct, secure-relay or caller-choice")
            }
            configuration.mediaPolicy = policy
            let wildcard = ["0.0.0.0", "::"].contains(host)
            if noMedia || (wildcard && mediaIP == nil) {
                guard policy != .secureRelay else {
                    throw CommandFailure(
                        noMedia
                            ? "--media secure-relay needs the media endpoint"
                            : "--media secure-relay with --host \(host) needs --media-ip: the address parties reach")
                }
                if !noMedia {
                    Logger(label: "switchboard").notice(
                        "secure relay off: --host \(host) needs --media-ip, the address to put in its candidates")
                }
                configuration.media = nil
            } else {
                // The media socket binds an address, not a name.
                let mediaHost = host == "localhost" ? "127.0.0.1" : host
                var mediaConfiguration = MediaServerConfiguration(host: mediaHost, port: mediaPort)
                if let mediaIP {
                    guard let address = IPAddress(mediaIP) else {
                        throw CommandFailure("--media-ip must be an IP address")
                    }
                    mediaConfiguration.advertisedAddresses = [address]
                }
                configuration.media = mediaConfiguration
            }
            let environment = ProcessInfo.processInfo.environment.filter { !$0.value.isEmpty }
            let storeArgument =
                store ?? environment["SWITCHBOARD_DATABASE_URL"] ?? environment["SWITCHBOARD_STORE"]
                ?? "sqlite:\(StoreLocation.defaultSQLitePath)"
            guard let location = StoreLocation(argument: storeArgument) else {
                throw CommandFailure("--store must be sqlite:PATH, postgres://… or memory")
            }
            configuration.store = location
            guard historyDays > 0, historyDays <= 36_500 else {
                throw CommandFailure("--history-days must be a positive number of days, at most 36500")
            }
            configuration.historyRetention = historyDays * 86_400
            guard drainTimeout >= 0, drainTimeout <= 86_400 else {
                throw CommandFailure("--drain-timeout must be 0 to 86400 seconds")
            }
            configuration.drainTimeout = drainTimeout
            if let nodeID = nodeID ?? environment["SWITCHBOARD_NODE_ID"] {
                guard Identifier.isValid(nodeID) else {
                    throw CommandFailure("--node-id must be 1-64 characters of A-Z a-z 0-9 . _ ~ -")
                }
                configuration.nodeID = nodeID
            } else if port != 0 {
                let hostName = String(
                    ProcessInfo.processInfo.hostName.filter { Identifier.isValid(String($0)) }.prefix(50))
                configuration.nodeID = (hostName.isEmpty ? "node" : hostName) + "-\(port)"
            }
            configuration.webClient.enabled = !noWeb
            configuration.webClient.relayOnly = webRelayOnly
            let users = demoUsers.split(separator: ",").map(String.init)
            if devLogin {
                // Anyone who reaches the port could sign in as a demo user: only with the dev secret (whose tokens
                // are printed anyway) and only on a loopback address.
                guard devMode else {
                    throw CommandFailure("--dev-login needs the dev token secret and the dev certificate")
                }
                guard ["127.0.0.1", "::1", "localhost"].contains(host) else {
                    throw CommandFailure("--dev-login is only allowed on a loopback --host")
                }
                guard users.allSatisfy({ Identifier.isValid($0) && $0 != "admin" }) else {
                    throw CommandFailure("--demo-users must be user ids, and not admin, for --dev-login")
                }
                configuration.webClient.devLoginUsers = users
            }
            let server = try await SwitchboardServer(configuration: configuration, logger: Logger(label: "switchboard"))
            let certsDir = secret.certsDir
            let host = self.host
            let ttl = min(86_400, configuration.tokenPolicy.maxLifetime)
            try await server.run { port in
                let display =
                    host == "0.0.0.0" || host == "::" ? "localhost" : (host.contains(":") ? "[\(host)]" : host)
                var lines = ["Switchboard is listening on https://\(display):\(port)"]
                if devMode {
                    let authority = TokenAuthority(secret: secretBytes)
                    lines.append(
                        "Dev certificate authority: \(certsDir)/dev-ca.pem (curl --cacert \(certsDir)/dev-ca.pem)")
                    lines.append(
                        "Dev tokens (valid \(Int(ttl)) s; mint more with `switchboard token issue --user NAME`):")
                    for user in users {
                        let token = await authority.issue(Identity(user: user), ttl: ttl)
                        lines.append("  \(user): \(token)")
                    }
                    let admin = await authority.issue(Identity(user: "admin", isAdmin: true), ttl: ttl)
                    lines.append("  admin (role admin): \(admin)")
                }
                print(lines.joined(separator: "\n"))
                fflush(nil)
            }
        }
    }
}

/// `switchboard serve`'s connection caps and deadlines (``ConnectionLimits``).
struct ConnectionOptions: ParsableArguments {
    @Option(help: "Connections open at once; lowered to fit the descriptor limit.") var maxConnections = 16_384
    @Option(help: "Connections per client address that have not sent a whole request yet.")
    var maxPendingPerAddress = 64
    @Option(help: "Seconds for a TLS handshake.") var handshakeTimeout: Double = 10
    @Option(help: "Seconds from the handshake until the first request header is complete.")
    var headerTimeout: Double = 20
    @Option(help: "Seconds from a request header until its body is complete.") var bodyTimeout: Double = 30
    @Option(help: "Seconds a kept-alive connection may wait for its next request (event streams are exempt).")
    var idleTimeout: Double = 75
    @Option(help: "Event streams being opened at once (authenticated, caught up); more wait their turn.")
    var maxStreamOpens = 32

    func limits() throws -> ConnectionLimits {
        guard maxConnections > 0, maxPendingPerAddress > 0, maxStreamOpens > 0 else {
            throw CommandFailure(
                "--max-connections, --max-pending-per-address and --max-stream-opens must be positive")
        }
        guard [handshakeTimeout, headerTimeout, bodyTimeout, idleTimeout].allSatisfy({ $0 > 0 && $0 <= 86_400 }) else {
            throw CommandFailure("connection timeouts must be positive numbers of seconds, at most a day")
        }
        var limits = ConnectionLimits()
        limits.maxConnections = maxConnections
        limits.maxPendingPerAddress = maxPendingPerAddress
        limits.handshakeTimeout = handshakeTimeout
        limits.headerTimeout = headerTimeout
        limits.bodyTimeout = bodyTimeout
        limits.idleTimeout = idleTimeout
        limits.concurrentStreamOpens = maxStreamOpens
        return limits
    }
}
