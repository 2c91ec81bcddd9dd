import Foundation
import Testing

/// HTTP/2 (ALPN `h2`, with `http/1.1` the fallback): every route over both protocols with curl, and what must hold
/// per stream on one multiplexed connection, seen frame by frame by the `h2` protocol library (PyPI,
/// Tests/api/h2_streams.py): the slow-reader cut-off, heartbeats, a peer's reset, the body deadline, the stream limit
/// and graceful shutdown each touch their own stream and leave the connection's others alone.
@Suite struct HTTP2Tests {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("api/h2_streams.py").path

    /// Runs one scenario of the script against `server` and returns the JSON object it printed last.
    static func scenario(_ name: String, _ server: TestServer) async throws -> [String: Any] {
        let run = try await Subprocess.run(
            "/usr/bin/env",
            [
                "python3", script, server.baseURL, server.caPath, await server.token("alice"),
                await server.token("bob"), Fixture.path("chrome-offer-av"), name,
            ])
        #expect(run.status == 0, "\(name): \(run.output) \(run.error.suffix(1500))")
        let last = run.output.split(separator: "\n").last.map(String.init) ?? ""
        let result = (try? JSONSerialization.jsonObject(with: Data(last.utf8))) as? [String: Any] ?? [:]
        #expect(result["alpn"] as? String == "h2", "\(name): ALPN chose \(result["alpn"] ?? "nothing")")
        return result
    }

    @Test func tenTabsOfOneUserShareOneConnection() async throws {
        try await TestServer.with({ $0.heartbeatInterval = 0.2 }) { server in
            let result = try await Self.scenario("tabs", server)
            #expect(result["inviteStatus"] as? Int == 201)
            #expect(result["acceptStatus"] as? Int == 200)
            // The nine other tabs heard the call end, answered elsewhere; the accepting tab did not.
            #expect(result["otherTabs"] as? [String] == Array(repeating: "answered_elsewhere", count: 9))
            #expect(result["acceptingTab"] as? [String] == ["call.invite"])
            #expect(result["streamsOpen"] as? Int == 10)
            #expect(result["healthz"] as? Int == 200)
        }
    }

    @Test func aSlowReaderLosesItsStreamNotTheConnection() async throws {
        try await TestServer.with({
            $0.streamBufferFrames = 8
            $0.maxBodyBytes = 256 * 1024
        }) { server in
            let result = try await Self.scenario("slow-reader", server)
            // The stream given no flow-control credit was reset (CANCEL) once its queue passed its bound, ...
            #expect(result["slowReset"] as? Int == 8)
            let sent = try #require(result["sent"] as? Int)
            #expect(sent < 100, "the server buffered \(sent) signals of 100 KiB for a reader that reads nothing")
            // ... while the other stream got every signal and one more, on the same connection.
            #expect(result["fastSignals"] as? Int == sent + 1)
            #expect(result["fastOpen"] as? Bool == true)
            #expect(result["goaway"] is NSNull)
            #expect(result["streamsOpen"] as? Double == 1)
            #expect(result["slowReadersDropped"] as? Double == 1)
        }
    }

    @Test func aResetStreamClosesOnlyItself() async throws {
        try await TestServer.with { server in
            let result = try await Self.scenario("reset", server)
            #expect(result["keptOpen"] as? Bool == true)
            #expect(result["goaway"] is NSNull)
        }
    }

    @Test func aBodyThatNeverComesIsCutAtTheBodyDeadline() async throws {
        try await TestServer.with({ $0.connections.bodyTimeout = 1 }) { server in
            let result = try await Self.scenario("body-deadline", server)
            let stalled = try #require(result["stalled"] as? [String: Any])
            #expect(stalled["reset"] as? Int == 8)
            #expect(result["afterwards"] as? Int == 200)
            #expect(result["bodyTimeouts"] as? Double == 1)
        }
    }

    @Test func concurrentStreamsPerConnectionAreLimited() async throws {
        try await TestServer.with { server in
            let result = try await Self.scenario("stream-limit", server)
            #expect(result["maxConcurrentStreams"] as? Int == 100)
            #expect(result["firstHeld"] as? Int == 201)
            #expect(result["freedStream"] as? Int == 201)
            #expect(result["openBeforeExtra"] as? Int == 100)
            // The stream past the limit ends the connection with PROTOCOL_ERROR (RFC 9113 §5.4 lets a stream error
            // be treated as a connection error); a new connection is served.
            let past = try #require(result["pastLimit"] as? [String: Any])
            #expect(past["goaway"] as? Int == 1)
            #expect(past["status"] is NSNull)
            #expect(result["afterwards"] as? Int == 200)
        }
    }

    @Test func headGetsNoBodyErrorsIncluded() async throws {
        try await TestServer.with { server in
            let result = try await Self.scenario("head", server)
            let heads = try #require(result["heads"] as? [String: [String: Any]])
            let expected = [
                "/healthz none": 200, "/v1/calls token": 200, "/v1/calls none": 401, "/no-such-route none": 404,
            ]
            for (request, status) in expected {
                let head = try #require(heads[request], "\(request)")
                #expect(head["status"] as? Int == status, "\(request)")
                #expect(head["bytes"] as? Int == 0, "\(request)")
                #expect(head["reset"] is NSNull, "\(request)")
            }
            #expect(result["goaway"] is NSNull)
        }
    }

    /// A connection that chose HTTP/2 and then sends nothing (not even the client preface) holds a pending slot of
    /// its address under the header deadline, as an HTTP/1.1 connection would.
    @Test func aSilentConnectionIsClosedAtTheHeaderDeadline() async throws {
        try await TestServer.with({ $0.connections.headerTimeout = 1 }) { server in
            let result = try await Self.scenario("silent", server)
            #expect(result["closed"] as? Bool == true)
            #expect((result["timeouts"] as? [String: Any])?["header"] as? Double == 1)
            // The closed connection gave its slot back: only the checking connection is open.
            #expect(result["connectionsOpen"] as? Double == 1)
        }
    }

    /// HTTP/2's own idle close (GOAWAY, then a PING) waits for the client's answer; a client that reads nothing is
    /// closed at the idle deadline all the same.
    @Test func aMuteIdleConnectionIsClosedAtTheIdleDeadline() async throws {
        try await TestServer.with({ $0.connections.idleTimeout = 1 }) { server in
            let result = try await Self.scenario("mute-idle", server)
            #expect(result["closed"] as? Bool == true)
            #expect((result["timeouts"] as? [String: Any])?["idle"] as? Double == 1)
            #expect(result["connectionsOpen"] as? Double == 1)
        }
    }

    @Test func gracefulShutdownEndsEveryStreamThenTheConnection() async throws {
        let server = try await TestServer.start()
        let (alice, bob) = (await server.token("alice"), await server.token("bob"))
        let run = Task {
            try await Subprocess.run(
                "/usr/bin/env",
                [
                    "python3", Self.script, server.baseURL, server.caPath, alice, bob,
                    Fixture.path("chrome-offer-av"), "shutdown",
                ])
        }
        var open = 0.0
        for _ in 0..<300 where open < 3 {
            open = try await server.metric("switchboard_sse_streams_open") ?? 0
            if open < 3 { try await Task.sleep(for: .milliseconds(100)) }
        }
        await server.shutdown()
        let output: Subprocess.Result
        do {
            output = try await run.value
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
        #expect(open == 3)
        #expect(output.status == 0, "\(output.output) \(output.error.suffix(1500))")
        let last = output.output.split(separator: "\n").last.map(String.init) ?? ""
        let result = (try? JSONSerialization.jsonObject(with: Data(last.utf8))) as? [String: Any] ?? [:]
        let streams = result["streams"] as? [[String: Any]] ?? []
        #expect(streams.count == 3)
        for stream in streams {
            #expect(stream["last"] as? String == "shutdown")
            #expect(stream["ended"] as? Bool == true)
        }
        // GOAWAY with NO_ERROR.
        #expect(result["goaway"] as? Int == 0)
    }

    /// One request per route and method over `--http2` and over `--http1.1`: the same statuses, bodies of the same
    /// shape, and the protocol asked for.
    @Test(arguments: ["2", "1.1"]) func curlReachesEveryRoute(version: String) async throws {
        try await RelayAPITests.withRelay { server in
            let (alice, bob, admin) = (
                await server.token("alice"), await server.token("bob"), await server.token("root", admin: true)
            )
            func curl(_ method: String, _ path: String, token: String? = nil, body: String? = nil) async throws
                -> (status: Int, body: String)
            {
                var arguments = [
                    "-sS", "--http\(version)", "--cacert", server.caPath, "-X", method, "-w",
                    "\n%{http_version} %{http_code}",
                    "--max-time", "10",
                ]
                if method == "HEAD" { arguments = ["-I"] + arguments.filter { $0 != "-X" && $0 != method } }
                if let token { arguments += ["-H", "Authorization: Bearer \(token)"] }
                if let body { arguments += ["-H", "Content-Type: application/json", "--data", body] }
                let run = try await Subprocess.run("/usr/bin/curl", arguments + [server.baseURL + path])
                #expect(run.status == 0, "\(method) \(path): curl \(run.status) \(run.error)")
                let lines = run.output.split(separator: "\n", omittingEmptySubsequences: false)
                let trailer = lines.last?.split(separator: " ") ?? []
                #expect(
                    trailer.first.map(String.init) == version, "\(method) \(path) over HTTP/\(trailer.first ?? "?")")
                return (Int(trailer.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
            }
            for path in ["/healthz", "/", "/client-config", "/metrics", "/openapi.yaml", "/app.js"] {
                #expect(try await curl("GET", path).status == 200, "GET \(path)")
                #expect(try await curl("HEAD", path).status == 200, "HEAD \(path)")
            }
            #expect(try await curl("GET", "/no-such-route").status == 404)
            #expect(try await curl("GET", "/v1/calls").status == 401)
            #expect(try await curl("HEAD", "/v1/events?device=b1", token: bob).status == 200)
            let ticket = try await curl("POST", "/v1/stream-tickets", token: bob, body: #"{"device":"b1"}"#)
            #expect(ticket.status == 201)
            let created = try await curl("POST", "/v1/calls", token: alice, body: #"{"to":"bob","device":"a1"}"#)
            #expect(created.status == 201)
            let call = (try? JSONSerialization.jsonObject(with: Data(created.body.utf8))) as? [String: Any]
            let id = try #require((call?["call"] as? [String: Any])?["id"] as? String)
            #expect(try await curl("GET", "/v1/calls", token: alice).status == 200)
            #expect(try await curl("GET", "/v1/calls/\(id)", token: bob).status == 200)
            #expect(
                try await curl("POST", "/v1/calls/\(id)/ringing", token: bob, body: #"{"device":"b1"}"#).status == 200)
            let signal = #"{"device":"a1","type":"end-of-candidates"}"#
            #expect(try await curl("POST", "/v1/calls/\(id)/signals", token: alice, body: signal).status == 202)
            #expect(
                try await curl("POST", "/v1/calls/\(id)/accept", token: bob, body: #"{"device":"b1"}"#).status == 200)
            #expect(
                try await curl("POST", "/v1/calls/\(id)/hangup", token: alice, body: #"{"device":"a1"}"#).status == 200)
            let second = try await curl("POST", "/v1/calls", token: alice, body: #"{"to":"bob","device":"a1"}"#)
            let secondCall = (try? JSONSerialization.jsonObject(with: Data(second.body.utf8))) as? [String: Any]
            let secondID = try #require((secondCall?["call"] as? [String: Any])?["id"] as? String)
            #expect(
                try await curl("POST", "/v1/calls/\(secondID)/decline", token: bob, body: #"{"device":"b1"}"#).status
                    == 200)
            #expect(try await curl("GET", "/v1/turn-credentials", token: alice).status == 200)
            #expect(try await curl("GET", "/v1/relay/allocations", token: admin).status == 200)
            #expect(try await curl("GET", "/v1/relay/allocations", token: alice).status == 403)
            // The event stream: its head and first events (curl stops at its deadline, the stream would not).
            let stream = try await Subprocess.run(
                "/usr/bin/curl",
                [
                    "-sS", "-N", "--http\(version)", "--cacert", server.caPath, "--max-time", "2", "-w",
                    "\n%{http_version} %{http_code}", "-H", "Authorization: Bearer \(bob)",
                    server.baseURL + "/v1/events?device=b2",
                ])
            #expect(stream.output.contains("event: hello"))
            #expect(stream.output.hasSuffix("\n\(version) 200"))
        }
    }
}
