import DTLSSRTP
import Testing

/// The server's stateless cookie exchange (RFC 6347 §4.2.1) and its cap on half-open handshakes.
@Suite struct DTLSListenerTests {
    static let peerA: [UInt8] = [127, 0, 0, 1, 0x13, 0x88]
    static let peerB: [UInt8] = [127, 0, 0, 2, 0x13, 0x88]

    struct Setup {
        let serverIdentity: DTLSIdentity
        let clientIdentity: DTLSIdentity
        let listener: DTLSListener

        init(maximumHalfOpen: Int = 256, profiles: [SRTPProfile] = [.aeadAES128GCM, .aes128CMHMACSHA1_80]) throws {
            serverIdentity = try DTLSIdentity.generate()
            clientIdentity = try DTLSIdentity.generate()
            listener = try DTLSListener(
                .init(identity: serverIdentity, profiles: profiles, maximumHalfOpen: maximumHalfOpen))
        }

        func client(profiles: [SRTPProfile] = [.aeadAES128GCM, .aes128CMHMACSHA1_80]) throws -> DTLSEngine {
            try DTLSEngine(
                .init(
                    role: .client, identity: clientIdentity, remoteFingerprint: serverIdentity.fingerprint(),
                    profiles: profiles))
        }

        /// Runs `client` through the cookie exchange; returns its second ClientHello (the one with the cookie).
        func clientHelloWithCookie(
            _ client: DTLSEngine, from peer: [UInt8] = peerA, now: ContinuousClock.Instant = .now
        ) throws -> [[UInt8]] {
            let hello = try client.start(now: now)
            #expect(hello.count == 1)
            guard
                case .reply(let verifyRequest) = listener.receive(
                    hello[0], from: peer, remoteFingerprint: clientIdentity.fingerprint(), now: now)
            else {
                Issue.record("a ClientHello without a cookie was not answered with a HelloVerifyRequest")
                return []
            }
            #expect(verifyRequest.count == 1)
            #expect(DTLSListenerTests.isHelloVerifyRequest(verifyRequest[0]))
            return try verifyRequest.flatMap { try client.receive($0, now: now) }
        }
    }

    /// Record type 22 (handshake), message type 3 (hello_verify_request) right after the 13-byte record header.
    static func isHelloVerifyRequest(_ datagram: [UInt8]) -> Bool {
        datagram.count > 13 && datagram[0] == 22 && datagram[13] == 3
    }

    /// Pumps an accepted engine and its client until neither has anything to send.
    static func finish(_ client: DTLSEngine, _ server: DTLSEngine, _ flight: [[UInt8]]) throws {
        var toClient = flight
        for _ in 0..<10 where !(client.isEstablished && server.isEstablished) {
            let toServer = try toClient.flatMap { try client.receive($0) }
            toClient = try toServer.flatMap { try server.receive($0) }
        }
    }

    @Test(arguments: [SRTPProfile.aeadAES128GCM, .aes128CMHMACSHA1_80])
    func aHandshakeThroughTheCookieExchangeAgreesOnKeys(profile: SRTPProfile) throws {
        let setup = try Setup()
        let client = try setup.client(profiles: [profile])
        let secondHello = try setup.clientHelloWithCookie(client)
        #expect(secondHello.count == 1)
        guard
            case .accepted(let server, let flight) = setup.listener.receive(
                secondHello[0], from: Self.peerA, remoteFingerprint: setup.clientIdentity.fingerprint())
        else {
            Issue.record("the ClientHello with a valid cookie was not accepted")
            return
        }
        #expect(!flight.isEmpty && flight.allSatisfy { $0.count <= 1200 })
        #expect(setup.listener.halfOpenCount() == 1)
        try Self.finish(client, server, flight)
        guard case .established(let clientKeys) = client.state, case .established(let serverKeys) = server.state
        else {
            Issue.record("not established: \(client.state) / \(server.state)")
            return
        }
        #expect(clientKeys.profile == profile && serverKeys.profile == profile)
        #expect(clientKeys.localKey == serverKeys.remoteKey && clientKeys.remoteKey == serverKeys.localKey)
        #expect(clientKeys.localSalt == serverKeys.remoteSalt && clientKeys.remoteSalt == serverKeys.localSalt)
        #expect(setup.listener.halfOpenCount() == 0)
    }

    @Test func clientHellosWithoutACookieKeepNothing() throws {
        let setup = try Setup(maximumHalfOpen: 1)
        let hello = try setup.client().start()[0]
        // A flood of spoofed ClientHellos from many addresses: each gets a HelloVerifyRequest no larger than itself
        // (no amplification), and not one engine exists afterwards.
        for index in 0..<2_000 {
            let peer: [UInt8] = [10, UInt8(index >> 8), UInt8(index & 0xff), 1, 0x13, 0x88]
            guard
                case .reply(let reply) = setup.listener.receive(
                    hello, from: peer, remoteFingerprint: setup.clientIdentity.fingerprint())
            else {
                Issue.record("ClientHello \(index) was not answered statelessly")
                return
            }
            #expect(reply.count == 1 && reply[0].count <= hello.count)
        }
        #expect(setup.listener.halfOpenCount() == 0)
        // The cap of one half-open handshake is still free for a real client.
        let client = try setup.client()
        let secondHello = try setup.clientHelloWithCookie(client)
        guard
            case .accepted = setup.listener.receive(
                secondHello[0], from: Self.peerA, remoteFingerprint: setup.clientIdentity.fingerprint())
        else {
            Issue.record("a real client was refused after the flood")
            return
        }
    }

    @Test func aCookieIsBoundToThePeerAddress() throws {
        let setup = try Setup()
        let secondHello = try setup.clientHelloWithCookie(try setup.client(), from: Self.peerA)
        // The same ClientHello, cookie and all, replayed from another address: asked for a cookie again.
        let outcome = setup.listener.receive(
            secondHello[0], from: Self.peerB, remoteFingerprint: setup.clientIdentity.fingerprint())
        guard case .reply(let reply) = outcome, Self.isHelloVerifyRequest(reply[0]) else {
            Issue.record("a cookie made for one address was accepted from another: \(outcome)")
            return
        }
        #expect(setup.listener.halfOpenCount() == 0)
    }

    @Test func cookiesOutliveOneSecretRotationButNotTwo() throws {
        let setup = try Setup()
        let start = ContinuousClock.now
        let lifetime = setup.listener.configuration.cookieSecretLifetime
        let fresh = try setup.clientHelloWithCookie(try setup.client(), now: start)
        let stale = try setup.clientHelloWithCookie(try setup.client(), now: start)
        // One rotation later the previous secret still verifies.
        guard
            case .accepted = setup.listener.receive(
                fresh[0], from: Self.peerA, remoteFingerprint: setup.clientIdentity.fingerprint(),
                now: start + lifetime)
        else {
            Issue.record("a cookie from the previous secret was refused")
            return
        }
        // Two rotations later it does not.
        let outcome = setup.listener.receive(
            stale[0], from: Self.peerA, remoteFingerprint: setup.clientIdentity.fingerprint(),
            now: start + lifetime * 2)
        guard case .reply = outcome else {
            Issue.record("a cookie two secrets old was accepted: \(outcome)")
            return
        }
    }

    @Test func halfOpenHandshakesAreCapped() throws {
        let setup = try Setup(maximumHalfOpen: 2)
        let fingerprint = setup.clientIdentity.fingerprint()
        let clients = try (0..<3).map { _ in try setup.client() }
        let hellos = try clients.map { try setup.clientHelloWithCookie($0) }
        var servers: [DTLSEngine] = []
        var flights: [[[UInt8]]] = []
        for hello in hellos.prefix(2) {
            guard
                case .accepted(let server, let flight) = setup.listener.receive(
                    hello[0], from: Self.peerA, remoteFingerprint: fingerprint)
            else {
                Issue.record("a ClientHello under the cap was refused")
                return
            }
            servers.append(server)
            flights.append(flight)
        }
        #expect(setup.listener.halfOpenCount() == 2)
        let refused = setup.listener.receive(hellos[2][0], from: Self.peerA, remoteFingerprint: fingerprint)
        guard case .dropped(.tooManyHalfOpen) = refused else {
            Issue.record("a third handshake over the cap of two was let in: \(refused)")
            return
        }
        // One handshake completes; the third client's retransmitted ClientHello now gets in.
        try Self.finish(clients[0], servers[0], flights[0])
        #expect(servers[0].isEstablished)
        #expect(setup.listener.halfOpenCount() == 1)
        guard
            case .accepted(let third, let flight) = setup.listener.receive(
                hellos[2][0], from: Self.peerA, remoteFingerprint: fingerprint)
        else {
            Issue.record("a ClientHello was refused after a slot freed")
            return
        }
        try Self.finish(clients[2], third, flight)
        #expect(third.isEstablished && clients[2].isEstablished)
    }

    @Test func aHandshakePastItsDeadlineNoLongerCountsAsHalfOpen() throws {
        let setup = try Setup(maximumHalfOpen: 1)
        let start = ContinuousClock.now
        let fingerprint = setup.clientIdentity.fingerprint()
        let first = try setup.clientHelloWithCookie(try setup.client(), now: start)
        guard
            case .accepted(let abandoned, _) = setup.listener.receive(
                first[0], from: Self.peerA, remoteFingerprint: fingerprint, now: start)
        else {
            Issue.record("first handshake refused")
            return
        }
        let second = try setup.clientHelloWithCookie(try setup.client(), now: start)
        guard
            case .dropped(.tooManyHalfOpen) = setup.listener.receive(
                second[0], from: Self.peerA, remoteFingerprint: fingerprint, now: start)
        else {
            Issue.record("the cap of one was not enforced")
            return
        }
        let deadline = start + setup.listener.configuration.handshakeTimeout
        #expect(setup.listener.halfOpenCount(now: deadline) == 0)
        // The abandoned engine fails on its own deadline too.
        #expect(throws: DTLSError.self) { try abandoned.handleTimeout(now: deadline) }
        guard
            case .accepted = setup.listener.receive(
                second[0], from: Self.peerA, remoteFingerprint: fingerprint, now: deadline)
        else {
            Issue.record("a slot held by an expired handshake was not freed")
            return
        }
    }

    @Test func garbageAndTruncatedDatagramsAreDroppedSilently() throws {
        let setup = try Setup()
        let fingerprint = setup.clientIdentity.fingerprint()
        let hello = try setup.client().start()[0]
        var generator = SystemRandomNumberGenerator()
        let inputs: [[UInt8]] =
            [
                [], [22], [23, 0xFE, 0xFD] + [UInt8](repeating: 0, count: 40), Array(hello.prefix(20)),
                Array(hello.prefix(hello.count - 1)), [UInt8](repeating: 22, count: 13),
            ]
            + (0..<200).map { _ in [22] + (0..<Int.random(in: 0..<300)).map { _ in UInt8.random(in: 0...255) } }
            + (0..<200).map { _ in
                // A real ClientHello with one byte changed.
                var mutated = hello
                mutated[Int.random(in: 13..<hello.count, using: &generator)] ^= UInt8.random(in: 1...255)
                return mutated
            }
        for input in inputs {
            switch setup.listener.receive(input, from: Self.peerA, remoteFingerprint: fingerprint) {
            case .accepted: Issue.record("a malformed datagram produced an engine")
            case .reply(let reply): #expect(reply.allSatisfy(Self.isHelloVerifyRequest))
            case .dropped: break
            }
        }
        #expect(setup.listener.halfOpenCount() == 0)
        // Still serving.
        let secondHello = try setup.clientHelloWithCookie(try setup.client())
        guard case .accepted = setup.listener.receive(secondHello[0], from: Self.peerA, remoteFingerprint: fingerprint)
        else {
            Issue.record("the listener stopped working after malformed input")
            return
        }
    }
}
