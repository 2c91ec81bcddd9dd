import Foundation
import Testing

/// Whole calls over real HTTPS and real SSE streams.
@Suite struct CallFlowTests {
    @Test func fullCallWithCurlAsCallee() async throws {
        try await TestServer.with { server in
            let offer = try Fixture.sdp("chrome-offer-av")
            let answer = try Fixture.sdp("firefox-answer-to-chrome-offer-av")
            let alice = try await server.stream("alice", device: "a1")
            let bob = try CurlStream(
                url: server.baseURL + "/v1/events?device=b1", caPath: server.caPath,
                headers: ["Authorization: Bearer \(await server.token("bob"))"])
            defer {
                bob.stop()
                alice.close()
            }
            #expect(alice.status == 200)
            #expect(alice.contentType?.hasPrefix("text/event-stream") == true)
            #expect(try await alice.expect("hello")["device"] as? String == "a1")
            #expect(try await bob.expect("hello")["user"] as? String == "bob")
            #expect(alice.retry == 3000)

            let created = try await server.invite("alice", device: "a1", to: "bob", offer: offer)
            #expect(created.status == 201)
            #expect(created.call["state"] as? String == "inviting")
            let id = created.callID

            let invite = try await bob.expect("call.invite")
            #expect((invite["call"] as? [String: Any])?["id"] as? String == id)
            #expect((invite["sdp"] as? [String: Any])?["sdp"] as? String == offer)

            let ringing = try await server.act("ringing", id, as: "bob", device: "b1")
            #expect(ringing.status == 200)
            #expect(ringing.call["state"] as? String == "ringing")
            #expect(
                (try await alice.expect("call.ringing")["call"] as? [String: Any])?["state"] as? String == "ringing")

            let accepted = try await server.act(
                "accept", id, as: "bob", device: "b1", extra: ["sdp": ["type": "answer", "sdp": answer]])
            #expect(accepted.status == 200)
            #expect(accepted.call["state"] as? String == "active")
            #expect(accepted.call["answeredBy"] as? String == "b1")
            let acceptedEvent = try await alice.expect("call.accepted")
            #expect((acceptedEvent["sdp"] as? [String: Any])?["sdp"] as? String == answer)

            let candidate: [String: Any] = [
                "candidate": "candidate:1 1 udp 2122260223 192.0.2.10 54400 typ host", "sdpMid": "0",
                "sdpMLineIndex": 0,
            ]
            let sent = try await server.act(
                "signals", id, as: "alice", device: "a1", extra: ["type": "candidate", "candidate": candidate])
            #expect(sent.status == 202)
            let atBob = try await bob.expect("call.signal")
            #expect(atBob["type"] as? String == "candidate")
            #expect(atBob["callId"] as? String == id)
            #expect((atBob["from"] as? [String: Any])?["device"] as? String == "a1")
            #expect(
                (atBob["candidate"] as? [String: Any])?["candidate"] as? String == candidate["candidate"] as? String)

            try await server.act(
                "signals", id, as: "bob", device: "b1", extra: ["type": "candidate", "candidate": candidate])
            #expect(try await alice.expect("call.signal")["type"] as? String == "candidate")
            try await server.act("signals", id, as: "bob", device: "b1", extra: ["type": "end-of-candidates"])
            #expect(try await alice.expect("call.signal")["type"] as? String == "end-of-candidates")
            let reoffer = try await server.act(
                "signals", id, as: "alice", device: "a1", extra: ["type": "offer", "sdp": offer])
            #expect(reoffer.status == 202)
            #expect(try await bob.expect("call.signal")["sdp"] as? String == offer)

            let hungUp = try await server.act("hangup", id, as: "alice", device: "a1")
            #expect(hungUp.call["state"] as? String == "ended")
            #expect(hungUp.call["endReason"] as? String == "hangup")
            #expect((try await bob.expect("call.ended")["call"] as? [String: Any])?["endReason"] as? String == "hangup")
            #expect(
                (try await alice.expect("call.ended")["call"] as? [String: Any])?["endReason"] as? String == "hangup")

            let shown = try await server.request(.GET, "/v1/calls/\(id)", token: await server.token("bob"))
            let timeline = (shown.call["timeline"] as? [[String: Any]] ?? []).compactMap { $0["event"] as? String }
            #expect(
                timeline == [
                    "invite", "ringing", "accepted", "signal.candidate", "signal.candidate", "signal.end-of-candidates",
                    "signal.offer", "ended",
                ])
            #expect(shown.call["endedAt"] != nil)
            #expect(try await server.metric("switchboard_call_setups_total") == 1)
        }
    }

    @Test(arguments: ["declined", "cancelled", "callee-hangup"])
    func endedBeforeAnswer(_ how: String) async throws {
        try await TestServer.with { server in
            let streams = try await server.helloStreams([("alice", "a1"), ("bob", "b1")])
            let (alice, bob) = (streams[0], streams[1])
            defer { streams.forEach { $0.close() } }
            let id = try await server.invite("alice", device: "a1", to: "bob").callID
            try await bob.expect("call.invite")
            let reply: TestServer.Reply
            switch how {
            case "declined": reply = try await server.act("decline", id, as: "bob", device: "b1")
            case "cancelled": reply = try await server.act("hangup", id, as: "alice", device: "a1")
            default: reply = try await server.act("hangup", id, as: "bob", device: "b1")
            }
            let expected = how == "cancelled" ? "cancelled" : "declined"
            #expect(reply.status == 200)
            #expect(reply.call["endReason"] as? String == expected)
            for stream in [alice, bob] {
                #expect(
                    (try await stream.expect("call.ended")["call"] as? [String: Any])?["endReason"] as? String
                        == expected)
            }
            let again = try await server.act("accept", id, as: "bob", device: "b1")
            #expect(again.status == 409)
            #expect(again.errorCode == "invalid_transition")
        }
    }

    @Test func ringTimeoutEndsNoAnswerOrUnavailable() async throws {
        try await TestServer.with({ $0.ringTimeout = 2 }) { server in
            let alice = try await server.stream("alice", device: "a1")
            defer { alice.close() }
            try await alice.expect("hello")
            let rung = try await server.invite("alice", device: "a1", to: "bob").callID
            try await server.act("ringing", rung, as: "bob", device: "b1")
            try await alice.expect("call.ringing")
            let ended = try await alice.expect("call.ended")
            #expect((ended["call"] as? [String: Any])?["id"] as? String == rung)
            #expect((ended["call"] as? [String: Any])?["endReason"] as? String == "no_answer")

            let unacknowledged = try await server.invite("alice", device: "a1", to: "carol").callID
            let second = try await alice.expect("call.ended")
            #expect((second["call"] as? [String: Any])?["id"] as? String == unacknowledged)
            #expect((second["call"] as? [String: Any])?["endReason"] as? String == "unavailable")
        }
    }

    @Test func busyCalleeGetsAnEndedCallInBothHistories() async throws {
        try await TestServer.with { server in
            let id = try await server.invite("alice", to: "bob").callID
            try await server.act("accept", id, as: "bob")
            let busy = try await server.invite("carol", to: "bob")
            #expect(busy.status == 201)
            #expect(busy.call["state"] as? String == "ended")
            #expect(busy.call["endReason"] as? String == "busy")
            #expect(try await server.metric(#"switchboard_calls_ended_total{reason="busy"}"#) == 1)
            for user in ["bob", "carol"] {
                let list = try await server.request(.GET, "/v1/calls?state=ended", token: await server.token(user))
                #expect((list.json["calls"] as? [[String: Any]])?.map { $0["id"] as? String } == [busy.callID])
            }
        }
    }

    @Test func glareKeepsTheLesserCallID() async throws {
        try await TestServer.with { server in
            let streams = try await server.helloStreams([("alice", "a1"), ("bob", "b1")])
            let (alice, bob) = (streams[0], streams[1])
            defer { streams.forEach { $0.close() } }
            let first = try await server.invite("alice", device: "a1", to: "bob")
            try await bob.expect("call.invite")
            let second = try await server.invite("bob", device: "b1", to: "alice")
            let (winner, loser) =
                first.callID < second.callID ? (first.callID, second.callID) : (second.callID, first.callID)
            let states = try await [first.callID, second.callID].asyncMap { id in
                try await server.request(.GET, "/v1/calls/\(id)", token: await server.token("alice")).call
            }
            let byID = Dictionary(uniqueKeysWithValues: states.map { ($0["id"] as! String, $0) })
            #expect(byID[winner]?["state"] as? String == "inviting")
            #expect(byID[loser]?["state"] as? String == "ended")
            #expect(byID[loser]?["endReason"] as? String == "glare")
            // Whoever lost is told; the surviving invite reaches its callee.
            if winner == second.callID {
                #expect(
                    (try await alice.expect("call.ended")["call"] as? [String: Any])?["endReason"] as? String == "glare"
                )
                #expect((try await alice.expect("call.invite")["call"] as? [String: Any])?["id"] as? String == winner)
            } else {
                #expect(second.call["endReason"] as? String == "glare")
                #expect(
                    (try await bob.expect("call.ended")["call"] as? [String: Any])?["endReason"] as? String == "glare")
            }
        }
    }

    @Test func firstDeviceToAnswerWinsAndOthersAreToldAnsweredElsewhere() async throws {
        try await TestServer.with { server in
            let phone = try await server.stream("bob", device: "phone")
            let laptop = try await server.stream("bob", device: "laptop")
            let alice = try await server.stream("alice", device: "a1")
            defer { [phone, laptop, alice].forEach { $0.close() } }
            for stream in [phone, laptop, alice] { try await stream.expect("hello") }
            let id = try await server.invite("alice", device: "a1", to: "bob").callID
            try await phone.expect("call.invite")
            try await laptop.expect("call.invite")
            try await server.act("ringing", id, as: "bob", device: "phone")
            try await server.act("ringing", id, as: "bob", device: "laptop")
            try await alice.expect("call.ringing")

            // Both devices answer at once: exactly one wins.
            async let first = server.act("accept", id, as: "bob", device: "phone")
            async let second = server.act("accept", id, as: "bob", device: "laptop")
            let replies = try await [first, second]
            #expect(replies.map(\.status).sorted() == [200, 409])
            let winner = replies.first { $0.status == 200 }!.call["answeredBy"] as! String
            let loser = winner == "phone" ? laptop : phone
            let winnerStream = winner == "phone" ? phone : laptop

            let elsewhere = try await loser.expect("call.ended")
            #expect((elsewhere["call"] as? [String: Any])?["endReason"] as? String == "answered_elsewhere")
            #expect(
                (try await alice.expect("call.accepted")["call"] as? [String: Any])?["answeredBy"] as? String == winner)

            // The device that lost is out of the call: it cannot inject SDP or candidates.
            let loserDevice = winner == "phone" ? "laptop" : "phone"
            let injected = try await server.act(
                "signals", id, as: "bob", device: loserDevice, extra: ["type": "end-of-candidates"])
            #expect(injected.status == 403)
            #expect(injected.errorCode == "forbidden")
            // After the answer, the caller's signals reach only the device that answered.
            try await server.act("signals", id, as: "alice", device: "a1", extra: ["type": "end-of-candidates"])
            #expect(try await winnerStream.expect("call.signal")["type"] as? String == "end-of-candidates")
            try await server.act("hangup", id, as: "alice", device: "a1")
            #expect(
                (try await loser.expect("call.ended")["call"] as? [String: Any])?["endReason"] as? String == "hangup")
            #expect(
                (try await winnerStream.expect("call.ended")["call"] as? [String: Any])?["endReason"] as? String
                    == "hangup")
            let stored = try await server.request(.GET, "/v1/calls/\(id)", token: await server.token("bob")).call
            #expect(stored["answeredBy"] as? String == winner)
        }
    }

    @Test func callingAgainReplacesThePendingInvite() async throws {
        try await TestServer.with { server in
            let bob = try await server.stream("bob", device: "b1")
            defer { bob.close() }
            try await bob.expect("hello")
            let first = try await server.invite("alice", device: "a1", to: "bob").callID
            try await bob.expect("call.invite")
            let second = try await server.invite("alice", device: "a2", to: "bob").callID
            let ended = try await bob.expect("call.ended")
            #expect((ended["call"] as? [String: Any])?["id"] as? String == first)
            #expect((ended["call"] as? [String: Any])?["endReason"] as? String == "cancelled")
            #expect((try await bob.expect("call.invite")["call"] as? [String: Any])?["id"] as? String == second)
        }
    }

    @Test func aDeviceThatConnectsLateGetsThePendingInvite() async throws {
        try await TestServer.with { server in
            let offer = try Fixture.sdp("firefox-offer-av")
            let id = try await server.invite("alice", to: "bob", offer: offer).callID
            let bob = try await server.stream("bob", device: "late")
            defer { bob.close() }
            try await bob.expect("hello")
            let invite = try await bob.expect("call.invite")
            #expect((invite["call"] as? [String: Any])?["id"] as? String == id)
            #expect((invite["sdp"] as? [String: Any])?["sdp"] as? String == offer)
        }
    }
}

extension Array {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var result: [T] = []
        for element in self { result.append(try await transform(element)) }
        return result
    }
}
