import Foundation
import NIOHTTP1
import Testing

/// Bad input gets a clear JSON error and changes nothing.
@Suite struct MalformedInputTests {
    static let bodies: [(String, String)] = [
        ("not json", "bad_request"),
        ("[1,2]", "bad_request"),
        ("\"text\"", "bad_request"),
        (#"{"device": 5}"#, "bad_request"),
        (#"{"device": "has space"}"#, "bad_request"),
        (#"{"device": "d1", "unexpected": true}"#, "bad_request"),
        (#"{"device": "d1""#, "bad_request"),
        ("", "bad_request"),
    ]

    @Test(arguments: ["ringing", "accept", "decline", "hangup", "signals"])
    func callActionsRefuseMalformedBodies(_ action: String) async throws {
        try await TestServer.with { server in
            let id = try await server.invite("alice", to: "bob").callID
            let user = action == "hangup" || action == "signals" ? "alice" : "bob"
            for (body, code) in Self.bodies {
                let reply = try await server.request(
                    .POST, "/v1/calls/\(id)/\(action)", token: await server.token(user), body: body)
                #expect(reply.status == 400, "\(action) \(body)")
                #expect(reply.errorCode == code)
                #expect((reply.json["error"] as? [String: Any])?["message"] as? String != nil)
                #expect(reply.header("Content-Type")?.hasPrefix("application/json") == true)
            }
            let missing = try await server.request(
                .POST, "/v1/calls/\(id)/\(action)", token: await server.token(user), body: "{}")
            #expect(missing.status == 400)
            #expect(
                (missing.json["error"] as? [String: Any])?["message"] as? String
                    == (action == "signals" ? "missing field 'type'" : "missing field 'device'"))
            let huge = #"{"device":"d1","sdp":""# + String(repeating: "a", count: 70_000) + "\"}"
            let tooLarge = try await server.request(
                .POST, "/v1/calls/\(id)/\(action)", token: await server.token(user), body: huge)
            #expect(tooLarge.status == 413)
            #expect(tooLarge.errorCode == "body_too_large")
            let unknown = try await server.request(
                .POST, "/v1/calls/cnothere/\(action)", token: await server.token(user),
                body: #"{"device":"d1","type":"end-of-candidates"}"#.replacingOccurrences(
                    of: action == "signals" ? "" : #","type":"end-of-candidates""#, with: ""))
            #expect(unknown.status == 404)
            #expect(unknown.errorCode == "call_not_found")
            let stored = try await server.request(.GET, "/v1/calls/\(id)", token: await server.token("alice"))
            #expect(stored.call["state"] as? String == "inviting")
            #expect((stored.call["timeline"] as? [Any])?.count == 1)
        }
    }

    @Test func inviteRefusesMalformedBodies() async throws {
        try await TestServer.with { server in
            let cases: [(String, Int, String)] = [
                ("{", 400, "bad_request"),
                (#"{"device":"d1"}"#, 400, "bad_request"),
                (#"{"to":"bob"}"#, 400, "bad_request"),
                (#"{"to":"bob/../x","device":"d1"}"#, 400, "bad_request"),
                (#"{"to":"alice","device":"d1"}"#, 400, "bad_request"),
                (#"{"to":"bob","device":"d1","sdp":{"type":"answer","sdp":"v=0"}}"#, 400, "bad_request"),
                (#"{"to":"bob","device":"d1","sdp":{"type":"pranswer","sdp":"v=0"}}"#, 400, "bad_request"),
                (#"{"to":"bob","device":"d1","sdp":"v=0"}"#, 400, "bad_request"),
                (#"{"to":"bob","device":"d1","sdp":{"type":"offer","sdp":"hello"}}"#, 400, "insecure_sdp"),
                // Unknown fields inside nested objects are refused like top-level ones.
                (#"{"to":"bob","device":"d1","sdp":{"type":"offer","sdp":"v=0","crypto":"x"}}"#, 400, "bad_request"),
                (#"{"to":"bob","device":"d1","sdp":{"type":"offer","sdp":"v=0","SDP":"v=0"}}"#, 400, "bad_request"),
            ]
            for (body, status, code) in cases {
                let reply = try await server.request(.POST, "/v1/calls", token: await server.token("alice"), body: body)
                #expect(reply.status == status, "\(body)")
                #expect(reply.errorCode == code, "\(body)")
            }
            let list = try await server.request(.GET, "/v1/calls", token: await server.token("alice"))
            #expect((list.json["calls"] as? [Any])?.isEmpty == true)
        }
    }

    @Test func nestedUnknownFieldsAreRefusedInSignalsAndAnswers() async throws {
        try await TestServer.with { server in
            let id = try await server.invite("alice", to: "bob").callID
            let candidate = try await server.request(
                .POST, "/v1/calls/\(id)/signals", token: await server.token("alice"),
                body: #"{"device":"d1","type":"candidate","candidate":{"candidate":"candidate:1","sdpMid":"0","x":1}}"#)
            #expect(candidate.status == 400)
            #expect(candidate.json.description.contains("candidate.x"))
            let accept = try await server.request(
                .POST, "/v1/calls/\(id)/accept", token: await server.token("bob"),
                body: #"{"device":"d1","sdp":{"type":"answer","sdp":"v=0","keys":[]}}"#)
            #expect(accept.status == 400)
            #expect(accept.errorCode == "bad_request")
        }
    }

    @Test func sdpSmuggledPastLineBreaksIsRefusedThroughTheAPI() async throws {
        // JSON escapes deliver every separator a consumer might split on; the check reads the decoded text.
        let offer = try Fixture.sdp("chrome-offer-av")
        let crypto = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA"
        try await TestServer.with { server in
            for separator in ["\r", "\u{2028}", "\u{0B}", "\u{85}", "\u{0}"] {
                let smuggled = offer.replacingOccurrences(
                    of: "a=rtcp-mux\r\n", with: "a=rtcp-mux\(separator)\(crypto)\r\n")
                #expect(smuggled != offer)
                let invite = try await server.post(
                    "/v1/calls", token: await server.token("alice"),
                    json: ["to": "bob", "device": "a1", "sdp": ["type": "offer", "sdp": smuggled]])
                #expect(invite.status == 400, "\(separator.debugDescription)")
                #expect(invite.errorCode == "insecure_sdp", "\(separator.debugDescription)")
            }
            // The honest offer still passes.
            let honest = try await server.post(
                "/v1/calls", token: await server.token("alice"),
                json: ["to": "bob", "device": "a1", "sdp": ["type": "offer", "sdp": offer]])
            #expect(honest.status == 201)
        }
    }

    @Test(arguments: [
        "bad-no-fingerprint", "bad-sha1-fingerprint", "bad-md5-fingerprint", "bad-sdes-crypto", "bad-no-setup",
        "bad-session-level-sha1-media-sha256",
    ])
    func insecureSDPIsRefusedEverywhere(_ fixture: String) async throws {
        try await TestServer.with { server in
            let sdp = try Fixture.sdp(fixture)
            let invite = try await server.post(
                "/v1/calls", token: await server.token("alice"),
                json: ["to": "bob", "device": "a1", "sdp": ["type": "offer", "sdp": sdp]])
            #expect(invite.status == 400)
            #expect(invite.errorCode == "insecure_sdp")
            let id = try await server.invite("alice", to: "bob").callID
            let signal = try await server.act("signals", id, as: "alice", extra: ["type": "offer", "sdp": sdp])
            #expect(signal.status == 400)
            #expect(signal.errorCode == "insecure_sdp")
            let answer = try await server.act("accept", id, as: "bob", extra: ["sdp": ["type": "answer", "sdp": sdp]])
            #expect(answer.status == 400)
            #expect(answer.errorCode == "insecure_sdp")
            #expect(
                try await server.request(.GET, "/v1/calls/\(id)", token: await server.token("bob")).call["state"]
                    as? String
                    == "inviting")
        }
    }

    @Test func otherRoutesAnswerJSONErrors() async throws {
        try await TestServer.with { server in
            let token = await server.token("alice")
            let badState = try await server.request(.GET, "/v1/calls?state=sleeping", token: token)
            #expect(badState.status == 400)
            #expect(badState.errorCode == "bad_request")
            let filtered = try await server.request(.GET, "/v1/calls?state=ended,active", token: token)
            #expect(filtered.status == 200)
            let noRoute = try await server.request(.GET, "/v1/nothing", token: token)
            #expect(noRoute.status == 404)
            #expect(noRoute.errorCode == "not_found")
            let badID = try await server.request(.GET, "/v1/calls/has%20space", token: token)
            #expect(badID.status == 404)
            #expect(badID.errorCode == "call_not_found")
            let badScope = try await server.request(.GET, "/v1/events?scope=everything", token: token)
            #expect(badScope.status == 400)
            let badDevice = try await server.request(.GET, "/v1/events?device=a%2Fb", token: token)
            #expect(badDevice.status == 400)
            let ticketJunk = try await server.request(
                .POST, "/v1/stream-tickets", token: token, body: #"{"user":"bob"}"#)
            #expect(ticketJunk.status == 400)
            let badCandidate = try await server.act(
                "signals", try await server.invite("alice", to: "bob").callID, as: "alice",
                extra: ["type": "candidate", "candidate": ["candidate": String(repeating: "c", count: 2000)]])
            #expect(badCandidate.status == 400)
            #expect(try await server.request(.GET, "/healthz").json["status"] as? String == "ok")
        }
    }
}
