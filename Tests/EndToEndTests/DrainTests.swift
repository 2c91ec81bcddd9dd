import Foundation
import SwitchboardServer
import Testing

/// A graceful shutdown with a drain timeout: streams hear `reconnect`, new calls and `/healthz` get 503
/// `draining`, the calls under way keep their signaling, and the server stops once they end (or at the timeout).
@Suite struct DrainTests {
    @Test func aDrainRefusesNewCallsAndStopsOnceTheLastCallEnds() async throws {
        let server = try await TestServer.start { $0.drainTimeout = 120 }
        do {
            let alice = try await server.stream("alice", device: "a1")
            try await alice.expect("hello")
            let bob = try await server.stream("bob", device: "b1")
            try await bob.expect("hello")
            let carol = try await server.stream("carol", device: "c1")
            try await carol.expect("hello")
            let id = try await server.invite("alice", device: "a1", to: "bob").callID
            try await bob.expect("call.invite")
            #expect(try await server.act("accept", id, as: "bob", device: "b1").status == 200)
            try await alice.expect("call.accepted")

            let stopping = Task { await server.shutdown() }
            for stream in [alice, bob, carol] {
                let event = try await stream.expect("reconnect")
                #expect(event["reconnect"] as? Bool == true)
            }
            let refused = try await server.invite("dave", to: "erin")
            #expect(refused.status == 503)
            #expect(refused.errorCode == "draining")
            let health = try await server.request(.GET, "/healthz")
            #expect(health.status == 503)
            #expect(health.json["status"] as? String == "draining")

            // The call under way still signals both ways...
            let candidate: [String: Any] = [
                "candidate": "candidate:1 1 udp 2122260223 192.0.2.10 54400 typ host", "sdpMid": "0",
                "sdpMLineIndex": 0,
            ]
            let sent = try await server.act(
                "signals", id, as: "alice", device: "a1", extra: ["type": "candidate", "candidate": candidate])
            #expect(sent.status == 202)
            try await bob.expect("call.signal")
            // ...and its hangup ends the drain: every stream then gets the final `shutdown`, well before the
            // two-minute timeout.
            #expect(try await server.act("hangup", id, as: "alice", device: "a1").status == 200)
            try await alice.expect("call.ended")
            try await bob.expect("call.ended")
            for stream in [alice, bob, carol] { try await stream.expect("shutdown", timeout: 30) }
            await stopping.value
            await server.stop()
        } catch {
            await server.stop()
            throw error
        }
    }

    @Test func aDrainStopsAtItsTimeoutWithACallStillUnderWay() async throws {
        let server = try await TestServer.start { $0.drainTimeout = 0.5 }
        do {
            let bob = try await server.stream("bob", device: "b1")
            try await bob.expect("hello")
            let id = try await server.invite("alice", to: "bob").callID
            try await bob.expect("call.invite")
            #expect(try await server.act("accept", id, as: "bob", device: "b1").status == 200)
            await server.shutdown()
            try await bob.expect("reconnect")
            try await bob.expect("shutdown")
            await server.stop()
        } catch {
            await server.stop()
            throw error
        }
    }
}
