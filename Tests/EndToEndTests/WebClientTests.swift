import Foundation
import SwitchboardServer
import Testing

/// The bundled web client: the page, its assets, its security headers, and dev sign-in.
@Suite struct WebClientTests {
    static let csp =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
        + "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

    @Test func pageIsServedWithAStrictContentSecurityPolicy() async throws {
        try await TestServer.with { server in
            let page = try await server.request(.GET, "/")
            #expect(page.status == 200)
            #expect(page.header("Content-Type") == "text/html; charset=utf-8")
            #expect(page.header("Content-Security-Policy") == Self.csp)
            #expect(page.header("X-Content-Type-Options") == "nosniff")
            #expect(page.header("X-Frame-Options") == "DENY")
            #expect(page.header("Referrer-Policy") == "no-referrer")
            #expect(page.body.contains("<script type=\"module\" src=\"/app.js\"></script>"))
            #expect(page.body.contains("<link rel=\"stylesheet\" href=\"/app.css\">"))
            // No inline script or style, nothing from another origin.
            #expect(!page.body.contains("<script>"))
            #expect(!page.body.contains("<style"))
            #expect(!page.body.contains(" style="))
            #expect(!page.body.contains("http://") && !page.body.contains("https://"))
            #expect(try await server.request(.GET, "/index.html").body == page.body)

            let api = try await server.request(.GET, "/healthz")
            #expect(api.header("Content-Security-Policy") == Self.csp)
        }
    }

    /// The client is ES modules (one per concern, no build step): each is served as JavaScript (a module with
    /// another type would not load), and every module another imports is there.
    @Test func scriptsAndStyleSheetHaveTheirContentTypes() async throws {
        try await TestServer.with { server in
            var pending = ["app.js"]
            var seen: Set<String> = []
            while let name = pending.popLast() {
                guard seen.insert(name).inserted else { continue }
                let script = try await server.request(.GET, "/" + name)
                #expect(script.status == 200, "\(name)")
                #expect(script.header("Content-Type") == "text/javascript; charset=utf-8", "\(name)")
                // Every static import, a one-line or a multi-line one: `import { … } from "./x.js";`.
                let imports = script.body.matches(of: /(?m)^import\s[^;]*?from\s+"([^"]*)";/)
                #expect(imports.count == script.body.split(separator: "\n").filter { $0.hasPrefix("import ") }.count)
                for found in imports {
                    let module = String(found.output.1)
                    #expect(module.hasPrefix("./") && module.hasSuffix(".js"), "\(name): \(found.output.0)")
                    pending.append(String(module.dropFirst(2)))
                }
            }
            #expect(seen.count >= 8)
            let events = try await server.request(.GET, "/events.js")
            #expect(events.body.contains("new EventSource("))
            #expect(events.body.contains("/v1/stream-tickets"))
            let style = try await server.request(.GET, "/app.css")
            #expect(style.status == 200)
            #expect(style.header("Content-Type") == "text/css; charset=utf-8")
            #expect(style.header("X-Content-Type-Options") == "nosniff")
        }
    }

    @Test func unknownStaticPathsAre404() async throws {
        try await TestServer.with { server in
            for path in [
                "/nope.js", "/app.js.map", "/../Package.swift", "/%2e%2e/Package.swift", "/Public/app.js",
                "/index.htm", "/dev/token",
            ] {
                let reply = try await server.request(.GET, path)
                #expect(reply.status == 404, "\(path)")
                #expect(reply.header("Content-Security-Policy") == Self.csp)
            }
        }
    }

    @Test func clientConfigCarriesTheRelayDefault() async throws {
        try await TestServer.with { server in
            let reply = try await server.request(.GET, "/client-config")
            #expect(reply.json["iceTransportPolicy"] as? String == "all")
            #expect(reply.json["devUsers"] == nil)
            let token = try await server.request(.POST, "/dev/token", body: #"{"user": "alice"}"#)
            #expect(token.status == 404, "no dev sign-in unless it is turned on")
        }
        try await TestServer.with({ $0.webClient.relayOnly = true }) { server in
            let reply = try await server.request(.GET, "/client-config")
            #expect(reply.json["iceTransportPolicy"] as? String == "relay")
        }
    }

    @Test func devSignInMintsTokensForDemoUsersOnly() async throws {
        try await TestServer.with({ $0.webClient.devLoginUsers = ["alice", "bob"] }) { server in
            let config = try await server.request(.GET, "/client-config")
            #expect(config.json["devUsers"] as? [String] == ["alice", "bob"])
            let minted = try await server.request(.POST, "/dev/token", body: #"{"user": "alice"}"#)
            #expect(minted.status == 201)
            #expect(minted.header("Cache-Control") == "no-store")
            let token = try #require(minted.json["token"] as? String)
            let tickets = try await server.request(.POST, "/v1/stream-tickets", token: token, body: "{}")
            #expect(tickets.status == 201)
            #expect(try await server.request(.POST, "/dev/token", body: #"{"user": "admin"}"#).status == 403)
            #expect(try await server.request(.POST, "/dev/token", body: #"{"user": "mallory"}"#).status == 403)
            let form = try await server.request(
                .POST, "/dev/token", body: "user=alice", headers: [("Content-Type", "text/plain")])
            #expect(form.status == 400, "a cross-site simple request cannot mint tokens")
        }
    }
}
