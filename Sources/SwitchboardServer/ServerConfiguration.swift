public import Foundation
public import Logging

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
    /// How long a stream ticket is valid.
    public var ticketLifetime: TimeInterval = 30
    /// Ended calls kept for history.
    public var maxEndedCalls: Int = 10_000
    /// Optional plain-HTTP port that only redirects to HTTPS.
    public var httpRedirectPort: Int?
    public var logLevel: Logger.Level = .info

    public init(tokenSecret: [UInt8]) {
        self.tokenSecret = tokenSecret
    }
}
