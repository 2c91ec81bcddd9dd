import Foundation
import NIOCore
import SwitchboardServer
import Testing

/// Hostile connections: floods that never handshake, half-sent ClientHellos, slowloris headers, dripping bodies,
/// idle keep-alive connections, and more connections than the server holds. Each is cut by its own limit while
/// another client (127.0.0.1) keeps its event stream and gets answers.
@Suite(.serialized) struct ConnectionLimitTests {
    /// The first bytes of a TLS 1.2 ClientHello record: a handshake that never finishes arriving.
    static let halfClientHello: [UInt8] =
        [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03] + Array(repeating: 0x5A, count: 16)

    @Test func aHandshakeFloodFromOneAddressIsRefusedAndTimedOutWhileOthersAreServed() async throws {
        try await TestServer.with({ $0.connections.handshakeTimeout = 1 }) { server in
            let streams = try await server.helloStreams([("alice", "d1")])
            // 2,000 connections that never say a word, from one address: all but the pending cap are refused on
            // accept, and the rest are closed by the handshake deadline.
            var flood: [RawConnection] = []
            for _ in 0..<2000 {
                flood.append(try await RawConnection.open(port: server.port, from: "127.0.0.2", tls: false))
            }
            // Half a ClientHello each, from another address, inside its pending cap.
            var halfHellos: [RawConnection] = []
            for _ in 0..<16 {
                let connection = try await RawConnection.open(port: server.port, from: "127.0.0.3", tls: false)
                try await connection.send(Self.halfClientHello)
                halfHellos.append(connection)
            }
            // Meanwhile 127.0.0.1 is served: health, a call, and its event on the open stream.
            #expect(try await server.request(.GET, "/healthz").status == 200)
            let invite = try await server.invite("bob", to: "alice")
            #expect(invite.status == 201)
            try await streams[0].expect("call.invite")

            for connection in flood + halfHellos {
                #expect(await connection.closes(within: 20))
            }
            // Each flood connection was refused or timed out (slots freed by the deadline were taken again while
            // the flood went on), most of them refused. The test's own client (127.0.0.1) may lose a handshake of
            // its own to the 1 s deadline on a loaded machine, and retry: a few more timeouts, never fewer.
            let refused = try await server.metric(#"switchboard_connections_refused_total{reason="per_address"}"#) ?? 0
            let timedOut = try await server.metric(#"switchboard_connection_timeouts_total{phase="handshake"}"#) ?? 0
            #expect(
                (2000 + 16...2000 + 16 + 4).contains(refused + timedOut), "\(refused) refused, \(timedOut) timed out")
            #expect(refused >= 1000)
            #expect(timedOut >= Double(ConnectionLimits().maxPendingPerAddress + 16))
            // And the address can connect again once its connections are gone.
            let again = try await RawConnection.open(port: server.port, from: "127.0.0.2", tls: true)
            try await again.send("GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            #expect(await again.receive(until: "\r\n\r\n").hasPrefix("HTTP/1.1 200"))
            streams.forEach { $0.close() }
        }
    }

    @Test func aSlowlorisHeaderIsCutByTheHeaderDeadline() async throws {
        try await TestServer.with({ $0.connections.headerTimeout = 1 }) { server in
            let connection = try await RawConnection.open(port: server.port, from: "127.0.0.4", tls: true)
            try await connection.send("GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
            // One more header line every 200 ms, never the blank line that ends the header.
            let drip = Task {
                var line = 0
                while !Task.isCancelled, connection.channel.isActive {
                    try? await connection.send("X-Drip-\(line): 1\r\n")
                    line += 1
                    try? await Task.sleep(for: .milliseconds(200))
                }
            }
            #expect(await connection.closes(within: 10))
            drip.cancel()
            #expect(!connection.received.contains("HTTP/1.1"))
            #expect(try await server.metric(#"switchboard_connection_timeouts_total{phase="header"}"#) == 1)
        }
    }

    @Test func aDrippingBodyIsCutByTheBodyDeadline() async throws {
        try await TestServer.with({ $0.connections.bodyTimeout = 1 }) { server in
            let connection = try await RawConnection.open(port: server.port, from: "127.0.0.4", tls: true)
            try await connection.send(
                "POST /v1/calls HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer \(await server.token("bob"))\r\n"
                    + "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
            let drip = Task {
                while !Task.isCancelled, connection.channel.isActive {
                    try? await connection.send(" ")
                    try? await Task.sleep(for: .milliseconds(200))
                }
            }
            #expect(await connection.closes(within: 10))
            drip.cancel()
            #expect(try await server.metric(#"switchboard_connection_timeouts_total{phase="body"}"#) == 1)
        }
    }

    @Test func anIdleKeepAliveConnectionIsClosedButAnEventStreamIsNot() async throws {
        try await TestServer.with({ $0.connections.idleTimeout = 1 }) { server in
            let streams = try await server.helloStreams([("alice", "d1")])
            let connection = try await RawConnection.open(port: server.port, from: "127.0.0.4", tls: true)
            try await connection.send("GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            #expect(await connection.receive(until: "\"ok\"").hasPrefix("HTTP/1.1 200"))
            // The kept-alive connection that asks nothing more is closed by the idle deadline...
            #expect(await connection.closes(within: 10))
            #expect(try await server.metric(#"switchboard_connection_timeouts_total{phase="idle"}"#) == 1)
            // ...while the stream, opened before it and quiet as long, still delivers.
            try await server.invite("bob", to: "alice")
            try await streams[0].expect("call.invite")
            streams.forEach { $0.close() }
        }
    }

    @Test func aboveTheCapNewConnectionsAreRefusedAtOnceWhileEstablishedOnesWork() async throws {
        try await TestServer.with({
            $0.connections.maxConnections = 40
            $0.connections.maxPendingPerAddress = 1000
            // Long enough that any connection closed during the test was refused, not timed out.
            $0.connections.handshakeTimeout = 120
        }) { server in
            let streams = try await server.helloStreams([("alice", "d1")])
            // An established connection that has served a request: it must keep working above the cap. (Not the
            // HTTP client's pool, which may open a new connection for any request.)
            let established = try await RawConnection.open(port: server.port, from: "127.0.0.8", tls: true)
            try await established.send("GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            #expect(await established.receive(until: "\r\n\r\n").hasPrefix("HTTP/1.1 200"))
            let openBefore = Int(try await server.metric("switchboard_connections_open") ?? 0)
            #expect(openBefore >= 2)
            var held: [RawConnection] = []
            for _ in 0..<60 {
                held.append(try await RawConnection.open(port: server.port, from: "127.0.0.5", tls: false))
            }
            // Exactly the connections above the cap are closed, and counted.
            let expected = 60 - (40 - openBefore)
            let closed = await withTaskGroup(of: Bool.self) { group in
                for connection in held { group.addTask { await connection.closes(within: 3) } }
                return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(closed == expected)
            let refused = try await server.metric(#"switchboard_connections_refused_total{reason="capacity"}"#)
            #expect(refused == Double(expected))
            // The established stream and connection still work.
            let invite = #"{"to":"alice","device":"b1"}"#
            try await established.send(
                "POST /v1/calls HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer \(await server.token("bob"))\r\n"
                    + "Content-Type: application/json\r\nContent-Length: \(invite.utf8.count)\r\n\r\n\(invite)")
            #expect(await established.receive(until: "HTTP/1.1 201").contains("HTTP/1.1 201"))
            try await streams[0].expect("call.invite")
            established.close()
            // Once the holders let go, new connections are accepted again.
            held.forEach { $0.close() }
            for connection in held { _ = await connection.closes(within: 5) }
            // (The server frees a slot when it sees the close, which may be just after the client does: a
            // connection refused meanwhile is retried, for at most ten seconds.)
            var answered = false
            let deadline = ContinuousClock.now + .seconds(10)
            while !answered, ContinuousClock.now < deadline {
                let fresh = try await RawConnection.open(port: server.port, from: "127.0.0.6", tls: true)
                try? await fresh.send("GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                answered = await fresh.receive(until: "\r\n\r\n").hasPrefix("HTTP/1.1 200")
                fresh.close()
            }
            #expect(answered)
            streams.forEach { $0.close() }
        }
    }
}

/// Deadlines after a response written before its request was read whole.
@Suite struct EarlyResponseDeadlineTests {
    @Test func aConnectionAnsweredBeforeItsBodyStillGetsTheIdleDeadline() async throws {
        try await TestServer.with({ $0.connections.idleTimeout = 1 }) { server in
            // No token: the 401 is written before the one-byte body arrives.
            let connection = try await RawConnection.open(port: server.port, from: "127.0.0.7", tls: true)
            try await connection.send(
                "POST /v1/calls HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1\r\n\r\n"
            )
            #expect(await connection.receive(until: "\r\n\r\n").hasPrefix("HTTP/1.1 401"))
            try await connection.send("{")
            // The connection now waits for its next request and must be cut like any idle one.
            #expect(await connection.closes(within: 10))
            #expect(try await server.metric(#"switchboard_connection_timeouts_total{phase="idle"}"#) == 1)
        }
    }

    @Test func aConnectionWhoseFirstRequestWasMalformedKeepsTheHeaderDeadline() async throws {
        try await TestServer.with({
            $0.connections.headerTimeout = 1
            $0.connections.idleTimeout = 60
        }) { server in
            // Garbage for a request line: the server answers 400 and waits for the client to go; the connection
            // never sent a request, so it keeps its pending slot only as long as the header deadline.
            let openBefore = try await server.metric("switchboard_connections_open")
            let connection = try await RawConnection.open(
                port: server.port, from: "127.0.0.8", tls: true, stayOpen: true)
            try await connection.send("NOT HTTP AT ALL\r\n\r\n")
            #expect(await connection.receive(until: "\r\n\r\n").hasPrefix("HTTP/1.1 400"))
            // The client keeps its side open; the server's side is closed by the header deadline.
            let timeouts = #"switchboard_connection_timeouts_total{phase="header"}"#
            let deadline = ContinuousClock.now + .seconds(10)
            while try await server.metric(timeouts) != 1, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(try await server.metric(timeouts) == 1)
            // Closing waits up to 1 s for the client's close_notify, then the slot is free.
            while try await server.metric("switchboard_connections_open") != openBefore, ContinuousClock.now < deadline
            {
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(try await server.metric("switchboard_connections_open") == openBefore)
            connection.close()
        }
    }
}

/// The key the per-address limits count a client under.
@Suite struct ClientAddressTests {
    @Test func ipv4IsTheAddressAndIPv6IsItsSlash64() throws {
        func key(_ ip: String) throws -> String { ClientAddress.key(try SocketAddress(ipAddress: ip, port: 4000)) }
        #expect(try key("192.0.2.7") == "192.0.2.7")
        #expect(try key("::ffff:192.0.2.7") == "192.0.2.7")
        #expect(try key("2001:db8:1:2:3:4:5:6") == key("2001:db8:1:2:ffff::1"))
        #expect(try key("2001:db8:1:2::1") != key("2001:db8:1:3::1"))
        #expect(try key("2001:db8:1:2::1") == "20010db800010002::/64")
        #expect(ClientAddress.key(nil) == "other")
    }
}
