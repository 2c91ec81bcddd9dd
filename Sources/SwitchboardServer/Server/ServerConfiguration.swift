public import Foundation
public import Logging
public import Media
public import Relay

/// Everything `switchboard serve` can be told, with the defaults of the quick start.
public struct ServerConfiguration: Sendable {
    /// Address to listen on.
    public var host: String = "127.0.0.1"
    /// HTTPS port; 0 picks a free one (see ``SwitchboardServer/onReady``).
    public var port: Int = 8443
    /// PEM certificate chain and private key. When both are nil, the dev certificate in ``certificatesDirectory``
    /// is used, generated on first run.
    public var certificatePath: String?
    public var privateKeyPath: String?
    /// Where the dev CA, dev certificate and dev token secret live.
    public var certificatesDirectory: String = "certs"
    /// HS256 secret for bearer tokens.
    public var tokenSecret: [UInt8]
    /// An identity provider's published keys (`--jwks-file`, `--jwks-url`): its tokens are accepted too.
    public var jwks: JWKSSource?
    /// A PEM file of the CAs a `--jwks-url` certificate must chain to (`--jwks-ca-file`); nil for the system's.
    public var jwksTrustRoots: String?
    /// What a token's claims must say, and which claims name the user and the admin role.
    public var tokenPolicy = TokenPolicy()
    /// How long an unanswered call rings.
    public var ringTimeout: TimeInterval = 30
    /// Interval between SSE heartbeat comments.
    public var heartbeatInterval: TimeInterval = 15
    /// The `retry:` hint sent once per stream, in milliseconds.
    public var retryMilliseconds: Int = 3000
    /// Frames a stream may have queued before its reader is considered too slow and disconnected.
    public var streamBufferFrames: Int = 256
    /// Bytes a stream may have queued before its reader is considered too slow and disconnected.
    public var streamBufferBytes: Int = 1 << 20
    /// Open streams (devices) one user may have at once.
    public var maxStreamsPerUser: Int = 16
    /// Events kept per user for `Last-Event-ID` resumption (also bounded by ``streamBufferBytes``).
    public var backlogSize: Int = 256
    /// How long events stay resumable.
    public var backlogTTL: TimeInterval = 300
    /// Largest request body accepted (413 above it).
    public var maxBodyBytes: Int = 64 * 1024
    /// Requests per second per user (token bucket, burst twice that); 0 disables rate limiting.
    public var rateLimitPerSecond: Double = 20
    /// Requests per second per client address that carry no valid credentials (no token, a bad one, or a public
    /// route), burst twice that; separate from the per-user limit. 0 disables it.
    public var unauthenticatedRateLimitPerSecond: Double = 20
    /// Connection caps and deadlines.
    public var connections = ConnectionLimits()
    /// How long a stream ticket is valid.
    public var ticketLifetime: TimeInterval = 30
    /// Where calls and events are kept (`--store`).
    public var store: StoreLocation = .memory
    /// This node's name in a cluster (`--node-id`): a secure-relay call records the node whose media endpoint
    /// holds its legs, and the other nodes carry that call's answers and renegotiations to it. Unique per node;
    /// keep it across restarts, so that a restarted node ends the secure-relay calls it can no longer carry.
    public var nodeID = "node-" + Base64URL.random(bytes: 6)
    /// How long a node waits for another node to answer a request about a secure-relay call's media.
    public var mediaForwardingTimeout: Duration = .seconds(3)
    /// How long ended calls stay in the history (`--history-days`).
    public var historyRetention: TimeInterval = 90 * 86_400
    /// How often old events and calls are pruned from the store.
    public var pruneInterval: TimeInterval = 10
    /// Seconds a graceful shutdown (SIGTERM) drains for first (`--drain-timeout`): new calls are refused with 503
    /// `draining`, every stream hears `reconnect`, and the calls under way may end; 0 stops at once.
    public var drainTimeout: TimeInterval = 0
    /// Optional plain-HTTP port that only redirects to HTTPS.
    public var httpRedirectPort: Int?
    /// The host name clients reach the server by, for the redirect's `Location`; nil for ``host`` (or `localhost`
    /// when ``host`` is a wildcard address).
    public var publicHost: String?
    /// ``publicHost``, or what it defaults to.
    public var effectivePublicHost: String {
        if let publicHost { return publicHost }
        return host == "0.0.0.0" || host == "::" ? "localhost" : host
    }
    public var logLevel: Logger.Level = .info
    /// The TURN relay run inside the server, and how `GET /v1/turn-credentials` advertises it; nil for none.
    public var relay: RelaySettings?
    /// The bundled web client at `/`.
    public var webClient = WebClientSettings()
    /// Which media path calls take (`--media`).
    public var mediaPolicy: MediaPolicy = .callerChoice
    /// The secure relay's media endpoint; nil for none (then no call may use `secure-relay`).
    public var media: MediaServerConfiguration? = MediaServerConfiguration()

    public init(tokenSecret: [UInt8]) {
        self.tokenSecret = tokenSecret
    }
}

/// The TURN relay of `switchboard serve` and the credentials the signaling plane hands out for it.
public struct RelaySettings: Sendable {
    public var server: RelayServerConfiguration
    /// The host name or address in the `turn:` URLs handed to clients.
    public var publicHost: String
    /// Lifetime of the TURN REST credentials `GET /v1/turn-credentials` issues.
    public var credentialTTL: Int
    /// TURN over TLS on this port (0 picks a free one) with the server's own certificate; nil: none.
    public var turnsPort: Int?

    public init(server: RelayServerConfiguration, publicHost: String, credentialTTL: Int = 3600, turnsPort: Int? = nil)
    {
        self.server = server
        self.publicHost = publicHost
        self.credentialTTL = credentialTTL
        self.turnsPort = turnsPort
    }
}

/// Where a server keeps its calls and events (`--store`).
public enum StoreLocation: Sendable, Hashable, CustomStringConvertible {
    /// This process's memory: a restart forgets everything (tests, benchmarks).
    case memory
    /// One SQLite file, made on first run.
    case sqlite(path: String)
    /// A PostgreSQL database that several nodes may share.
    case postgres(url: String)

    /// The file `switchboard serve` uses when told nothing.
    public static let defaultSQLitePath = "data/switchboard.sqlite"

    /// Reads `memory`, `sqlite:PATH` or `postgres://…`; nil for anything else.
    public init?(argument: String) {
        if argument == "memory" {
            self = .memory
        } else if argument.hasPrefix("sqlite:"), argument.count > 7 {
            self = .sqlite(path: String(argument.dropFirst(7)))
        } else if argument.hasPrefix("postgres://") || argument.hasPrefix("postgresql://") {
            self = .postgres(url: argument)
        } else {
            return nil
        }
    }

    public var description: String {
        switch self {
        case .memory: "memory"
        case .sqlite(let path): "sqlite:\(path)"
        // Without the password.
        case .postgres: "postgres"
        }
    }
}

/// Which media path a call takes (`--media`): every call direct, every call through the secure relay, or what the
/// caller asks for (`direct` when it asks for nothing).
public enum MediaPolicy: String, Sendable, CaseIterable {
    case direct
    case secureRelay = "secure-relay"
    case callerChoice = "caller-choice"
}
