public import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// How `switchboard serve` offers its bundled web client (`Resources/Public`).
public struct WebClientSettings: Sendable {
    /// Serve the page at `/` (and its script and style sheet).
    public var enabled: Bool = true
    /// The page's default `iceTransportPolicy`: `relay` forces every call through the TURN relay (the page's
    /// `?relay=1` does the same for one page).
    public var relayOnly: Bool = false
    /// Demo users the page may sign in as without a token (`POST /dev/token`); nil turns dev sign-in off. Only
    /// `switchboard serve --dev-login` sets it, and only with the dev token secret on a loopback address.
    public var devLoginUsers: [String]?
    /// Lifetime of a dev sign-in token.
    public var devTokenTTL: TimeInterval = 3600
    /// The server's media policy as the page learns it (`direct`, `secure-relay`, `caller-choice`): with
    /// `secure-relay` the page places every call through the secure relay. Set by the server from `--media`.
    var mediaPolicy: String = MediaPolicy.callerChoice.rawValue

    public init() {}
}

/// The static files of the web client, read once from the package's resources: a fixed set of names, served from
/// memory, so no request path ever reaches the file system.
struct StaticAssets: Sendable {
    struct Asset: Sendable {
        let body: ByteBuffer
        let contentType: String
    }
    let assets: [String: Asset]

    /// The paths the files are served at (`/` is `index.html`).
    var paths: Set<String> {
        var paths = Set(assets.keys.map { "/" + $0 })
        if assets["index.html"] != nil { paths.insert("/") }
        return paths
    }

    static let contentTypes = [
        "html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8",
        "svg": "image/svg+xml", "png": "image/png", "ico": "image/x-icon",
    ]

    static func load() -> StaticAssets {
        var assets: [String: Asset] = [:]
        guard let directory = Bundle.module.url(forResource: "Public", withExtension: nil),
            let names = try? FileManager.default.contentsOfDirectory(atPath: directory.path)
        else { return StaticAssets(assets: [:]) }
        for name in names where !name.hasPrefix(".") {
            let url = directory.appendingPathComponent(name)
            guard let type = contentTypes[url.pathExtension.lowercased()], let data = try? Data(contentsOf: url)
            else { continue }
            assets[name] = Asset(body: ByteBuffer(bytes: data), contentType: type)
        }
        return StaticAssets(assets: assets)
    }
}

/// The web client's routes: `/` and its assets, `GET /client-config`, and (dev sign-in only) `POST /dev/token`.
struct WebClientRoutes: Sendable {
    let settings: WebClientSettings
    let authority: TokenAuthority
    let assets: StaticAssets

    func register(on router: Router<SwitchboardContext>) {
        guard settings.enabled else { return }
        for (name, asset) in assets.assets {
            let handler: @Sendable (Request, SwitchboardContext) async throws -> Response = { _, _ in
                Response(
                    status: .ok, headers: [.contentType: asset.contentType, .cacheControl: "no-cache"],
                    body: .init(byteBuffer: asset.body))
            }
            router.get(RouterPath("/\(name)"), use: handler)
            if name == "index.html" { router.get("/", use: handler) }
        }
        router.get("/client-config") { _, _ in
            Routes.json(
                .ok,
                ClientConfigJSON(
                    iceTransportPolicy: settings.relayOnly ? "relay" : "all", devUsers: settings.devLoginUsers,
                    media: settings.mediaPolicy))
        }
        guard let users = settings.devLoginUsers else { return }
        router.post("/dev/token") { request, _ in
            // JSON only: a cross-site form or a "simple" cross-origin request cannot send it without a preflight,
            // which this server never answers.
            guard request.headers[.contentType]?.lowercased().hasPrefix("application/json") == true else {
                throw APIError.badRequest("send {\"user\": NAME} as application/json")
            }
            let buffer = try await request.collectAPIBody(upTo: 1024)
            guard let body = try? JSONDecoder().decode(DevTokenBody.self, from: Data(buffer: buffer)) else {
                throw APIError.badRequest("send {\"user\": NAME}")
            }
            guard users.contains(body.user) else { throw APIError.forbidden("not a demo user") }
            let token = await authority.issue(Identity(user: body.user), ttl: settings.devTokenTTL)
            return Routes.json(.created, DevTokenJSON(token: token, expiresIn: Int(settings.devTokenTTL)))
        }
    }
}

struct ClientConfigJSON: Encodable {
    let iceTransportPolicy: String
    let devUsers: [String]?
    /// `direct`, `secure-relay` or `caller-choice`.
    let media: String
}

struct DevTokenBody: Decodable {
    let user: String
}

struct DevTokenJSON: Encodable {
    let token: String
    let expiresIn: Int
}
