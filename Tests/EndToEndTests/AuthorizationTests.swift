import Foundation
import NIOHTTP1
import SwitchboardServer
import Testing

/// Nobody reads or acts on a call they are not part of; every route needs a valid token.
@Suite struct AuthorizationTests {
    static let callRoutes: [(HTTPMethod, String, String?)] = [
        (.GET, "/v1/calls/ID", nil),
        (.POST, "/v1/calls/ID/ringing", #"{"device":"x1"}"#),
        (.POST, "/v1/calls/ID/accept", #"{"device":"x1"}"#),
        (.POST, "/v1/calls/ID/decline", #"{"device":"x1"}"#),
        (.POST, "/v1/calls/ID/hangup", #"{"device":"x1"}"#),
        (.POST, "/v1/calls/ID/signals", #"{"device":"x1","type":"end-of-candidates"}"#),
    ]

    static let allRoutes: [(HTTPMethod, String, String?)] =
        callRoutes + [
            (.POST, "/v1/calls", #"{"to":"bob","device":"x1"}"#),
            (.GET, "/v1/calls", nil),
            (.POST, "/v1/stream-tickets", "{}"),
            (.GET, "/v1/events", nil),
        ]

    @Test func everyRouteNeedsAValidToken() async throws {
        try await TestServer.with { server in
            let id = try await server.invite("alice", to: "bob").callID
            let other = await TokenAuthority(secret: Array("another secret of at least 32 bytes".utf8)).issue(
                Identity(user: "alice"), ttl: 600)
            let expired = await server.authority.issue(Identity(user: "alice"), ttl: -120)
            let bad: [String?] = [nil, "garbage", other, expired, await server.token("alice") + "x"]
            for (method, path, body) in Self.allRoutes {
                for token in bad {
                    let reply = try await server.request(
                        method, path.replacingOccurrences(of: "ID", with: id), token: token, body: body)
                    #expect(reply.status == 401, "\(method) \(path) \(token ?? "none")")
                    #expect(reply.errorCode == "unauthorized")
                    #expect(reply.header("WWW-Authenticate") == "Bearer")
                }
            }
            // A token with another algorithm in its header is refused even if its MAC would verify.
            let parts = await server.token("alice").split(separator: ".")
            let none = "eyJhbGciOiJub25lIn0." + parts[1] + "."
            #expect(try await server.request(.GET, "/v1/calls", token: none).status == 401)
            let stored = try await server.request(.GET, "/v1/calls/\(id)", token: await server.token("alice"))
            #expect(stored.call["state"] as? String == "inviting")
        }
    }

    @Test func outsidersSeeNothingOnEveryCallRoute() async throws {
        try await TestServer.with { server in
            let id = try await server.invite("alice", to: "bob").callID
            for (method, path, body) in Self.callRoutes {
                let reply = try await server.request(
                    method, path.replacingOccurrences(of: "ID", with: id), token: await server.token("mallory"),
                    body: body)
                #expect(reply.status == 404, "\(method) \(path)")
                #expect(reply.errorCode == "call_not_found")
                #expect(!reply.body.contains("alice"))
                // Admins may read any call, but not act on it.
                let admin = try await server.request(
                    method, path.replacingOccurrences(of: "ID", with: id),
                    token: await server.token("root", admin: true),
                    body: body)
                #expect(admin.status == (method == .GET ? 200 : 404), "admin \(method) \(path)")
            }
            let list = try await server.request(.GET, "/v1/calls", token: await server.token("mallory"))
            #expect((list.json["calls"] as? [Any])?.isEmpty == true)
            let all = try await server.request(.GET, "/v1/calls", token: await server.token("root", admin: true))
            #expect((all.json["calls"] as? [[String: Any]])?.map { $0["id"] as? String } == [id])
            let stored = try await server.request(.GET, "/v1/calls/\(id)", token: await server.token("bob"))
            #expect(stored.call["state"] as? String == "inviting")
        }
    }

    @Test func outsidersStreamCarriesNoneOfOtherUsersEvents() async throws {
        try await TestServer.with { server in
            let mallory = try await server.stream("mallory", device: "m1")
            defer { mallory.close() }
            try await mallory.expect("hello")
            let id = try await server.invite("alice", to: "bob", offer: try Fixture.sdp("chrome-offer-av")).callID
            try await server.act("ringing", id, as: "bob")
            try await server.act("accept", id, as: "bob")
            try await server.act("signals", id, as: "alice", extra: ["type": "end-of-candidates"])
            try await server.act("hangup", id, as: "bob")
            // The next event mallory gets is her own invite: nothing of alice and bob's call came before it.
            let own = try await server.invite("carol", to: "mallory").callID
            let invite = try await mallory.expect("call.invite")
            #expect((invite["call"] as? [String: Any])?["id"] as? String == own)
        }
    }

    @Test func rolesAndDeviceBindingsAreEnforced() async throws {
        try await TestServer.with { server in
            let id = try await server.invite("alice", to: "bob").callID
            for action in ["ringing", "accept", "decline"] {
                let reply = try await server.act(action, id, as: "alice")
                #expect(reply.status == 403, "caller \(action)")
                #expect(reply.errorCode == "forbidden")
            }
            let bound = await server.token("bob", device: "phone")
            let wrongDevice = try await server.request(
                .POST, "/v1/calls/\(id)/accept", token: bound, body: #"{"device":"laptop"}"#)
            #expect(wrongDevice.status == 403)
            let implied = try await server.request(.POST, "/v1/calls/\(id)/accept", token: bound, body: "{}")
            #expect(implied.status == 200)
            #expect(implied.call["answeredBy"] as? String == "phone")
            let stream = try await server.request(.GET, "/v1/events?device=laptop", token: bound)
            #expect(stream.status == 403)
            let watchAll = try await server.request(.GET, "/v1/events?scope=all", token: await server.token("alice"))
            #expect(watchAll.status == 403)
            #expect(
                try await server.request(.GET, "/v1/calls/\(id)", token: await server.token("bob")).call["state"]
                    as? String
                    == "active")
        }
    }

    @Test func adminsCanWatchEveryCall() async throws {
        try await TestServer.with { server in
            let watcher = try await server.stream(
                "root", device: "ops", token: await server.token("root", admin: true), query: "scope=all")
            defer { watcher.close() }
            try await watcher.expect("hello")
            let id = try await server.invite("alice", to: "bob", offer: try Fixture.sdp("chrome-offer-av")).callID
            let invite = try await watcher.expect("call.invite")
            #expect((invite["call"] as? [String: Any])?["id"] as? String == id)
            #expect(invite["sdp"] == nil)
            try await server.act("decline", id, as: "bob")
            #expect(
                (try await watcher.expect("call.ended")["call"] as? [String: Any])?["endReason"] as? String
                    == "declined")
        }
    }

    @Test func tokensAndTicketsNeverReachTheLogs() async throws {
        try await TestServer.with { server in
            let token = await server.token("alice")
            let id = try await server.invite("alice", to: "bob").callID
            try await server.request(.GET, "/v1/calls/\(id)", token: token)
            try await server.request(.GET, "/v1/calls", token: "not-a-valid-token-\(token)")
            let ticket = try await server.post("/v1/stream-tickets", token: token, json: [:]).json["ticket"] as! String
            try await server.request(.GET, "/v1/events?ticket=\(ticket)-wrong")
            let logs = server.logs.all
            #expect(logs.count >= 4)
            #expect(logs.contains { $0.contains("/v1/calls/\(id)") && $0.contains("user=alice") })
            let secretParts = [token.split(separator: ".")[2], Substring(ticket)]
            for part in secretParts {
                #expect(!logs.contains { $0.contains(part) })
            }
        }
    }

    @Test func rateLimitAnswers429() async throws {
        // The server's clock stands still: the bucket refills by none however slowly the machine runs the requests.
        let now = Date()
        try await TestServer.with({ $0.rateLimitPerSecond = 2 }, clock: { now }) { server in
            var statuses: [Int] = []
            for _ in 0..<12 {
                let reply = try await server.request(.GET, "/v1/calls", token: await server.token("alice"))
                statuses.append(reply.status)
                if reply.status == 429 {
                    #expect(reply.errorCode == "rate_limited")
                    #expect(reply.header("Retry-After") == "1")
                }
            }
            // A burst of 4 (twice the rate), then every request waits.
            #expect(statuses == Array(repeating: 200, count: 4) + Array(repeating: 429, count: 8))
            // Another user has a bucket of their own.
            #expect(try await server.request(.GET, "/v1/calls", token: await server.token("bob")).status == 200)
        }
    }
}
