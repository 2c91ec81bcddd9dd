import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Testing

extension TestServer {
    /// bob's stream on b1 receives alice's invite and then goes away; returns the call and bob's last event id.
    func inviteBobAndDisconnect() async throws -> (callID: String, lastEventID: String) {
        let bob = try await stream("bob", device: "b1")
        defer { bob.close() }
        try await bob.expect("hello")
        let id = try await invite("alice", to: "bob").callID
        try await bob.expect("call.invite")
        return (id, try #require(bob.lastEventID))
    }
}

/// The SSE stream: resumption, tickets, heartbeats, slow readers, shutdown.
@Suite struct StreamTests {
    /// Whether the server's open-stream gauge reaches `count` within 5 s (polled: no event marks a stream forgotten).
    static func openStreamsFall(to count: Double, on server: TestServer) async throws -> Bool {
        for _ in 0..<250 {
            if try await server.metric("switchboard_sse_streams_open") == count { return true }
            try await Task.sleep(for: .milliseconds(20))
        }
        return false
    }

    @Test func resumesFromLastEventIDWithCurl() async throws {
        try await TestServer.with { server in
            let (id, resumeFrom) = try await server.inviteBobAndDisconnect()

            // While bob is away, the call moves on.
            try await server.act("hangup", id, as: "alice")
            let other = try await server.invite("carol", to: "bob").callID

            let curl = try CurlStream(
                url: server.baseURL + "/v1/events?device=b1", caPath: server.caPath,
                headers: ["Authorization: Bearer \(await server.token("bob"))", "Last-Event-ID: \(resumeFrom)"])
            defer { curl.stop() }
            try await curl.expect("hello")
            let ended = try await curl.expect("call.ended")
            #expect((ended["call"] as? [String: Any])?["id"] as? String == id)
            let invite = try await curl.expect("call.invite")
            #expect((invite["call"] as? [String: Any])?["id"] as? String == other)
        }
    }

    @Test func tooOldOrForeignLastEventIDGetsResync() async throws {
        try await TestServer.with({ $0.backlogSize = 2 }) { server in
            let bob = try await server.stream("bob", device: "b1")
            try await bob.expect("hello")
            let first = try await server.invite("alice", to: "bob").callID
            try await bob.expect("call.invite")
            let resumeFrom = try #require(bob.lastEventID)
            bob.close()
            try await server.act("hangup", first, as: "alice")
            for caller in ["carol", "dave"] {
                let id = try await server.invite(caller, to: "bob").callID
                try await server.act("hangup", id, as: caller)
            }
            // Four events happened since; the backlog keeps two: the gap cannot be replayed.
            let resumed = try await server.stream("bob", device: "b1", lastEventID: resumeFrom)
            defer { resumed.close() }
            try await resumed.expect("hello")
            try await resumed.expect("resync")

            let foreign = try await server.stream("bob", device: "b2", lastEventID: "otherserver-12")
            defer { foreign.close() }
            try await foreign.expect("hello")
            try await foreign.expect("resync")
            #expect(try await server.metric("switchboard_sse_resyncs_total") == 2)
        }
    }

    @Test func aResumeTooLargeForTheStreamResyncsInsteadOfLooping() async throws {
        try await TestServer.with({ $0.streamBufferFrames = 8 }) { server in
            let (id, resumeFrom) = try await server.inviteBobAndDisconnect()
            for _ in 0..<12 {
                try await server.act("signals", id, as: "alice", extra: ["type": "end-of-candidates"])
            }
            let resumed = try await server.stream("bob", device: "b1", lastEventID: resumeFrom)
            defer { resumed.close() }
            try await resumed.expect("hello")
            try await resumed.expect("resync")
            try await resumed.expect("call.invite")
            #expect(try await server.metric("switchboard_sse_slow_readers_dropped_total") == 0)
        }
    }

    @Test func aTicketStreamResumesFromTheLastEventIdQueryParameter() async throws {
        try await TestServer.with { server in
            let (id, resumeFrom) = try await server.inviteBobAndDisconnect()
            try await server.act("hangup", id, as: "alice")
            // A browser whose ticket was spent opens a new EventSource: no header, so the id rides in the query.
            let issued = try await server.request(.POST, "/v1/stream-tickets", token: await server.token("bob"))
            #expect(issued.status == 201)
            let ticket = try #require(issued.json["ticket"] as? String)
            let curl = try CurlStream(
                url: server.baseURL + "/v1/events?device=b1&ticket=\(ticket)&lastEventId=\(resumeFrom)",
                caPath: server.caPath)
            defer { curl.stop() }
            try await curl.expect("hello")
            #expect(
                (try await curl.expect("call.ended")["call"] as? [String: Any])?["endReason"] as? String == "cancelled")
        }
    }

    @Test func streamsPerUserAreCapped() async throws {
        try await TestServer.with({ $0.maxStreamsPerUser = 2 }) { server in
            let first = try await server.stream("bob", device: "b1")
            let second = try await server.stream("bob", device: "b2")
            defer {
                first.close()
                second.close()
            }
            try await first.expect("hello")
            try await second.expect("hello")
            let third = try await server.request(.GET, "/v1/events?device=b3", token: await server.token("bob"))
            #expect(third.status == 429)
            #expect(third.errorCode == "too_many_streams")
            // Reopening a device that already has a stream replaces it rather than counting twice.
            let again = try await server.stream("bob", device: "b2")
            defer { again.close() }
            try await again.expect("hello")
        }
    }

    @Test func ticketWorksOnceWithoutAnAuthorizationHeader() async throws {
        try await TestServer.with { server in
            let issued = try await server.post(
                "/v1/stream-tickets", token: await server.token("bob"), json: ["device": "tab1"])
            #expect(issued.status == 201)
            #expect(issued.json["expiresIn"] as? Int == 30)
            let ticket = try #require(issued.json["ticket"] as? String)
            let curl = try CurlStream(url: server.baseURL + "/v1/events?ticket=\(ticket)", caPath: server.caPath)
            defer { curl.stop() }
            let hello = try await curl.expect("hello")
            #expect(hello["user"] as? String == "bob")
            #expect(hello["device"] as? String == "tab1")

            let reused = try await server.request(.GET, "/v1/events?ticket=\(ticket)")
            #expect(reused.status == 401)
            #expect(reused.errorCode == "unauthorized")
            let forged = try await server.request(.GET, "/v1/events?ticket=forged")
            #expect(forged.status == 401)
            // The ticket never reaches the logs, and neither does a token.
            #expect(!server.logs.all.contains { $0.contains(ticket) })
        }
    }

    @Test func heartbeatsKeepIdleStreamsOpen() async throws {
        try await TestServer.with({ $0.heartbeatInterval = 0.1 }) { server in
            let curl = try CurlStream(
                url: server.baseURL + "/v1/events?device=b1", caPath: server.caPath,
                headers: ["Authorization: Bearer \(await server.token("bob"))"])
            defer { curl.stop() }
            try await curl.expect("hello")
            let stream = try await server.stream("alice", device: "a1")
            defer { stream.close() }
            try await stream.expect("hello")
            // Comments dispatch no event: wait for the next real one and check heartbeats came before it.
            while stream.comments < 2 {
                try await server.invite("carol", to: "alice")
                let id = try await stream.expect("call.invite")["call"] as? [String: Any]
                try await server.act("hangup", id?["id"] as? String ?? "", as: "carol")
                try await stream.expect("call.ended")
            }
            #expect(stream.comments >= 2)
        }
    }

    @Test func aClientThatGoesAwayIsForgottenWithoutWaitingForAHeartbeat() async throws {
        try await TestServer.with { server in
            let curl = try CurlStream(
                url: server.baseURL + "/v1/events?device=b1", caPath: server.caPath,
                headers: ["Authorization: Bearer \(await server.token("bob"))"])
            try await curl.expect("hello")
            #expect(try await server.metric("switchboard_sse_streams_open") == 1)
            curl.stop()
            // No event marks the server noticing; its gauge is polled (heartbeats are 15 s apart).
            #expect(try await Self.openStreamsFall(to: 0, on: server))
        }
    }

    @Test func supersededDeviceStreamIsClosed() async throws {
        try await TestServer.with { server in
            let old = try await server.stream("bob", device: "b1")
            try await old.expect("hello")
            let new = try await server.stream("bob", device: "b1")
            defer { new.close() }
            try await new.expect("hello")
            #expect(try await old.expect("superseded")["reconnect"] as? Bool == false)
            try await old.expectEnd()
        }
    }

    @Test func gracefulShutdownSendsAFinalEventAndCloses() async throws {
        let server = try await TestServer.start()
        let curl = try CurlStream(
            url: server.baseURL + "/v1/events?device=b1", caPath: server.caPath,
            headers: ["Authorization: Bearer \(await server.token("bob"))"])
        defer { curl.stop() }
        let stream = try await server.stream("alice", device: "a1")
        try await curl.expect("hello")
        try await stream.expect("hello")
        await server.shutdown()
        #expect(try await stream.expect("shutdown")["reconnect"] as? Bool == true)
        try await stream.expectEnd()
        try await curl.expect("shutdown")
        #expect(try await curl.next() == nil)
        await server.stop()
    }

    @Test func slowReaderIsCutAndTheServerDoesNotBuffer() async throws {
        try await TestServer.with({
            $0.streamBufferFrames = 8
            $0.maxBodyBytes = 256 * 1024
        }) { server in
            // A TLS client that sends the request and then never reads.
            let group = MultiThreadedEventLoopGroup.singleton
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .file(server.caPath)
            let context = try NIOSSLContext(configuration: tls)
            let channel = try await ClientBootstrap(group: group)
                .channelOption(.socketOption(.so_rcvbuf), value: 16 * 1024)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            try NIOSSLClientHandler(context: context, serverHostname: nil))
                    }
                }
                .connect(host: "127.0.0.1", port: server.port).get()
            let request =
                "GET /v1/events?device=slow HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(await server.token("bob"))\r\n\r\n"
            try await channel.writeAndFlush(ByteBuffer(string: request))
            try await channel.setOption(.autoRead, value: false).get()

            let id = try await server.invite("alice", to: "bob").callID
            let padding = String(repeating: "x", count: 100 * 1024)
            let offer = try Fixture.sdp("chrome-offer-av") + "a=x-padding:\(padding)\r\n"
            var sent = 0
            while try await server.metric("switchboard_sse_slow_readers_dropped_total") ?? 0 < 1 {
                let reply = try await server.act("signals", id, as: "alice", extra: ["type": "offer", "sdp": offer])
                #expect(reply.status == 202)
                sent += 1
                try #require(sent < 2000, "the slow reader was never cut")
            }
            // Once cut, the connection is closed by the server: reading now drains and reaches the end.
            try await channel.setOption(.autoRead, value: true).get()
            try await channel.closeFuture.get()
            #expect(try await server.metric("switchboard_sse_streams_open") == 0)
            #expect(sent * 100 * 1024 < 64 * 1024 * 1024)
        }
    }

    /// An HTTP/1.1 connection whose first request is `GET /v1/events` is served from the event loop (no task per
    /// stream): its refusal is still the API's JSON error, and the connection closes after it.
    @Test func aRefusedStreamGetsItsErrorAndItsConnectionCloses() async throws {
        try await TestServer.with { server in
            let connection = try await RawConnection.open(port: server.port, tls: true)
            try await connection.send("GET /v1/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
            let reply = await connection.receive(until: "}}")
            #expect(reply.hasPrefix("HTTP/1.1 401"), "\(reply.prefix(80))")
            #expect(reply.lowercased().contains("connection: close"))
            #expect(reply.contains(#"{"error":{"code":"unauthorized""#))
            #expect(await connection.closes(within: 5))
        }
    }

    /// A stream served from the event loop gets its events live, and a request pipelined behind it (which it could
    /// never answer) closes the connection, the stream with it.
    @Test func aRequestPipelinedBehindAStreamClosesItsConnection() async throws {
        try await TestServer.with { server in
            let connection = try await RawConnection.open(port: server.port, tls: true)
            try await connection.send(
                "GET /v1/events?device=b1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer \(await server.token("bob"))\r\n\r\n"
            )
            #expect(await connection.receive(until: "event: hello").hasPrefix("HTTP/1.1 200"))
            #expect(!connection.received.lowercased().contains("content-length"))
            try await server.invite("alice", to: "bob")
            #expect(await connection.receive(until: "event: call.invite").contains("event: call.invite"))
            try await connection.send("GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            #expect(await connection.closes(within: 5))
            #expect(!connection.received.contains("HTTP/1.1 200 OK\r\nContent-Type: application/json"))
            #expect(try await Self.openStreamsFall(to: 0, on: server))
        }
    }

    /// A stream opened after another request on the same kept-alive connection goes through Hummingbird's task as
    /// before, and works the same.
    @Test func aStreamAfterAnotherRequestOnTheSameConnectionWorks() async throws {
        try await TestServer.with { server in
            let connection = try await RawConnection.open(port: server.port, tls: true)
            let token = await server.token("bob")
            try await connection.send("GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            #expect(await connection.receive(until: "\r\n\r\n").hasPrefix("HTTP/1.1 200"))
            try await connection.send(
                "GET /v1/events?device=b1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer \(token)\r\n\r\n")
            #expect(await connection.receive(until: "event: hello").contains("text/event-stream"))
            try await server.invite("alice", to: "bob")
            #expect(await connection.receive(until: "event: call.invite").contains("event: call.invite"))
            connection.close()
        }
    }

    /// Streams opened in a burst are admitted a few at a time (here one): each open that waits its turn is served
    /// once the one before it is, and every stream gets its events.
    @Test func aBurstOfStreamsIsAdmittedOneOpenAtATime() async throws {
        try await TestServer.with({ $0.connections.concurrentStreamOpens = 1 }) { server in
            let users = (1...6).map { "burst\($0)" }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for user in users {
                    group.addTask {
                        let stream = try await server.stream(user, device: "d1")
                        defer { stream.close() }
                        try await stream.expect("hello")
                        try await server.invite("alice", to: user)
                        try await stream.expect("call.invite")
                    }
                }
                try await group.waitForAll()
            }
        }
    }
}
