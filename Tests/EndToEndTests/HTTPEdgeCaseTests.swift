import Foundation
import SwitchboardServer
import Testing

/// HTTP/1.1 framing a parser might trip on, clients that leave mid-request, the plain-HTTP redirect under a
/// hostile `Host`, HEAD, and the per-address limit on requests without valid credentials.
@Suite struct HTTPEdgeCaseTests {
    /// Requests whose framing is wrong, over raw TLS: each gets a 400, none a 500 or an error log.
    static let badFraming: [(String, String)] = [
        ("a chunk size that is not hex", "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"),
        ("a chunk size that overflows", "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\n{}\r\n0\r\n\r\n"),
        ("a chunk longer than its size", "Transfer-Encoding: chunked\r\n\r\n2\r\n{}xx\r\n0\r\n\r\n"),
        ("chunked and a length", "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n2\r\n{}\r\n0\r\n\r\n"),
        ("chunked not last", "Transfer-Encoding: chunked, gzip\r\n\r\n2\r\n{}\r\n0\r\n\r\n"),
        ("an unknown coding", "Transfer-Encoding: sideways\r\n\r\n{}"),
        ("two lengths", "Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}"),
        ("a negative length", "Content-Length: -2\r\n\r\n{}"),
    ]

    @Test(arguments: badFraming.map(\.0))
    func malformedFramingGetsA400(_ name: String) async throws {
        let framing = try #require(Self.badFraming.first { $0.0 == name }?.1)
        try await TestServer.with { server in
            let connection = try await RawConnection.open(port: server.port, tls: true)
            try await connection.send(
                "POST /v1/calls HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer \(await server.token("bob"))\r\n"
                    + "Content-Type: application/json\r\n" + framing)
            let reply = await connection.receive(until: "\r\n\r\n")
            #expect(reply.hasPrefix("HTTP/1.1 400"), "\(name): \(reply.prefix(80))")
            connection.close()
            #expect(!server.logs.all.contains { $0.hasPrefix("error") }, "\(server.logs.all)")
        }
    }

    @Test func aClientThatLeavesMidBodyIsNotAServerError() async throws {
        try await TestServer.with { server in
            let connection = try await RawConnection.open(port: server.port, tls: true)
            try await connection.send(
                "POST /v1/calls HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer \(await server.token("bob"))\r\n"
                    + "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"to\":")
            connection.close()
            #expect(await connection.closes(within: 5))
            // The server has noticed once the request's log line is written; no line is an error.
            let deadline = ContinuousClock.now + .seconds(10)
            while !server.logs.all.contains(where: { $0.contains("request") && $0.contains("status=400") }),
                ContinuousClock.now < deadline
            {
                await Task.yield()
            }
            #expect(server.logs.all.contains { $0.contains("status=400") })
            #expect(!server.logs.all.contains { $0.hasPrefix("error") }, "\(server.logs.all)")
        }
    }

    @Test func theRedirectNamesTheConfiguredHostNeverTheRequestsHost() async throws {
        let redirectPort = try freeTCPPort()
        try await TestServer.with({
            $0.httpRedirectPort = redirectPort
            $0.publicHost = "calls.example.net"
        }) { server in
            for (host, path) in [("evil.example", "/v1/calls?x=1"), ("evil.example:443", "//evil.example/x")] {
                let reply = try await Subprocess.run(
                    "/usr/bin/curl",
                    [
                        "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "-H", "Host: \(host)",
                        "--path-as-is", "http://127.0.0.1:\(redirectPort)\(path)",
                    ])
                let expected = path.hasPrefix("//") ? "/evil.example/x" : path
                #expect(reply.output == "308 https://calls.example.net:\(server.port)\(expected)")
            }
        }
    }

    /// HEAD over HTTP/2 and HTTP/1.1, with curl (async-http-client fails a HEAD over HTTP/2 whose empty DATA frame
    /// ends the stream after the header, which RFC 9113 allows and browsers and curl take). Each HEAD is sent twice
    /// on one connection: a body after the first header would be read as the second response (HTTP/1.1) or break
    /// the stream (HTTP/2), and curl would fail.
    @Test(arguments: ["2", "1.1"]) func headAnswersWhereverGetDoes(version: String) async throws {
        try await TestServer.with { server in
            let token = await server.token("alice")
            func head(_ path: String, token: String?) async throws -> (status: Int, contentType: String?) {
                var arguments = ["-sS", "-I", "--http\(version)", "--cacert", server.caPath, "--max-time", "10"]
                if let token { arguments += ["-H", "Authorization: Bearer \(token)"] }
                let url = server.baseURL + path
                let run = try await Subprocess.run("/usr/bin/curl", arguments + [url, url])
                #expect(run.status == 0, "HEAD \(path): curl \(run.status) \(run.error)")
                let lines = run.output.split(separator: "\r\n", omittingEmptySubsequences: false)
                let statuses = lines.filter { $0.hasPrefix("HTTP/") }.map {
                    $0.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
                }
                #expect(statuses.count == 2 && statuses.first == statuses.last, "HEAD \(path): \(statuses)")
                let contentType = lines.first { $0.lowercased().hasPrefix("content-type:") }
                    .map { $0.dropFirst("content-type:".count).trimmingCharacters(in: .whitespaces) }
                return (statuses.first ?? 0, contentType)
            }
            for path in ["/healthz", "/", "/client-config", "/metrics", "/v1/calls", "/v1/events?device=d1"] {
                let get = path == "/v1/events?device=d1" ? nil : try await server.request(.GET, path, token: token)
                let reply = try await head(path, token: token)
                #expect(reply.status == 200, "\(path)")
                if let get {
                    #expect(reply.contentType == get.header("content-type"), "\(path)")
                }
            }
            // Errors too: no JSON body after the header.
            for path in ["/v1/events", "/v1/calls"] {
                #expect(try await head(path, token: nil).status == 401, "\(path)")
            }
            #expect(try await head("/no-such-route", token: nil).status == 404)
            // HEAD on the event stream opened none.
            #expect(try await server.metric("switchboard_sse_streams_open") == 0)
        }
    }

    @Test func requestsWithoutValidCredentialsAreLimitedPerAddress() async throws {
        // The server's clock stands still: no token comes back however slowly the machine runs the requests.
        let now = Date()
        try await TestServer.with({ $0.unauthenticatedRateLimitPerSecond = 1 }, clock: { now }) { server in
            // Burst 2 per address (twice the rate): two public requests pass, the third waits.
            #expect(try await server.request(.GET, "/healthz").status == 200)
            #expect(try await server.request(.GET, "/healthz").status == 200)
            let limited = try await server.request(.GET, "/healthz")
            #expect(limited.status == 429)
            #expect(limited.errorCode == "rate_limited")
            #expect(Int(limited.header("retry-after") ?? "") ?? 0 >= 1)
            // A failed authentication is limited the same way (it costs more), and says so before 401.
            let badToken = try await server.request(.GET, "/v1/calls", token: "not-a-token")
            #expect(badToken.status == 429)
            // A signed-in user from the same address is limited per user, not per address.
            #expect(try await server.request(.GET, "/v1/calls", token: await server.token("alice")).status == 200)
            // The web client's files are not counted: the page loads whole from an address whose bucket is empty
            // (ten tabs, or a whole office behind one NAT address), while what is not a file still waits.
            for _ in 0..<3 {
                for path in ["/", "/index.html", "/app.css", "/app.js", "/events.js", "/call.js"] {
                    #expect(try await server.request(.GET, path).status == 200, "\(path)")
                }
            }
            #expect(try await server.request(.GET, "/client-config").status == 429)
            #expect(try await server.request(.GET, "/nope.js").status == 429)
        }
    }
}
