import RelayCore
import STUN
import Testing

@Suite struct AuthenticationTests {
    @Test func bindingAnswersWithTheMappedAddressAndNothingMore() throws {
        var server = TURNServer(configuration: configuration())
        let client = Client()
        let request = STUNMessage(type: .bindingRequest, transactionID: .random())
        let reply = try #require(Client.reply(server.receive(try request.encode(), from: client.fiveTuple, now: start)))
        #expect(reply.type == .bindingSuccess && reply.transactionID == request.transactionID)
        #expect(try reply.xorMappedAddress == client.fiveTuple.client)
        // Only what RFC 8489 requires plus FINGERPRINT: no SOFTWARE to an unauthenticated client.
        #expect(reply.attributes.map(\.type) == [.xorMappedAddress, .fingerprint])
        #expect(reply.verifyFingerprint() == true)
    }

    @Test func anAllocateWithoutCredentialsIsChallengedStatelessly() throws {
        var server = TURNServer(configuration: configuration())
        let client = Client()
        let reply = try #require(
            Client.reply(
                server.receive(
                    try client.request(.allocate, [.requestedTransport(17)]).encode(), from: client.fiveTuple,
                    now: start)))
        #expect(reply.code == 401)
        #expect(try reply.realm == realm)
        #expect(try reply.nonce?.isEmpty == false)
        #expect(reply.attributes.map(\.type) == [.errorCode, .realm, .nonce, .fingerprint])
        #expect(server.allocationCount == 0)
    }

    @Test func allocateWithLongTermCredentialsSucceedsWithAProtectedResponse() throws {
        var server = TURNServer(configuration: configuration())
        var client = Client()
        let replyReply = client.allocate(on: &server)
        let reply = try #require(replyReply)
        #expect(reply.isSuccess, "\(String(describing: reply.code))")
        #expect(try reply.xorRelayedAddress == TransportAddress(ip: relayIP, port: 50_000))
        #expect(try reply.xorMappedAddress == client.fiveTuple.client)
        #expect(try reply.lifetime == 600)
        #expect(reply.verifyIntegrity(key: client.key) == .valid)
        #expect(reply.verifyFingerprint() == true)
        #expect(server.allocationCount == 1)
    }

    @Test func wrongPasswordsAndUnknownUsersGet401() throws {
        var server = TURNServer(configuration: configuration())
        var wrong = Client(password: "not-it")
        #expect(wrong.allocate(on: &server)?.code == 401)
        var stranger = Client(port: 40_001, username: "mallory", password: "secret")
        #expect(stranger.allocate(on: &server)?.code == 401)
        #expect(server.allocationCount == 0)
    }

    @Test func aTamperedRequestIsRefused() throws {
        var server = TURNServer(configuration: configuration())
        var client = Client()
        _ = client.send(.binding, [], to: &server)  // learn nothing; a 401 on Allocate gives the nonce
        let challenge = Client.reply(
            server.receive(try client.request(.allocate, []).encode(), from: client.fiveTuple, now: start))
        let nonce = try #require(try challenge?.nonce)
        var bytes = try client.request(
            .allocate, [.requestedTransport(17), .username("alice"), .realm(realm), .nonce(nonce)]
        ).encode(integrity: client.key)
        bytes[24] ^= 0x01  // the protocol of REQUESTED-TRANSPORT, covered by MESSAGE-INTEGRITY
        #expect(Client.reply(server.receive(bytes, from: client.fiveTuple, now: start))?.code == 401)
    }

    @Test func aNonceExpiresInto438AndTheNewOneWorks() throws {
        var server = TURNServer(configuration: configuration())
        var client = Client()
        #expect(client.allocate(on: &server, lifetime: 1200)?.isSuccess == true)
        let later = start + .seconds(601)
        let staleReply = client.call(.refresh, [.lifetime(600)], on: &server, now: later)
        let stale = try #require(staleReply)
        #expect(stale.code == 438)
        client.nonce = try stale.nonce
        #expect(client.call(.refresh, [.lifetime(600)], on: &server, now: later)?.isSuccess == true)
    }

    @Test func aNonceIsBoundToTheClientAddress() throws {
        var server = TURNServer(configuration: configuration())
        var first = Client(port: 40_000)
        #expect(first.allocate(on: &server)?.isSuccess == true)
        var second = Client(port: 40_002)
        second.nonce = first.nonce
        #expect(second.allocate(on: &server)?.code == 438)
    }

    @Test func restCredentialsAreVerifiedWithTheSharedSecret() throws {
        var server = TURNServer(configuration: configuration())
        let issued = EphemeralCredential.make(secret: sharedSecret, user: "carol", expiry: start.seconds + 3600)
        var client = Client(username: issued.username, password: issued.password)
        let replyReply = client.allocate(on: &server)
        let reply = try #require(replyReply)
        #expect(reply.isSuccess)
        #expect(server.snapshot(now: start).first?.user == "carol")
        // Expired, or signed with another secret: refused.
        let expired = EphemeralCredential.make(secret: sharedSecret, user: "carol", expiry: start.seconds - 1)
        var late = Client(port: 40_001, username: expired.username, password: expired.password)
        #expect(late.allocate(on: &server)?.code == 401)
        let forged = EphemeralCredential.make(
            secret: Array("another-secret-another-secret-xx".utf8), user: "carol", expiry: start.seconds + 3600)
        var forger = Client(port: 40_002, username: forged.username, password: forged.password)
        #expect(forger.allocate(on: &server)?.code == 401)
    }

    @Test func everyConfiguredSharedSecretVerifiesDuringARotation() throws {
        var rotated = configuration()
        let next = Array("the-next-shared-secret-of-32-bytes-!!".utf8)
        rotated.sharedSecrets = [next, sharedSecret]
        var server = TURNServer(configuration: rotated)
        for (port, secret) in [(UInt16(40_010), next), (40_011, sharedSecret)] {
            let issued = EphemeralCredential.make(secret: secret, user: "dave", expiry: start.seconds + 600)
            var client = Client(port: port, username: issued.username, password: issued.password)
            #expect(client.allocate(on: &server)?.isSuccess == true)
        }
        rotated.sharedSecrets = [next]
        var retired = TURNServer(configuration: rotated)
        let old = EphemeralCredential.make(secret: sharedSecret, user: "dave", expiry: start.seconds + 600)
        var client = Client(username: old.username, password: old.password)
        #expect(client.allocate(on: &retired)?.code == 401)
    }

    @Test func unauthenticatedRequestsAreRateLimitedPerSource() throws {
        var server = TURNServer(configuration: configuration(burst: 5))
        let client = Client()
        let request = try STUNMessage(type: .bindingRequest, transactionID: .random()).encode()
        var answered = 0
        var limited = 0
        for _ in 0..<10 {
            for action in server.receive(request, from: client.fiveTuple, now: start) {
                if case .sendToClient = action { answered += 1 }
                if case .dropped(.rateLimited) = action { limited += 1 }
            }
        }
        #expect(answered == 5 && limited == 5)
        // Another source has its own bucket; the first refills with time.
        let other = Client(port: 1).fiveTuple
        let elsewhere = FiveTuple(client: TransportAddress(ip: IPAddress("192.0.2.77")!, port: 1), server: other.server)
        #expect(Client.reply(server.receive(request, from: elsewhere, now: start)) != nil)
        #expect(Client.reply(server.receive(request, from: client.fiveTuple, now: start + .seconds(1))) != nil)
    }

    @Test func aRESTUsernameWithAnAbsurdExpiryIsRefusedNotACrash() throws {
        var server = TURNServer(configuration: configuration())
        for username in ["9223372036854775807:x", "-9223372036854775808:x", "\(start.seconds + 400 * 86_400):x"] {
            var client = Client(username: username, password: "anything")
            #expect(client.allocate(on: &server)?.code == 401, "\(username)")
        }
    }

    @Test func ipv6SourcesShareABucketPerSlash64() throws {
        var server = TURNServer(configuration: configuration(burst: 2))
        let request = try STUNMessage(type: .bindingRequest, transactionID: .random()).encode()
        var answered = 0
        for host in ["2001:4860::1", "2001:4860::2", "2001:4860::3", "2001:4860:0:0:ffff::9"] {
            let source = FiveTuple(client: peer(host, port: 5000), server: serverAddress)
            if Client.reply(server.receive(request, from: source, now: start)) != nil { answered += 1 }
        }
        #expect(answered == 2)
        let elsewhere = FiveTuple(client: peer("2001:4860:0:1::1", port: 5000), server: serverAddress)
        #expect(Client.reply(server.receive(request, from: elsewhere, now: start)) != nil)
    }

    @Test func unknownAttributesAreAnsweredOnlyAfterAuthentication() throws {
        var server = TURNServer(configuration: configuration())
        let client = Client()
        let request = try client.request(.allocate, [.requestedTransport(17), .dontFragment]).encode()
        #expect(Client.reply(server.receive(request, from: client.fiveTuple, now: start))?.code == 401)
    }

    @Test func garbageIsDroppedAndCounted() {
        var server = TURNServer(configuration: configuration())
        let client = Client()
        for bytes: [UInt8] in [[], [0, 1], [UInt8](repeating: 0xFF, count: 40), [0, 1, 0, 0, 0x21, 0x12, 0xA4, 0x42]] {
            let actions = server.receive(bytes, from: client.fiveTuple, now: start)
            guard actions.count == 1, case .dropped(.malformed) = actions[0] else {
                Issue.record("\(bytes) gave \(actions)")
                continue
            }
        }
    }
}

@Suite struct AllocationTests {
    @Test func aRetransmittedAllocateGetsTheSameResponseAndAnotherOneGets437() throws {
        var server = TURNServer(configuration: configuration())
        var client = Client()
        let transaction = TransactionID.random()
        let firstReply = client.call(.allocate, [.requestedTransport(17)], on: &server, transaction: transaction)
        let first = try #require(firstReply)
        #expect(first.isSuccess)
        let againReply = client.call(.allocate, [.requestedTransport(17)], on: &server, transaction: transaction)
        let again = try #require(againReply)
        #expect(again == first)
        #expect(client.allocate(on: &server)?.code == 437)
        #expect(server.allocationCount == 1)
    }

    @Test func allocateRequestsTheServerCannotHonourGetTheRFCsCodes() throws {
        var server = TURNServer(configuration: configuration())
        var port: UInt16 = 41_000
        func attempt(_ attributes: [STUNAttribute]) -> STUNMessage? {
            var client = Client(port: port)
            port += 1
            return client.call(.allocate, attributes, on: &server)
        }
        #expect(attempt([])?.code == 400)  // no REQUESTED-TRANSPORT
        #expect(attempt([.requestedTransport(6)])?.code == 442)  // TCP
        let dontFragment = try #require(attempt([.requestedTransport(17), .dontFragment]))
        #expect(dontFragment.code == 420)
        #expect(try dontFragment.unknownAttributes == [STUNAttributeType.dontFragment.rawValue])
        #expect(attempt([.requestedTransport(17), .reservationToken(42)])?.code == 508)  // no such reservation
        #expect(
            attempt([.requestedTransport(17), .reservationToken(42), .evenPort(reserveNextHigherPort: false)])?.code
                == 400)
        #expect(attempt([.requestedTransport(17), .requestedAddressFamily(.ipv6)])?.code == 440)
        #expect(server.allocationCount == 0)
        // EVEN-PORT without reservation is honoured: the adapter is asked for an even port.
        var even = Client(port: 42_000)
        let actions = even.send(
            .allocate, [.requestedTransport(17), .evenPort(reserveNextHigherPort: false)], to: &server)
        guard case .openRelay(let pending) = actions.first else {
            Issue.record("EVEN-PORT without R was refused: \(actions)")
            return
        }
        #expect(pending.evenPort)
    }

    @Test func evenPortWithRReservesTheNextPortForTheAllocateThatNamesItsToken() throws {
        var server = TURNServer(configuration: configuration())
        var rtp = Client(port: 42_100)
        let actions = rtp.send(
            .allocate, [.requestedTransport(17), .evenPort(reserveNextHigherPort: true)], to: &server)
        guard case .openRelay(let pending) = actions.first, let reservation = pending.reservation else {
            Issue.record("EVEN-PORT R=1 did not ask for a port pair: \(actions)")
            return
        }
        #expect(pending.evenPort && pending.reservedPort == nil && reservation != pending.id)
        let even = TransportAddress(ip: relayIP, port: 50_000)
        let odd = TransportAddress(ip: relayIP, port: 50_001)
        let response = try #require(Client.reply(server.relayOpened(pending.id, at: even, reserved: odd, now: start)))
        #expect(try response.isSuccess && response.xorRelayedAddress == even)
        let token = try #require(try response.reservationToken)

        // Another user cannot claim it; nor can the token come with EVEN-PORT.
        var mallory = Client(port: 42_101, username: "bob", password: "hunter2")
        #expect(mallory.call(.allocate, [.requestedTransport(17), .reservationToken(token)], on: &server)?.code == 508)
        var rtcp = Client(port: 42_102)
        #expect(
            rtcp.call(
                .allocate,
                [.requestedTransport(17), .reservationToken(token), .evenPort(reserveNextHigherPort: false)],
                on: &server)?.code == 400)

        // The owner's Allocate with the token gets the reserved port, under the reservation's id (its socket).
        let claim = rtcp.send(.allocate, [.requestedTransport(17), .reservationToken(token)], to: &server)
        guard case .openRelay(let claimed) = claim.first else {
            Issue.record("the token was not honoured: \(claim)")
            return
        }
        #expect(claimed.id == reservation && claimed.reservedPort == 50_001 && claimed.reservation == nil)
        let second = try #require(Client.reply(server.relayOpened(claimed.id, at: odd, now: start)))
        #expect(try second.isSuccess && second.xorRelayedAddress == odd && second.reservationToken == nil)
        #expect(server.allocationCount == 2)
        // A token is good once.
        var again = Client(port: 42_103)
        #expect(again.call(.allocate, [.requestedTransport(17), .reservationToken(token)], on: &server)?.code == 508)
    }

    @Test func anUnclaimedReservationIsReleasedAfterThirtySeconds() throws {
        var server = TURNServer(configuration: configuration(total: 3))
        var rtp = Client(port: 42_200)
        let (reservation, token) = try #require(rtp.reservePair(on: &server, even: 50_010))
        // The reservation holds a port, so it counts against the total of 3: one more allocation fits, not two.
        var other = Client(port: 42_201)
        #expect(other.allocate(on: &server)?.isSuccess == true)
        var third = Client(port: 42_202)
        #expect(third.allocate(on: &server)?.code == 508)

        let closed = server.expire(now: start + .seconds(29))
        #expect(!closed.contains { if case .closeRelay(reservation) = $0 { true } else { false } })
        let released = server.expire(now: start + .seconds(30))
        #expect(released.contains { if case .closeRelay(reservation) = $0 { true } else { false } })
        var late = Client(port: 42_203)
        let refused = late.call(
            .allocate, [.requestedTransport(17), .reservationToken(token)], on: &server, now: start + .seconds(31))
        #expect(refused?.code == 508)
        #expect(third.allocate(on: &server, now: start + .seconds(31))?.isSuccess == true)
    }

    @Test func aReservationCountsInTheUsersQuotaUntilItIsReleased() throws {
        var server = TURNServer(configuration: configuration(perUser: 2))
        var rtp = Client(port: 42_300)
        // A pair needs room for two.
        var full = Client(port: 42_301)
        #expect(full.allocate(on: &server)?.isSuccess == true)
        #expect(
            rtp.call(.allocate, [.requestedTransport(17), .evenPort(reserveNextHigherPort: true)], on: &server)?.code
                == 486)
        #expect(full.call(.refresh, [.lifetime(0)], on: &server)?.isSuccess == true)

        let (_, token) = try #require(rtp.reservePair(on: &server, even: 50_020))
        // Deleting the allocation leaves the reservation counted: no new allocation fits beside it and one more.
        #expect(rtp.call(.refresh, [.lifetime(0)], on: &server)?.isSuccess == true)
        var other = Client(port: 42_302)
        #expect(other.allocate(on: &server)?.isSuccess == true)
        var third = Client(port: 42_303)
        #expect(third.allocate(on: &server)?.code == 486)
        // Claiming it moves the count to the allocation (no second count); expiring it gives the place back.
        var rtcp = Client(port: 42_304)
        let claim = rtcp.send(.allocate, [.requestedTransport(17), .reservationToken(token)], to: &server)
        guard case .openRelay(let claimed) = claim.first else {
            Issue.record("the token was not honoured: \(claim)")
            return
        }
        _ = server.relayOpened(claimed.id, at: TransportAddress(ip: relayIP, port: 50_021), now: start)
        #expect(third.allocate(on: &server)?.code == 486)
        #expect(rtcp.call(.refresh, [.lifetime(0)], on: &server)?.isSuccess == true)
        #expect(third.allocate(on: &server)?.isSuccess == true)
    }

    @Test func callScopedCredentialsEndWithTheirCall() throws {
        var server = TURNServer(configuration: configuration())
        let expiry = start.seconds + 3600
        let scoped = EphemeralCredential.make(secret: sharedSecret, user: "carol", call: "call-1", expiry: expiry)
        var leg = Client(port: 44_000, username: scoped.username, password: scoped.password)
        #expect(leg.allocate(on: &server)?.isSuccess == true)
        let allocation = try #require(server.snapshot(now: start).first)
        #expect(allocation.user == "carol" && allocation.call == "call-1")
        let plain = EphemeralCredential.make(secret: sharedSecret, user: "carol", expiry: expiry)
        var other = Client(port: 44_001, username: plain.username, password: plain.password)
        #expect(other.allocate(on: &server)?.isSuccess == true)
        let another = EphemeralCredential.make(secret: sharedSecret, user: "carol", call: "call-2", expiry: expiry)
        var second = Client(port: 44_002, username: another.username, password: another.password)
        #expect(second.allocate(on: &server)?.isSuccess == true)

        let ended = server.endCall("call-1", now: start + .seconds(5))
        #expect(ended.count == 1 && ended.contains { if case .closeRelay(allocation.id) = $0 { true } else { false } })
        #expect(server.allocationCount == 2 && !server.snapshot(now: start).contains { $0.call == "call-1" })
        // Its credentials are refused from then on, on any 5-tuple; the plain and the other call's still work.
        var back = Client(port: 44_003, username: scoped.username, password: scoped.password)
        #expect(back.allocate(on: &server, now: start + .seconds(6))?.code == 401)
        var plainAgain = Client(port: 44_004, username: plain.username, password: plain.password)
        #expect(plainAgain.allocate(on: &server, now: start + .seconds(6))?.isSuccess == true)
        // A call-scoped credential that would outlive the refusal of its ended call is no credential.
        let endless = EphemeralCredential.make(
            secret: sharedSecret, user: "carol", call: "call-3", expiry: start.seconds + 2 * 86_400)
        var late = Client(port: 44_005, username: endless.username, password: endless.password)
        #expect(late.allocate(on: &server)?.code == 401)
        // A static user's name is only a name, whatever it contains.
        #expect(EphemeralCredential.scope(of: "alice").call == nil)
        #expect(EphemeralCredential.scope(of: ":call=x").call == nil)
        #expect(EphemeralCredential.scope(of: "bob:call=").call == nil)
    }

    @Test func quotasPerUserAndInTotal() throws {
        var server = TURNServer(configuration: configuration(perUser: 2, total: 3))
        var clients = (0..<3).map { Client(port: 43_000 + UInt16($0)) }
        #expect(clients[0].allocate(on: &server)?.isSuccess == true)
        #expect(clients[1].allocate(on: &server)?.isSuccess == true)
        #expect(clients[2].allocate(on: &server)?.code == 486)
        var bob = Client(port: 43_100, username: "bob", password: "hunter2")
        #expect(bob.allocate(on: &server)?.isSuccess == true)
        var bob2 = Client(port: 43_101, username: "bob", password: "hunter2")
        #expect(bob2.allocate(on: &server)?.code == 508)
        // Deleting one frees its quota.
        #expect(clients[0].call(.refresh, [.lifetime(0)], on: &server)?.isSuccess == true)
        #expect(clients[2].allocate(on: &server)?.isSuccess == true)
    }

    @Test func aFailedRelayBindAnswers508AndReleasesTheQuota() throws {
        var server = TURNServer(configuration: configuration(perUser: 1))
        var client = Client()
        let actions = client.send(.allocate, [.requestedTransport(17)], to: &server)
        guard case .openRelay(let pending) = actions.first else {
            Issue.record("no openRelay")
            return
        }
        #expect(Client.reply(server.relayFailed(pending.id))?.code == 508)
        #expect(client.allocate(on: &server)?.isSuccess == true)
    }

    @Test(arguments: [(UInt32(100), UInt32(600)), (1200, 1200), (7200, 3600)])
    func lifetimesAreBounded(requested: UInt32, granted: UInt32) throws {
        var server = TURNServer(configuration: configuration())
        var client = Client()
        #expect(try client.allocate(on: &server, lifetime: requested)?.lifetime == granted)
        #expect(try client.call(.refresh, [.lifetime(requested)], on: &server)?.lifetime == granted)
    }

    @Test func anAllocationWithRESTCredentialsEndsWhenTheyExpire() throws {
        var server = TURNServer(configuration: configuration())
        let issued = EphemeralCredential.make(secret: sharedSecret, user: "carol", expiry: start.seconds + 120)
        var client = Client(username: issued.username, password: issued.password)
        #expect(try client.allocate(on: &server, lifetime: 3600)?.lifetime == 120)
        #expect(try client.call(.refresh, [.lifetime(3600)], on: &server, now: start + .seconds(60))?.lifetime == 60)
        // Past the expiry the credentials no longer authenticate, and the allocation is gone.
        #expect(client.call(.refresh, [.lifetime(600)], on: &server, now: start + .seconds(121))?.code == 401)
        let closed = server.expire(now: start + .seconds(120))
        #expect(closed.count == 1)
        #expect(server.allocationCount == 0)
    }

    @Test func refreshDeletesExpiresAndChecksOwnership() throws {
        var server = TURNServer(configuration: configuration())
        var client = Client()
        #expect(client.call(.refresh, [.lifetime(600)], on: &server)?.code == 437)
        #expect(client.allocate(on: &server)?.isSuccess == true)
        // Bob cannot refresh alice's allocation from her 5-tuple.
        var bob = Client(username: "bob", password: "hunter2")
        #expect(bob.call(.refresh, [.lifetime(600)], on: &server)?.code == 441)
        #expect(server.expire(now: start + .seconds(599)).isEmpty)
        #expect(server.expire(now: start + .seconds(600)).count == 1)
        #expect(server.allocationCount == 0)
        client.nonce = nil  // the old one expired with the allocation
        #expect(client.allocate(on: &server, now: start + .seconds(601))?.isSuccess == true)
        let deleted = client.send(.refresh, [.lifetime(0)], to: &server, now: start + .seconds(602))
        #expect(deleted.contains { if case .closeRelay = $0 { true } else { false } })
        #expect(server.allocationCount == 0)
    }

    @Test func snapshotListsUserFiveTupleRelayPeersAndCounters() throws {
        var server = TURNServer(configuration: configuration())
        var client = Client()
        #expect(client.allocate(on: &server)?.isSuccess == true)
        #expect(
            client.call(.channelBind, [.channelNumber(0x4000)], peers: [peer("8.8.8.8")], on: &server)?.isSuccess
                == true)
        _ = server.channelData(0x4000, length: 100, from: client.fiveTuple, now: start)
        let info = try #require(server.snapshot(now: start).first)
        #expect(info.user == "alice" && info.fiveTuple == client.fiveTuple)
        #expect(info.permissions == [IPAddress("8.8.8.8")!] && info.channels == [0x4000: peer("8.8.8.8")])
        #expect(info.packetsToPeers == 1 && info.bytesToPeers == 100)
    }
}

@Suite struct RelayingTests {
    /// A client with an allocation.
    static func allocated(_ server: inout TURNServer, allowed: [String] = []) -> Client {
        var client = Client()
        _ = client.allocate(on: &server)
        return client
    }

    @Test func sendIndicationsNeedAPermissionThatLasts300Seconds() throws {
        var server = TURNServer(configuration: configuration())
        var client = Self.allocated(&server)
        let target = peer("8.8.8.8")
        let id = try #require(server.allocation(for: client.fiveTuple))
        func send(at now: RelayTime) -> RelayAction? {
            let transaction = TransactionID.random()
            let indication = STUNMessage(
                type: STUNMessageType(method: .send, class: .indication), transactionID: transaction,
                attributes: [.xorPeerAddress(target, transactionID: transaction), .data([1, 2, 3])])
            return server.receive(try! indication.encode(), from: client.fiveTuple, now: now).first
        }
        guard case .dropped(.noPermission) = send(at: start) else {
            Issue.record("sent without a permission")
            return
        }
        #expect(server.fromPeer(target, length: 3, allocation: id, now: start) == .drop(.noPermission))
        #expect(client.call(.createPermission, [], peers: [target], on: &server)?.isSuccess == true)
        guard case .sendToPeer(id, let payload, target) = send(at: start + .seconds(299)) else {
            Issue.record("not relayed with a permission")
            return
        }
        #expect(payload == [1, 2, 3])
        #expect(server.fromPeer(target, length: 3, allocation: id, now: start) == .dataIndication(to: client.fiveTuple))
        // Any port of a permitted IP may send; after 300 s none.
        #expect(
            server.fromPeer(peer("8.8.8.8", port: 1), length: 3, allocation: id, now: start)
                == .dataIndication(to: client.fiveTuple))
        guard case .dropped(.noPermission) = send(at: start + .seconds(300)) else {
            Issue.record("a permission outlived 300 s")
            return
        }
        #expect(server.fromPeer(target, length: 3, allocation: id, now: start + .seconds(300)) == .drop(.noPermission))
    }

    @Test func channelsCarryDataBothWaysUntilTheyExpire() throws {
        var server = TURNServer(configuration: configuration())
        var client = Self.allocated(&server)
        let target = peer("8.8.4.4")
        let id = try #require(server.allocation(for: client.fiveTuple))
        #expect(server.channelData(0x4001, length: 10, from: client.fiveTuple, now: start) == .drop(.noChannel))
        #expect(
            client.call(.channelBind, [.channelNumber(0x4001)], peers: [target], on: &server)?
                .isSuccess == true)
        #expect(server.channelData(0x4001, length: 10, from: client.fiveTuple, now: start) == .toPeer(id, target))
        #expect(
            server.fromPeer(target, length: 10, allocation: id, now: start)
                == .channelData(0x4001, to: client.fiveTuple))
        // The channel's permission lapses at 300 s unless refreshed; refresh it and the channel lasts to 600 s.
        #expect(
            server.channelData(0x4001, length: 10, from: client.fiveTuple, now: start + .seconds(300))
                == .drop(.noPermission))
        #expect(
            client.call(
                .createPermission, [], peers: [target], on: &server, now: start + .seconds(400))?
                .isSuccess == true)
        #expect(
            server.channelData(0x4001, length: 10, from: client.fiveTuple, now: start + .seconds(599))
                == .toPeer(id, target))
        _ = server.expire(now: start + .seconds(600))
        #expect(
            server.channelData(0x4001, length: 10, from: client.fiveTuple, now: start + .seconds(600))
                == .drop(.noAllocation))
    }

    /// A channel's own lifetime, apart from its allocation's and its permission's: both are kept alive here, the
    /// channel is not refreshed.
    @Test func aChannelExpiresAt600SecondsAndIsHeldFiveMinutesBeforeReuse() throws {
        var settings = configuration()
        settings.nonceLifetime = .seconds(7200)  // one nonce for the whole test
        var server = TURNServer(configuration: settings)
        var client = Client()
        #expect(client.allocate(on: &server, lifetime: 3600)?.isSuccess == true)
        let id = try #require(server.allocation(for: client.fiveTuple))
        let target = peer("8.8.4.4")
        let other = peer("8.8.4.5")
        func bind(_ channel: UInt16, _ address: TransportAddress, at seconds: Int) -> Int? {
            let reply = client.call(
                .channelBind, [.channelNumber(channel)], peers: [address], on: &server,
                now: start + .seconds(seconds))
            return reply?.isSuccess == true ? 200 : reply?.code
        }
        func data(at seconds: Int) -> ClientForward {
            server.channelData(0x4001, length: 10, from: client.fiveTuple, now: start + .seconds(seconds))
        }
        #expect(bind(0x4001, target, at: 0) == 200)
        for seconds in [250, 500] {
            #expect(
                client.call(
                    .createPermission, [], peers: [target, other], on: &server, now: start + .seconds(seconds))?
                    .isSuccess == true)
        }
        _ = server.expire(now: start + .seconds(599))
        #expect(data(at: 599) == .toPeer(id, target))
        // At 600 s the channel relays nothing either way; the peer's datagrams come as Data indications.
        _ = server.expire(now: start + .seconds(600))
        #expect(data(at: 600) == .drop(.noChannel))
        #expect(
            server.fromPeer(target, length: 10, allocation: id, now: start + .seconds(600))
                == .dataIndication(to: client.fiveTuple))
        // For five minutes neither the number nor the peer binds to another; the same pair binds again.
        _ = server.expire(now: start + .seconds(700))
        #expect(bind(0x4001, other, at: 700) == 400)
        #expect(bind(0x4002, target, at: 700) == 400)
        #expect(
            client.call(.createPermission, [], peers: [target, other], on: &server, now: start + .seconds(750))?
                .isSuccess == true)
        _ = server.expire(now: start + .seconds(899))
        #expect(bind(0x4001, other, at: 899) == 400)
        // Past the delay the number is free.
        _ = server.expire(now: start + .seconds(900))
        #expect(bind(0x4001, other, at: 900) == 200)
        #expect(data(at: 900) == .toPeer(id, other))
        #expect(bind(0x4002, target, at: 900) == 200)
        // Binding the held pair again renews it at once.
        #expect(bind(0x4003, peer("8.8.4.6"), at: 900) == 200)
        _ = server.expire(now: start + .seconds(1500))
        #expect(bind(0x4003, peer("8.8.4.6"), at: 1500) == 200)
        #expect(
            server.channelData(0x4003, length: 10, from: client.fiveTuple, now: start + .seconds(1500))
                == .toPeer(id, peer("8.8.4.6")))
    }

    @Test func channelBindEnforcesNumbersAndOneToOneBinding() throws {
        var server = TURNServer(configuration: configuration())
        var client = Self.allocated(&server)
        func bind(_ channel: UInt16, _ address: TransportAddress) -> Int? {
            let reply = client.call(.channelBind, [.channelNumber(channel)], peers: [address], on: &server)
            return reply?.isSuccess == true ? 200 : reply?.code
        }
        #expect(bind(0x3FFF, peer("8.8.8.8")) == 400)
        #expect(bind(0x5000, peer("8.8.8.8")) == 400)
        #expect(bind(0x4000, peer("8.8.8.8")) == 200)
        #expect(bind(0x4000, peer("8.8.8.8")) == 200)  // refresh
        #expect(bind(0x4000, peer("8.8.8.9")) == 400)  // channel taken by another peer
        #expect(bind(0x4002, peer("8.8.8.8")) == 400)  // peer already on another channel
        #expect(bind(0x4003, peer("10.0.0.1")) == 403)
        #expect(bind(0x4004, peer("2001:4860::8888")) == 443)
        #expect(client.call(.channelBind, [.channelNumber(0x4005)], on: &server)?.code == 400)
    }

    @Test func requestsForAnotherFiveTupleGet437() throws {
        var server = TURNServer(configuration: configuration())
        _ = Self.allocated(&server)
        var other = Client(port: 45_000)
        #expect(other.call(.createPermission, [], peers: [peer("8.8.8.8")], on: &server)?.code == 437)
        #expect(server.channelData(0x4000, length: 1, from: other.fiveTuple, now: start) == .drop(.noAllocation))
    }

    @Test func onTheRelaysOwnAddressOnlyRelayedPortsAreReachable() throws {
        // A relay on a public address (the policy permits it like any other public peer).
        var onPublic = configuration()
        let publicIP = IPAddress("93.184.216.34")!
        onPublic.relayAddresses = [.ipv4: publicIP]
        var server = TURNServer(configuration: onPublic)
        var client = Client()
        _ = client.allocate(on: &server)
        let dns = TransportAddress(ip: publicIP, port: 53)
        let otherAllocation = TransportAddress(ip: publicIP, port: 50_002)
        #expect(client.call(.channelBind, [.channelNumber(0x4000)], peers: [dns], on: &server)?.code == 403)
        #expect(
            client.call(.channelBind, [.channelNumber(0x4001)], peers: [otherAllocation], on: &server)?.isSuccess
                == true)
        // A permission is per IP; each Send to the relay's own address is checked for its port.
        #expect(client.call(.createPermission, [], peers: [dns], on: &server)?.isSuccess == true)
        for (target, relayed) in [(dns, false), (otherAllocation, true)] {
            let transaction = TransactionID.random()
            let indication = STUNMessage(
                type: STUNMessageType(method: .send, class: .indication), transactionID: transaction,
                attributes: [.xorPeerAddress(target, transactionID: transaction), .data([1])])
            let action = server.receive(try indication.encode(), from: client.fiveTuple, now: start).first
            switch action {
            case .sendToPeer: #expect(relayed, "sent to \(target)")
            case .dropped(.forbiddenPeer): #expect(!relayed, "refused \(target)")
            default: Issue.record("\(String(describing: action))")
            }
        }
        // Allowed explicitly (as on loopback in tests), every port of it is reachable.
        var allowing = onPublic
        allowing.peerPolicy = PeerPolicy(allowed: [CIDR("93.184.216.0/24")!])
        var allowed = TURNServer(configuration: allowing)
        var local = Client()
        _ = local.allocate(on: &allowed)
        #expect(local.call(.channelBind, [.channelNumber(0x4000)], peers: [dns], on: &allowed)?.isSuccess == true)
    }

    @Test func anAllocationPastItsLifetimeIsGoneBeforeTheExpiryTick() throws {
        var server = TURNServer(configuration: configuration())
        var client = Client()
        _ = client.allocate(on: &server)
        #expect(
            client.call(.channelBind, [.channelNumber(0x4000)], peers: [peer("8.8.8.8")], on: &server)?.isSuccess
                == true)
        let id = try #require(server.allocation(for: client.fiveTuple))
        let late = start + .seconds(600)
        client.nonce = nil  // it expired with the allocation
        #expect(server.channelData(0x4000, length: 1, from: client.fiveTuple, now: late) == .drop(.noAllocation))
        #expect(server.fromPeer(peer("8.8.8.8"), length: 1, allocation: id, now: late) == .drop(.noAllocation))
        let actions = client.send(.refresh, [.lifetime(600)], to: &server, now: late)
        #expect(actions.contains { if case .closeRelay(id) = $0 { true } else { false } })
        #expect(Client.reply(actions)?.code == 437)
        #expect(server.allocationCount == 0)
    }

    @Test func permissionsAreBoundedPerAllocation() throws {
        var limited = configuration()
        limited.maximumPermissionsPerAllocation = 2
        var server = TURNServer(configuration: limited)
        var client = Client()
        _ = client.allocate(on: &server)
        #expect(
            client.call(.createPermission, [], peers: [peer("8.8.8.1"), peer("8.8.8.2")], on: &server)?.isSuccess
                == true)
        #expect(client.call(.createPermission, [], peers: [peer("8.8.8.3")], on: &server)?.code == 508)
        #expect(client.call(.createPermission, [], peers: [peer("8.8.8.2")], on: &server)?.isSuccess == true)
    }
}
