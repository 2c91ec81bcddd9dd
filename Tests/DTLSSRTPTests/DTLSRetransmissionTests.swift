import DTLSSRTP
import Testing

/// Lost and reordered handshake datagrams, and the handshake deadline.
///
/// OpenSSL 3.0 runs the retransmission timer on the wall clock and has no hook to inject one, so these tests use a
/// 20 ms first interval and wait for the delay the engine reports (`retransmissionDelay`) before calling
/// `handleTimeout`: waiting for a timer, not sleeping in place of an event. The handshake deadline is on the
/// caller's clock and is tested without waiting.
@Suite struct DTLSRetransmissionTests {
    static func engines(mtu: Int = 1200, interval: Duration = .milliseconds(20)) throws -> (DTLSEngine, DTLSEngine) {
        let clientIdentity = try DTLSIdentity.generate()
        let serverIdentity = try DTLSIdentity.generate()
        let client = try DTLSEngine(
            .init(
                role: .client, identity: clientIdentity, remoteFingerprint: serverIdentity.fingerprint(), mtu: mtu,
                initialRetransmitInterval: interval))
        let server = try DTLSEngine(
            .init(
                role: .server, identity: serverIdentity, remoteFingerprint: clientIdentity.fingerprint(), mtu: mtu,
                initialRetransmitInterval: interval))
        return (client, server)
    }

    /// Waits for `engine`'s retransmission timer and lets it fire.
    static func retransmit(_ engine: DTLSEngine) async throws -> [[UInt8]] {
        if let delay = engine.retransmissionDelay { try await Task.sleep(for: delay + .milliseconds(1)) }
        return try engine.handleTimeout()
    }

    /// Delivers both ways (in reverse order when `reversed`), letting timers fire when nothing moves.
    static func pump(_ client: DTLSEngine, _ server: DTLSEngine, _ first: [[UInt8]], reversed: Bool = false)
        async throws
    {
        var toServer = first
        for _ in 0..<30 where !(client.isEstablished && server.isEstablished) {
            var toClient: [[UInt8]] = []
            for datagram in reversed ? toServer.reversed() : toServer { toClient += try server.receive(datagram) }
            toServer = []
            for datagram in reversed ? toClient.reversed() : toClient { toServer += try client.receive(datagram) }
            if toServer.isEmpty && !(client.isEstablished && server.isEstablished) {
                toServer = try await retransmit(client)
                if !server.isEstablished {
                    for datagram in try await retransmit(server) { toServer += try client.receive(datagram) }
                }
            }
        }
    }

    @Test func lostFlightsAreRetransmittedAndTheHandshakeCompletes() async throws {
        let (client, server) = try Self.engines()
        let lostHello = try client.start()
        #expect(!lostHello.isEmpty)
        // The ClientHello is lost: the client's timer resends it.
        let resent = try await Self.retransmit(client)
        #expect(!resent.isEmpty)
        var serverFlight: [[UInt8]] = []
        for datagram in resent { serverFlight += try server.receive(datagram) }
        #expect(!serverFlight.isEmpty)
        // The server's answer is lost too: the server's timer resends it.
        let again = try await Self.retransmit(server)
        #expect(!again.isEmpty)
        var toServer: [[UInt8]] = []
        for datagram in again { toServer += try client.receive(datagram) }
        try await Self.pump(client, server, toServer)
        #expect(client.isEstablished && server.isEstablished)
    }

    @Test func reorderedDatagramsOfAFlightAreRecovered() async throws {
        // A small MTU splits each flight over several datagrams; they arrive in reverse order.
        let (client, server) = try Self.engines(mtu: 300)
        let first = try client.start()
        try await Self.pump(client, server, first, reversed: true)
        #expect(client.isEstablished && server.isEstablished)
    }

    @Test func anUnansweredHandshakeFailsAtItsDeadlineOnTheCallersClock() throws {
        let (client, _) = try Self.engines(interval: .seconds(1))
        let t0 = ContinuousClock.now
        let hello = try client.start(now: t0)
        #expect(hello.allSatisfy { $0.count <= 1200 })
        let delay = try #require(client.retransmissionDelay)
        #expect(delay > .zero && delay <= .seconds(1))
        // Not due on OpenSSL's timer yet, and the 20 s deadline has not passed on ours.
        #expect(try client.handleTimeout(now: t0 + .seconds(19)).isEmpty)
        #expect(throws: DTLSError(.handshakeTimeout, "")) { try client.handleTimeout(now: t0 + .seconds(20)) }
        guard case .failed(let error) = client.state else {
            Issue.record("the engine did not fail")
            return
        }
        #expect(error.code == .handshakeTimeout)
        #expect(throws: DTLSError(.handshakeTimeout, "")) { try client.receive([22, 0xFE, 0xFD]) }
    }

    @Test func anEstablishedEngineHasNothingToRetransmit() async throws {
        let (client, server) = try Self.engines(interval: .seconds(60))
        try await Self.pump(client, server, try client.start())
        #expect(client.isEstablished && server.isEstablished)
        #expect(try client.handleTimeout(now: .now + .seconds(3600)).isEmpty)
    }
}
