import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOSSL
import Synchronization

/// Reads an identity provider's JWKS from its ``JWKSSource`` and keeps the latest good copy: a fetch that fails
/// (the provider down, a bad document) keeps the keys already held and is retried.
final class KeySetFetcher: Sendable {
    let source: JWKSSource
    private let client: HTTPClient?
    private let logger: Logger
    private let state = Mutex(State())

    private struct State {
        var keys: IdentityProviderKeys?
        /// When the URL's keys go stale (its `Cache-Control: max-age`).
        var refreshAt: ContinuousClock.Instant = .now
        /// The last fetch asked for by a token with an unknown `kid`: at most one per ``unknownKeyInterval``.
        var lastUnknownKeyFetch: ContinuousClock.Instant?
        /// Loads started, and the one whose keys are held: loads overlap (the refresh timer, SIGHUP, an unknown
        /// `kid`), and one that started earlier must not replace the keys of one that started later.
        var started = 0
        var held = 0
    }

    /// Bounds on the refresh interval a provider's cache headers may ask for, and the one used without them.
    static let refreshBounds: ClosedRange<Duration> = .seconds(60)...(.seconds(86_400))
    static let defaultRefresh: Duration = .seconds(3600)
    static let retryAfterFailure: Duration = .seconds(60)
    static let unknownKeyInterval: Duration = .seconds(30)
    /// The largest JWKS document read.
    static let maxDocumentBytes = 1 << 20

    /// `trustRoots`: a PEM file of the CAs the URL's certificate must chain to; nil for the system's.
    init(source: JWKSSource, trustRoots: String?, logger: Logger) throws {
        self.source = source
        self.logger = logger
        switch source {
        case .file:
            client = nil
        case .url(let url):
            guard url.scheme == "https" else { throw KeySetError("--jwks-url must be an https:// URL") }
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.minimumTLSVersion = .tlsv12
            if let trustRoots { tls.trustRoots = .file(trustRoots) }
            var configuration = HTTPClient.Configuration(tlsConfiguration: tls, redirectConfiguration: .disallow)
            configuration.timeout = .init(connect: .seconds(5), read: .seconds(10))
            client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        }
    }

    /// The keys last read; nil before the first successful read.
    var keys: IdentityProviderKeys? { state.withLock { $0.keys } }

    /// Reads the keys now; throws (keeping the keys held) when that fails.
    func load() async throws {
        let generation = state.withLock { state in
            state.started += 1
            return state.started
        }
        let (data, maxAge) = try await read()
        let keys = try await IdentityProviderKeys(jwks: data)
        let refresh = min(
            max(maxAge ?? Self.defaultRefresh, Self.refreshBounds.lowerBound), Self.refreshBounds.upperBound)
        let current = state.withLock { state in
            guard generation > state.held else { return false }
            state.held = generation
            state.keys = keys
            state.refreshAt = .now + refresh
            return true
        }
        guard current else { return }
        logger.info(
            "identity provider keys loaded",
            metadata: ["source": "\(source)", "keys": "\(keys.count)", "skipped": "\(keys.skipped)"])
    }

    /// A token named a key the set lacks: the provider may have rotated its keys. Reads the URL again, at most
    /// once per ``unknownKeyInterval``; true when it did and got keys.
    func refreshForUnknownKey() async -> Bool {
        guard case .url = source else { return false }
        let due = state.withLock { state in
            if let last = state.lastUnknownKeyFetch, .now - last < Self.unknownKeyInterval { return false }
            state.lastUnknownKeyFetch = .now
            return true
        }
        guard due else { return false }
        do {
            try await load()
            return true
        } catch {
            logger.warning("identity provider keys not refreshed", metadata: ["error": "\(error)"])
            return false
        }
    }

    /// Refreshes a URL's keys when they go stale, until cancelled.
    func run() async {
        guard case .url = source else { return }
        while !Task.isCancelled {
            let wait = state.withLock { $0.refreshAt } - .now
            if wait > .zero { try? await Task.sleep(for: wait) }
            guard !Task.isCancelled else { break }
            do {
                try await load()
            } catch {
                logger.warning("identity provider keys not refreshed", metadata: ["error": "\(error)"])
                state.withLock { $0.refreshAt = .now + Self.retryAfterFailure }
            }
        }
    }

    func shutdown() async {
        try? await client?.shutdown()
    }

    /// The document, and the `max-age` its response allows caching it for.
    private func read() async throws -> (Data, Duration?) {
        switch source {
        case .file(let path):
            guard let data = FileManager.default.contents(atPath: path) else {
                throw KeySetError("cannot read the JWKS file \(path)")
            }
            return (data, nil)
        case .url(let url):
            guard let client else { throw KeySetError("no HTTP client") }
            var request = HTTPClientRequest(url: url.absoluteString)
            request.headers.add(name: "Accept", value: "application/json")
            let response = try await client.execute(request, timeout: .seconds(10))
            guard response.status == .ok else { throw KeySetError("\(url) answered \(response.status.code)") }
            let body = try await response.body.collect(upTo: Self.maxDocumentBytes)
            return (Data(buffer: body), Self.maxAge(response.headers["Cache-Control"].joined(separator: ",")))
        }
    }

    /// `max-age` of a `Cache-Control` value (RFC 9111 §5.2.2.1); `no-cache`/`no-store` count as 0.
    static func maxAge(_ cacheControl: String) -> Duration? {
        var result: Duration?
        for directive in cacheControl.lowercased().split(separator: ",") {
            let parts = directive.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            switch parts.first {
            case "no-cache", "no-store": return .zero
            case "max-age":
                if parts.count == 2, let seconds = Int(parts[1].trimmingCharacters(in: ["\""])), seconds >= 0 {
                    result = .seconds(seconds)
                }
            default: continue
            }
        }
        return result
    }
}
