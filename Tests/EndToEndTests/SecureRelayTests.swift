import CertificateFingerprint
import DTLSSRTP
import Foundation
import MediaCore
import STUN
import Testing

/// Secure-relay calls over real UDP: two `DTLSEngine` client peers (each with its own certificate, ICE agent and
/// SRTP sessions) against a real server, which is each one's ICE-lite and DTLS-SRTP peer.
@Suite struct SecureRelayTests {
    /// A secure-relay call between alice and bob, set up through the API, up to both parties holding the SDP
    /// Switchboard wrote for them.
    struct Call {
        let id: String
        let alice: MediaPeer
        let bob: MediaPeer
        let aliceStream: EventStreamClient
        let bobStream: EventStreamClient
        /// Switchboard's transport as each party was told it.
        let toAlice: MediaPeer.ServerTransport
        let toBob: MediaPeer.ServerTransport
        let offerAtBob: String
        let answerAtAlice: String

        func close() {
            alice.close()
            bob.close()
            aliceStream.close()
            bobStream.close()
        }
    }

    /// Places the call. With `chromeOrder`, bob completes ICE and DTLS before his answer reaches the server, as
    /// Chrome does; `bobSignals` is the fingerprint bob's answer claims (his own unless a test forges it).
    static func placeCall(
        _ server: TestServer, chromeOrder: Bool = false, aliceSignals: DTLSFingerprint? = nil,
        bobSignals: DTLSFingerprint? = nil,
        acceptBeforeAnswer: ((MediaPeer.ServerTransport) async throws -> MediaPeer)? = nil
    ) async throws -> Call {
        let alice = try await MediaPeer.make()
        let bob = try await MediaPeer.make()
        let streams = try await server.helloStreams([("alice", "a1"), ("bob", "b1")])
        let offer = alice.sdp(setup: "actpass", fingerprint: aliceSignals)
        let created = try await server.post(
            "/v1/calls", token: await server.token("alice"),
            json: ["to": "bob", "device": "a1", "sdp": ["type": "offer", "sdp": offer], "media": "secure-relay"])
        #expect(created.status == 201, "\(created.body)")
        #expect(created.call["media"] as? String == "secure-relay")
        let id = created.callID
        let invite = try await streams[1].expect("call.invite")
        let offerAtBob = try #require((invite["sdp"] as? [String: Any])?["sdp"] as? String)
        let toBob = try MediaPeer.serverTransport(in: offerAtBob, setup: "actpass")
        if chromeOrder {
            try await bob.connectICE(toBob)
            try await bob.handshake(toBob)
        }
        // Another of bob's devices, which will not answer, may run ICE and DTLS first.
        let otherDevice = try await acceptBeforeAnswer?(toBob)
        defer { otherDevice?.close() }
        try await server.act("ringing", id, as: "bob", device: "b1")
        let answer = bob.sdp(setup: "active", fingerprint: bobSignals)
        let accepted = try await server.act(
            "accept", id, as: "bob", device: "b1", extra: ["sdp": ["type": "answer", "sdp": answer]])
        #expect(accepted.status == 200, "\(accepted.body)")
        try await streams[0].expect("call.ringing")
        let acceptedEvent = try await streams[0].expect("call.accepted")
        let answerAtAlice = try #require((acceptedEvent["sdp"] as? [String: Any])?["sdp"] as? String)
        let toAlice = try MediaPeer.serverTransport(in: answerAtAlice, setup: "passive")
        return Call(
            id: id, alice: alice, bob: bob, aliceStream: streams[0], bobStream: streams[1], toAlice: toAlice,
            toBob: toBob, offerAtBob: offerAtBob, answerAtAlice: answerAtAlice)
    }

    /// Both parties complete ICE and DTLS, and the server shows both certificates verified.
    static func connectBothLegs(_ call: Call, _ server: TestServer) async throws {
        for (peer, transport) in [(call.alice, call.toAlice), (call.bob, call.toBob)] {
            try await peer.connectICE(transport)
            try await peer.handshake(transport)
        }
        try await eventually {
            let legs = try await Self.legs(server, call.id)
            return legs["caller"]?["fingerprintVerified"] as? Bool == true
                && legs["callee"]?["fingerprintVerified"] as? Bool == true
        }
    }

    static func legs(_ server: TestServer, _ id: String, as user: String = "alice") async throws
        -> [String: [String: Any]]
    {
        let shown = try await server.request(.GET, "/v1/calls/\(id)", token: await server.token(user))
        let legs = shown.call["mediaLegs"] as? [[String: Any]] ?? []
        return Dictionary(uniqueKeysWithValues: legs.compactMap { leg in (leg["party"] as? String).map { ($0, leg) } })
    }

    /// A `call.signal` from alice's device a1 or bob's device b1 on `call`.
    static func signal(_ server: TestServer, _ call: Call, from user: String, _ type: String, _ sdp: String)
        async throws -> TestServer.Reply
    {
        try await server.act(
            "signals", call.id, as: user, device: user == "alice" ? "a1" : "b1", extra: ["type": type, "sdp": sdp])
    }

    /// An RTP packet from each peer reaches the other through Switchboard, unchanged.
    static func mediaFlows(
        _ a: MediaPeer, _ toA: MediaPeer.ServerTransport, _ b: MediaPeer, _ toB: MediaPeer.ServerTransport,
        sequence: UInt16, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let there = MediaPeer.rtp(sequence: sequence, payload: Array(repeating: 5, count: 80))
        a.send(try a.protect(there), to: toA.address)
        #expect(try await b.receiveMedia() == there, sourceLocation: sourceLocation)
        let back = MediaPeer.rtp(sequence: sequence &+ 1, payload: Array(repeating: 6, count: 80))
        b.send(try b.protect(back), to: toB.address)
        #expect(try await a.receiveMedia() == back, sourceLocation: sourceLocation)
    }

    /// Waits (bounded) until the server's counters show what a test sent: UDP is handled on the media loop.
    static func eventually(
        _ condition: () async throws -> Bool, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        for _ in 0..<100 {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("the condition did not become true within 5 s", sourceLocation: sourceLocation)
    }

    @Test func mediaAndDataChannelBytesFlowBothWaysAndOnlyWhatAuthenticatesIsForwarded() async throws {
        try await TestServer.with { server in
            let call = try await Self.placeCall(server, chromeOrder: true)
            defer { call.close() }
            let serverFingerprint = try #require(server.media?.identity.fingerprint())

            // Neither party sees the other's transport: only Switchboard's, with its own certificate.
            #expect(call.toBob.fingerprint == serverFingerprint)
            #expect(call.toAlice.fingerprint == serverFingerprint)
            #expect(!call.offerAtBob.contains(call.alice.ice.ufrag))
            #expect(!call.offerAtBob.contains(call.alice.ice.password))
            #expect(!call.offerAtBob.contains(String(call.alice.port)))
            #expect(!call.offerAtBob.contains(call.alice.identity.fingerprint().sdpValue))
            #expect(!call.answerAtAlice.contains(call.bob.identity.fingerprint().sdpValue))
            #expect(call.offerAtBob.contains("a=ice-lite"))
            #expect(call.offerAtBob.contains("a=sctp-port:5000"))
            #expect(call.offerAtBob.contains("a=rtpmap:111 opus/48000/2"))
            #expect(call.offerAtBob.contains("a=ssrc:1001 cname:peer"))
            #expect(call.answerAtAlice.contains("a=setup:passive"))

            let response = try await call.alice.connectICE(call.toAlice)
            #expect(response.type == .bindingSuccess)
            #expect(response.verifyIntegrity(key: Array(call.toAlice.remote.credentials.password.utf8)) == .valid)
            try await call.alice.handshake(call.toAlice)
            try await Self.eventually {
                let legs = try await Self.legs(server, call.id)
                return legs["caller"]?["fingerprintVerified"] as? Bool == true
                    && legs["callee"]?["fingerprintVerified"] as? Bool == true
            }

            // RTP alice → bob: payload, sequence numbers and SSRC arrive unchanged, re-encrypted for bob.
            for sequence in UInt16(1)...20 {
                let packet = MediaPeer.rtp(sequence: sequence, payload: Array(repeating: UInt8(sequence), count: 160))
                call.alice.send(try call.alice.protect(packet), to: call.toAlice.address)
                #expect(try await call.bob.receiveMedia() == packet)
            }
            // And back, bob → alice, with RTCP too.
            let back = MediaPeer.rtp(sequence: 500, ssrc: 2002, payload: Array("from bob".utf8))
            call.bob.send(try call.bob.protect(back), to: call.toBob.address)
            #expect(try await call.alice.receiveMedia() == back)
            let receiverReport: [UInt8] =
                [0x81, 201, 0, 7] + [0, 0, 0x07, 0xD2] + [0, 0, 0x03, 0xE9]
                + Array(
                    repeating: 0, count: 20)
            call.bob.send(try call.bob.protect(receiverReport, rtcp: true), to: call.toBob.address)
            #expect(try await call.alice.receiveMedia() == receiverReport)

            // Data channel bytes (DTLS application data) pass from one leg's DTLS into the other's as they are.
            for datagram in try call.alice.applicationData(Array("sctp from alice".utf8)) {
                call.alice.send(datagram, to: call.toAlice.address)
            }
            #expect(try await call.bob.receiveApplicationData() == Array("sctp from alice".utf8))

            // A forged packet from alice's own 5-tuple, then a replay of a genuine one: both dropped and counted.
            var forged = try call.alice.protect(MediaPeer.rtp(sequence: 21, payload: Array(repeating: 9, count: 160)))
            forged[forged.count - 1] ^= 0xFF
            call.alice.send(forged, to: call.toAlice.address)
            let genuine = try call.alice.protect(MediaPeer.rtp(sequence: 22, payload: Array(repeating: 7, count: 160)))
            call.alice.send(genuine, to: call.toAlice.address)
            #expect(try await call.bob.receiveMedia()?[3] == 22)
            call.alice.send(genuine, to: call.toAlice.address)
            #expect(try await call.bob.receiveMedia(timeout: 0.5) == nil)

            // A stranger on another port replaying alice's packet: it never completed ICE.
            let stranger = try await MediaPeer.make()
            defer { stranger.close() }
            stranger.send(genuine, to: call.toAlice.address)

            try await Self.eventually {
                let legs = try await Self.legs(server, call.id)
                let dropped = legs["caller"]?["dropped"] as? [String: Int] ?? [:]
                return dropped["authentication"] == 1 && dropped["replay"] == 1
                    && server.media?.unattributedDrops()[.unknownSource] == 1
            }
            let legs = try await Self.legs(server, call.id)
            #expect(legs["caller"]?["ice"] as? String == "connected")
            #expect(legs["caller"]?["dtls"] as? String == "established")
            #expect(legs["caller"]?["srtpProfile"] as? String == "SRTP_AEAD_AES_128_GCM")
            #expect((legs["callee"]?["packetsOut"] as? Int ?? 0) >= 22)
            #expect((legs["caller"]?["packetsOut"] as? Int ?? 0) >= 2)

            // The CLI shows both legs.
            let show = try await CLI.run(
                [
                    "calls", "show", call.id, "--server", server.baseURL, "--ca", server.caPath, "--token",
                    await server.token("bob"),
                ])
            #expect(show.status == 0)
            #expect(show.output.contains("secure relay"))
            let callerRow = show.output.split(separator: "\n").first { $0.hasPrefix("caller") } ?? ""
            #expect(callerRow.contains("connected") && callerRow.contains("established") && callerRow.contains("yes"))
            #expect(callerRow.contains("authentication=1") && callerRow.contains("replay=1"), "\(show.output)")

            // Hangup tears both legs down at once: alice's next packet counts as after hangup.
            try await server.act("hangup", call.id, as: "alice", device: "a1")
            try await call.bobStream.expect("call.ended")
            call.alice.send(
                try call.alice.protect(MediaPeer.rtp(sequence: 23, payload: [1])), to: call.toAlice.address)
            #expect(try await call.bob.receiveMedia(timeout: 0.5) == nil)
            try await Self.eventually { server.media?.unattributedDrops()[.afterHangup] == 1 }
            #expect(try await Self.legs(server, call.id).isEmpty)
            try await Self.eventually {
                try await server.metric(#"switchboard_media_dropped_total{cause="authentication"}"#) == 1
            }
        }
    }

    @Test func aCalleeWhoseCertificateDoesNotMatchItsAnswerFailsTheCallAndGetsNothing() async throws {
        try await TestServer.with { server in
            let impostor = try DTLSIdentity.generate()
            // Chrome's order: bob's handshake completes before his (forged) answer arrives.
            let call = try await Self.placeCall(server, chromeOrder: true, bobSignals: impostor.fingerprint())
            defer { call.close() }
            let ended = try await call.aliceStream.expect("call.ended")
            #expect((ended["call"] as? [String: Any])?["endReason"] as? String == "failed")
            #expect((ended["call"] as? [String: Any])?["failure"] as? String == "fingerprint_mismatch")
            try await call.bobStream.expect("call.ended")
            let shown = try await server.request(.GET, "/v1/calls/\(call.id)", token: await server.token("bob"))
            #expect(shown.call["state"] as? String == "ended")
            #expect(shown.call["failure"] as? String == "fingerprint_mismatch")
        }
    }

    @Test func aCallerWhoseCertificateDoesNotMatchItsOfferFailsTheCallBeforeAnyMedia() async throws {
        try await TestServer.with { server in
            // Alice's offer claims another certificate than the one her DTLS presents.
            let impostor = try DTLSIdentity.generate()
            let call = try await Self.placeCall(server, aliceSignals: impostor.fingerprint())
            defer { call.close() }
            try await call.bob.connectICE(call.toBob)
            try await call.bob.handshake(call.toBob)
            try await call.alice.connectICE(call.toAlice)
            await #expect(throws: (any Error).self) { try await call.alice.handshake(call.toAlice, timeout: 3) }
            let ended = try await call.aliceStream.expect("call.ended")
            #expect((ended["call"] as? [String: Any])?["failure"] as? String == "fingerprint_mismatch")
        }
    }

    /// Garbage, truncated STUN/DTLS/SRTP and ClientHello floods, from a stranger and from a party's own validated
    /// 5-tuple: all dropped and counted, the server keeps answering, and the call keeps forwarding media.
    @Test func hostileDatagramsAreDroppedAndTheCallKeepsForwarding() async throws {
        try await TestServer.with { server in
            let call = try await Self.placeCall(server)
            defer { call.close() }
            try await Self.connectBothLegs(call, server)
            let stranger = try await MediaPeer.make()
            defer { stranger.close() }
            var generator = SystemRandomNumberGenerator()
            func random(_ count: Int) -> [UInt8] {
                (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            }
            let clientHello: [UInt8] = [22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 60, 1, 0, 0, 48] + random(56)
            var hostile: [[UInt8]] = [
                [], [0], [0, 1], [0, 1, 0, 0] + [0x21, 0x12, 0xA4, 0x42] + random(4),  // STUN cut short
                [0, 1, 0xFF, 0xFC, 0x21, 0x12, 0xA4, 0x42] + random(12),  // STUN claiming 65 KB
                [22, 0xFE, 0xFD], [23, 0xFE, 0xFD, 0, 1] + random(30),  // DTLS cut short, bogus application data
                [0x80, 111, 0, 1], [0x80, 200, 0, 1],  // RTP and RTCP shorter than a header
                Array(repeating: 0x80, count: 1400), random(2000),
            ]
            for _ in 0..<300 { hostile.append(random(Int.random(in: 1...1300, using: &generator))) }
            for _ in 0..<200 { hostile.append(clientHello) }
            for datagram in hostile {
                stranger.send(datagram, to: call.toAlice.address)
                call.alice.send(datagram, to: call.toAlice.address)
            }
            // Still answering ICE, still forwarding authenticated media both ways.
            #expect(try await call.bob.connectICE(call.toBob).type == .bindingSuccess)
            var delivered = false
            for sequence in UInt16(100)..<110 where !delivered {
                let packet = MediaPeer.rtp(sequence: sequence, payload: Array(repeating: 5, count: 200))
                call.alice.send(try call.alice.protect(packet), to: call.toAlice.address)
                while let received = try await call.bob.receiveMedia(timeout: 1) {
                    if received == packet {
                        delivered = true
                        break
                    }
                }
            }
            #expect(delivered)
            let back = MediaPeer.rtp(sequence: 900, ssrc: 2002, payload: [1, 2, 3])
            call.bob.send(try call.bob.protect(back), to: call.toBob.address)
            var backDelivered = false
            while let received = try await call.alice.receiveMedia(timeout: 1) {
                if received == back {
                    backDelivered = true
                    break
                }
            }
            #expect(backDelivered)
            try await Self.eventually {
                let drops = server.media?.unattributedDrops() ?? [:]
                let legs = try await Self.legs(server, call.id)
                let dropped = legs["caller"]?["dropped"] as? [String: Int] ?? [:]
                return (drops[.unknownSource] ?? 0) > 0 && (drops[.malformed] ?? 0) > 0
                    && dropped.values.reduce(0, +) > 0
            }
            let shown = try await server.request(.GET, "/v1/calls/\(call.id)", token: await server.token("alice"))
            #expect(shown.call["state"] as? String == "active")
        }
    }

    /// Mid-call renegotiation through `call.signal` on each leg: alice restarts ICE, bob answers Switchboard's
    /// offer, alice gets new credentials for her leg only, and media keeps flowing over the same DTLS association.
    @Test func anICERestartAndAReofferAreRenegotiatedOnEachLeg() async throws {
        try await TestServer.with { server in
            let call = try await Self.placeCall(server)
            defer { call.close() }
            try await Self.connectBothLegs(call, server)
            // An answer with no offer waiting, and a signal before any offer, are refused.
            let early = try await Self.signal(server, call, from: "bob", "answer", call.bob.sdp(setup: "active"))
            #expect(early.status == 409)

            call.alice.restartICE()
            let offered = try await Self.signal(server, call, from: "alice", "offer", call.alice.sdp(setup: "actpass"))
            #expect(offered.status == 202, "\(offered.body)")
            // Glare: bob's own offer while alice's waits for its answer is refused (he rolls back and answers).
            let glare = try await Self.signal(server, call, from: "bob", "offer", call.bob.sdp(setup: "actpass"))
            #expect(glare.status == 409)
            let atBob = try await call.bobStream.expect("call.signal")
            #expect(atBob["type"] as? String == "offer")
            let reofferAtBob = try #require(atBob["sdp"] as? String)
            // Bob's leg did not restart: the same Switchboard credentials, nothing of alice's.
            #expect(
                try MediaPeer.serverTransport(in: reofferAtBob, setup: "actpass").remote.credentials
                    == call.toBob.remote.credentials)
            #expect(!reofferAtBob.contains(call.alice.ice.ufrag))
            let answered = try await Self.signal(server, call, from: "bob", "answer", call.bob.sdp(setup: "active"))
            #expect(answered.status == 202, "\(answered.body)")
            let atAlice = try await call.aliceStream.expect("call.signal")
            #expect(atAlice["type"] as? String == "answer")
            let restarted = try MediaPeer.serverTransport(
                in: try #require(atAlice["sdp"] as? String), setup: "passive")
            #expect(restarted.remote.credentials != call.toAlice.remote.credentials)
            #expect(restarted.fingerprint == call.toAlice.fingerprint)

            // Alice's checks with the new credentials are answered; media still flows on the same keys.
            let response = try await call.alice.connectICE(restarted)
            #expect(response.type == .bindingSuccess)
            let packet = MediaPeer.rtp(sequence: 7, payload: Array(repeating: 3, count: 100))
            call.alice.send(try call.alice.protect(packet), to: restarted.address)
            #expect(try await call.bob.receiveMedia() == packet)
        }
    }

    /// A page reloaded mid-call: alice offers from a new peer connection (a new socket, certificate and ICE
    /// credentials), replacing an offer of bob's her old page never answered. A new certificate on the old ICE
    /// credentials is refused. With new ones, bob gets Switchboard's
    /// offer over his leg as it was (same credentials, same fingerprint), and once he answers alice's leg starts
    /// over: new credentials, a DTLS handshake verified against the new certificate, media both ways; the old peer
    /// connection's packets are no longer taken, and the call never stopped being active.
    @Test func aPartyRejoiningFromANewPeerConnectionGetsANewLegWhileTheOtherCarriesOn() async throws {
        try await TestServer.with { server in
            let call = try await Self.placeCall(server)
            defer { call.close() }
            try await Self.connectBothLegs(call, server)
            // Bob offered just before alice's page went away: the old page never answers it, and her rejoin offer
            // takes its place (any other offer of hers would be refused as glare).
            let bobsOffer = try await Self.signal(server, call, from: "bob", "offer", call.bob.sdp(setup: "actpass"))
            #expect(bobsOffer.status == 202, "\(bobsOffer.body)")
            #expect(try await call.aliceStream.expect("call.signal")["type"] as? String == "offer")
            let glare = try await Self.signal(server, call, from: "alice", "offer", call.alice.sdp(setup: "actpass"))
            #expect(glare.status == 409)
            let reloaded = try await MediaPeer.make()
            defer { reloaded.close() }
            let forged = try await Self.signal(
                server, call, from: "alice", "offer",
                call.alice.sdp(setup: "actpass", fingerprint: reloaded.identity.fingerprint()))
            #expect(forged.status == 400)
            #expect(forged.errorCode == "unsupported_sdp")

            let offered = try await Self.signal(server, call, from: "alice", "offer", reloaded.sdp(setup: "actpass"))
            #expect(offered.status == 202, "\(offered.body)")
            let atBob = try await call.bobStream.expect("call.signal")
            let toBobNow = try MediaPeer.serverTransport(
                in: try #require(atBob["sdp"] as? String), setup: "actpass")
            #expect(toBobNow.remote.credentials == call.toBob.remote.credentials)
            #expect(toBobNow.fingerprint == call.toBob.fingerprint)
            let answered = try await Self.signal(server, call, from: "bob", "answer", call.bob.sdp(setup: "active"))
            #expect(answered.status == 202, "\(answered.body)")
            let atAlice = try await call.aliceStream.expect("call.signal")
            #expect(atAlice["type"] as? String == "answer")
            let toReloaded = try MediaPeer.serverTransport(
                in: try #require(atAlice["sdp"] as? String), setup: "passive")
            #expect(toReloaded.remote.credentials != call.toAlice.remote.credentials)
            #expect(toReloaded.fingerprint == call.toAlice.fingerprint)

            // The old peer connection is gone from the leg: its checks get no answer, its media is not taken.
            await #expect(throws: (any Error).self) { try await call.alice.connectICE(call.toAlice, attempts: 1) }
            try await reloaded.connectICE(toReloaded)
            try await reloaded.handshake(toReloaded)
            try await Self.eventually {
                let legs = try await Self.legs(server, call.id)
                return legs["caller"]?["fingerprintVerified"] as? Bool == true
                    && legs["caller"]?["dtls"] as? String == "established"
            }
            try await Self.mediaFlows(reloaded, toReloaded, call.bob, call.toBob, sequence: 21)
            call.alice.send(
                try call.alice.protect(MediaPeer.rtp(sequence: 23, payload: [1, 2, 3])), to: call.toAlice.address)
            #expect(await call.bob.receive(timeout: 1) == nil)
            let shown = try await server.request(.GET, "/v1/calls/\(call.id)", token: await server.token("alice"))
            #expect(shown.call["state"] as? String == "active")
        }
    }

    /// The other side of a rejoin may not be able to take the new offer on its old peer connection (Firefox refuses
    /// RTP extension ids that changed): bob answers from a new peer connection of his own, and his leg starts over
    /// too, on Switchboard's same credentials; both new peers connect and media flows. An answer with a new
    /// certificate on the old ICE credentials is refused.
    @Test func theOtherPartyMayAnswerARejoinFromANewPeerConnection() async throws {
        try await TestServer.with { server in
            let call = try await Self.placeCall(server)
            defer { call.close() }
            try await Self.connectBothLegs(call, server)
            let alice2 = try await MediaPeer.make()
            let bob2 = try await MediaPeer.make()
            defer {
                alice2.close()
                bob2.close()
            }
            let offered = try await Self.signal(server, call, from: "alice", "offer", alice2.sdp(setup: "actpass"))
            #expect(offered.status == 202, "\(offered.body)")
            let toBob2 = try MediaPeer.serverTransport(
                in: try #require(try await call.bobStream.expect("call.signal")["sdp"] as? String), setup: "actpass")
            let forged = try await Self.signal(
                server, call, from: "bob", "answer",
                call.bob.sdp(setup: "active", fingerprint: bob2.identity.fingerprint()))
            #expect(forged.status == 400)
            let answered = try await Self.signal(server, call, from: "bob", "answer", bob2.sdp(setup: "active"))
            #expect(answered.status == 202, "\(answered.body)")
            let toAlice2 = try MediaPeer.serverTransport(
                in: try #require(try await call.aliceStream.expect("call.signal")["sdp"] as? String), setup: "passive")
            for (peer, transport) in [(alice2, toAlice2), (bob2, toBob2)] {
                try await peer.connectICE(transport)
                try await peer.handshake(transport)
            }
            try await Self.eventually {
                let legs = try await Self.legs(server, call.id)
                return legs.values.allSatisfy {
                    $0["fingerprintVerified"] as? Bool == true && $0["dtls"] as? String == "established"
                } && legs.count == 2
            }
            try await Self.mediaFlows(alice2, toAlice2, bob2, toBob2, sequence: 31)
            // The old peer connections' media is not taken.
            call.bob.send(try call.bob.protect(MediaPeer.rtp(sequence: 33, payload: [9])), to: call.toBob.address)
            #expect(await alice2.receive(timeout: 1) == nil)
        }
    }

    /// One 5-tuple belongs to one leg. A valid check with another call's credentials (all a spoofer could send)
    /// does not take a live party's address; once that party's call ended, its port may serve a new call.
    @Test func aLivePartysAddressStaysAndMovesToANewCallOnlyOnceItsCallEnded() async throws {
        try await TestServer.with { server in
            let first = try await Self.placeCall(server)
            defer { first.close() }
            try await first.alice.connectICE(first.toAlice)
            // carol calls dave, checking from alice's very socket (the same 5-tuple towards the media port).
            let streams = try await server.helloStreams([("carol", "c1"), ("dave", "d1")])
            defer { streams.forEach { $0.close() } }
            let created = try await server.post(
                "/v1/calls", token: await server.token("carol"),
                json: [
                    "to": "dave", "device": "c1", "sdp": ["type": "offer", "sdp": first.alice.sdp(setup: "actpass")],
                    "media": "secure-relay",
                ])
            let dave = try await MediaPeer.make()
            defer { dave.close() }
            try await streams[1].expect("call.invite")
            let accepted = try await server.act(
                "accept", created.callID, as: "dave", device: "d1",
                extra: ["sdp": ["type": "answer", "sdp": dave.sdp(setup: "active")]])
            #expect(accepted.status == 200)
            let answer = try await streams[0].expect("call.accepted")
            let toCarol = try MediaPeer.serverTransport(
                in: try #require((answer["sdp"] as? [String: Any])?["sdp"] as? String), setup: "passive")
            await #expect(throws: (any Error).self) { try await first.alice.connectICE(toCarol, attempts: 2) }
            #expect(try await Self.legs(server, first.id)["caller"]?["ice"] as? String == "connected")

            try await server.act("hangup", first.id, as: "alice", device: "a1")
            try await first.bobStream.expect("call.ended")
            let response = try await first.alice.connectICE(toCarol)
            #expect(response.type == .bindingSuccess)
            try await first.alice.handshake(toCarol)
            let legs = try await Self.legs(server, created.callID, as: "carol")
            #expect(legs["caller"]?["dtls"] as? String == "established")
        }
    }

    /// A leg keeps at most 8 validated addresses; one it pushed out is no longer routed to the call, and after
    /// hangup nothing from any address it ever had is forwarded.
    @Test func addressesALegDroppedAreNotRoutedAndNothingIsForwardedAfterHangup() async throws {
        try await TestServer.with { server in
            let call = try await Self.placeCall(server)
            defer { call.close() }
            try await Self.connectBothLegs(call, server)
            var extra: [MediaPeer] = []
            defer { extra.forEach { $0.close() } }
            for _ in 0..<8 {
                let peer = try await MediaPeer.make()
                extra.append(peer)
                #expect(try await peer.connectICE(call.toAlice, ufrag: call.alice.ice.ufrag).type == .bindingSuccess)
            }
            // alice's own socket was the oldest: pushed out, so her media is not taken any more.
            call.alice.send(
                try call.alice.protect(MediaPeer.rtp(sequence: 1, payload: [1])), to: call.toAlice.address)
            #expect(try await call.bob.receiveMedia(timeout: 0.5) == nil)
            try await Self.eventually { server.media?.unattributedDrops()[.unknownSource] == 1 }
            try await server.act("hangup", call.id, as: "alice", device: "a1")
            try await call.bobStream.expect("call.ended")
            call.alice.send(
                try call.alice.protect(MediaPeer.rtp(sequence: 2, payload: [2])), to: call.toAlice.address)
            extra[0].send(try call.alice.protect(MediaPeer.rtp(sequence: 3, payload: [3])), to: call.toAlice.address)
            #expect(try await call.bob.receiveMedia(timeout: 0.5) == nil)
            try await Self.eventually { server.media?.unattributedDrops()[.afterHangup] == 1 }
        }
    }

    /// Two of the callee's devices: the one that does not answer completes ICE and DTLS first (it had the offer
    /// too). The answer says which device answered: the other's checks and handshake are forgotten, and the
    /// answering device's own handshake takes the leg.
    @Test func theCalleeDeviceThatAnswersTakesTheLegEvenIfAnotherHandshookFirst() async throws {
        try await TestServer.with { server in
            let call = try await Self.placeCall(
                server,
                acceptBeforeAnswer: { toBob in
                    let other = try await MediaPeer.make()
                    try await other.connectICE(toBob)
                    try await other.handshake(toBob)
                    return other
                })
            defer { call.close() }
            try await Self.connectBothLegs(call, server)
            let packet = MediaPeer.rtp(sequence: 1, payload: Array(repeating: 4, count: 50))
            call.alice.send(try call.alice.protect(packet), to: call.toAlice.address)
            #expect(try await call.bob.receiveMedia() == packet)
            let shown = try await server.request(.GET, "/v1/calls/\(call.id)", token: await server.token("bob"))
            #expect(shown.call["state"] as? String == "active")
        }
    }

    @Test func checksWithTheWrongPasswordAreRefusedAndNothingIsAccepted() async throws {
        try await TestServer.with { server in
            let call = try await Self.placeCall(server)
            defer { call.close() }
            let response = try await call.alice.connectICE(call.toAlice, password: "not-the-password")
            #expect(response.type == .bindingError)
            #expect(try response.errorCode?.code == 401)
            // Media from the refused 5-tuple is not taken.
            call.alice.send(MediaPeer.rtp(sequence: 1, payload: [1, 2, 3]), to: call.toAlice.address)
            try await Self.eventually { server.media?.unattributedDrops()[.unknownSource] == 1 }
            try await server.act("hangup", call.id, as: "alice", device: "a1")
        }
    }

    @Test func theMediaPathFollowsTheOperatorsPolicy() async throws {
        try await TestServer.with({ $0.mediaPolicy = .direct }) { server in
            let peer = try await MediaPeer.make()
            defer { peer.close() }
            let refused = try await server.invite(
                "alice", device: "a1", to: "bob", offer: peer.sdp(setup: "actpass"), media: "secure-relay")
            #expect(refused.status == 503)
            #expect(refused.errorCode == "media_unavailable")
            let direct = try await server.invite("alice", device: "a1", to: "bob", offer: peer.sdp(setup: "actpass"))
            #expect(direct.call["media"] as? String == "direct")
        }
        try await TestServer.with({ $0.mediaPolicy = .secureRelay }) { server in
            let peer = try await MediaPeer.make()
            defer { peer.close() }
            let forced = try await server.invite("alice", device: "a1", to: "bob", offer: peer.sdp(setup: "actpass"))
            #expect(forced.status == 201)
            #expect(forced.call["media"] as? String == "secure-relay")
            let noOffer = try await server.invite("carol", device: "c1", to: "dave")
            #expect(noOffer.status == 400)
            let tcp = try await server.invite(
                "erin", device: "e1", to: "frank",
                offer: peer.sdp(setup: "actpass").replacingOccurrences(
                    of: "UDP/TLS/RTP/SAVPF", with: "TCP/TLS/RTP/SAVPF"))
            #expect(tcp.status == 400)
            #expect(tcp.errorCode == "insecure_sdp" || tcp.errorCode == "unsupported_sdp")
        }
    }
}
