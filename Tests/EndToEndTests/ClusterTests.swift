import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// Three real `switchboard serve` nodes on one PostgreSQL database (`SWITCHBOARD_TEST_DATABASE_URL`, which
/// `scripts/test` provides): any node for any request.
@Suite(.serialized, .enabled(if: ClusterDatabase.serverURL != nil, "needs SWITCHBOARD_TEST_DATABASE_URL"))
struct ClusterTests {
    /// Three nodes on a fresh database, each killed (and the database dropped) after `body`.
    static func withThreeNodes(
        ringTimeout: Double, media: Bool = false, _ body: ([ServeProcess]) async throws -> Void
    ) async throws {
        let database = try await ClusterDatabase.create()
        let files = try ServeProcess.Files()
        defer {
            files.remove()
            database.drop()
        }
        var nodes: [ServeProcess] = []
        defer { for node in nodes { node.kill() } }
        for _ in 0..<3 {
            nodes.append(
                try await ServeProcess.start(files, ringTimeout: ringTimeout, store: database.url, media: media))
        }
        try await body(nodes)
    }

    @Test func threeNodesShareCallsStreamsRacesAndTimeouts() async throws {
        try await Self.withThreeNodes(ringTimeout: 4) { nodes in try await Self.shareCalls(nodes) }
    }

    static func shareCalls(_ nodes: [ServeProcess]) async throws {
        let (a, b, c) = (nodes[0].client, nodes[1].client, nodes[2].client)

        // A user's devices on different nodes all ring.
        let b1 = try await a.stream("bob", device: "b1")
        let b2 = try await b.stream("bob", device: "b2")
        let alice = try await c.stream("alice", device: "a1")
        for stream in [b1, b2, alice] { try await stream.expect("hello") }

        // Two devices accepting on two nodes at once: exactly one wins, and everyone hears the same winner.
        for round in 0..<10 {
            let id = try await c.invite("alice", device: "a1", to: "bob").callID
            try await b1.expect("call.invite")
            try await b2.expect("call.invite")
            async let first = a.act("accept", id, as: "bob", device: "b1")
            async let second = b.act("accept", id, as: "bob", device: "b2")
            let statuses = [try await first.status, try await second.status].sorted()
            #expect(statuses == [200, 409], "round \(round)")
            let accepted = try await alice.expect("call.accepted")
            let winner = (accepted["call"] as? [String: Any])?["answeredBy"] as? String
            let loser = winner == "b1" ? b2 : b1
            let ended = try await loser.expect("call.ended")
            #expect((ended["call"] as? [String: Any])?["endReason"] as? String == "answered_elsewhere")
            #expect(try await a.act("hangup", id, as: "alice", device: "a1").status == 200)
            for stream in [alice, b1, b2] { try await stream.expect("call.ended") }
        }

        // Glare across nodes resolves the same way everywhere: the lesser call id survives.
        for round in 0..<5 {
            async let one = a.invite("alice", device: "a1", to: "bob")
            async let two = b.invite("bob", device: "b1", to: "alice")
            let ids = [try await one.callID, try await two.callID]
            let admin = await c.token("root", admin: true)
            let states = try await ids.asyncMap { try await c.request(.GET, "/v1/calls/\($0)", token: admin).call }
            let pending = states.filter { $0["state"] as? String == "inviting" }
            #expect(pending.count == 1, "round \(round)")
            #expect(pending.first?["id"] as? String == ids.min())
            #expect(states.first { $0["id"] as? String == ids.max() }?["endReason"] as? String == "glare")
            let survivor = try #require(ids.min())
            let caller = states.first { $0["id"] as? String == survivor }?["caller"] as? String ?? "alice"
            #expect(
                try await c.act("hangup", survivor, as: caller, device: caller == "alice" ? "a1" : "b1").status == 200)
        }
        for stream in [b1, b2, alice] { stream.close() }

        // A stream ticket asked for on one node opens a stream on another, once.
        let issued = try await a.post("/v1/stream-tickets", token: await a.token("bob"), json: ["device": "tab1"])
        #expect(issued.status == 201)
        let ticket = try #require(issued.json["ticket"] as? String)
        let curl = try CurlStream(url: b.baseURL + "/v1/events?ticket=\(ticket)", caPath: b.caPath)
        let hello = try await curl.expect("hello")
        #expect(hello["user"] as? String == "bob" && hello["device"] as? String == "tab1")
        curl.stop()
        #expect(try await c.request(.GET, "/v1/events?ticket=\(ticket)").status == 401)

        // A device that connects while a call rings for it gets the invite once (its copy is stored, then comes
        // back over LISTEN), then what follows.
        let waiting = try await a.invite("hank", device: "h1", to: "ivy").callID
        let ivy = try await c.stream("ivy", device: "i1")
        try await ivy.expect("hello")
        let invite = try await ivy.expect("call.invite")
        #expect((invite["call"] as? [String: Any])?["id"] as? String == waiting)
        #expect(try await b.act("hangup", waiting, as: "hank", device: "h1").status == 200)
        try await ivy.expect("call.ended")
        ivy.close()

        // A node dies mid-call: its device resumes on another node and misses nothing.
        let carol = try await a.stream("carol", device: "c1")
        try await carol.expect("hello")
        let live = try await carol.expectAfter { try await b.invite("dave", device: "d1", to: "carol").callID }
        #expect(try await c.act("accept", live, as: "carol", device: "c1").status == 200)
        let seen = try #require(carol.lastEventID)
        nodes[0].kill()
        #expect(try await c.act("hangup", live, as: "dave", device: "d1").status == 200)
        let resumed = try await b.stream("carol", device: "c1", lastEventID: seen)
        try await resumed.expect("hello")
        let hungUp = try await resumed.expect("call.ended")
        #expect((hungUp["call"] as? [String: Any])?["endReason"] as? String == "hangup")
        resumed.close()

        // The ring timeout fires once in the cluster, whichever node fires it.
        let erin = try await c.stream("erin", device: "e1")
        try await erin.expect("hello")
        let unanswered = try await b.invite("erin", device: "e1", to: "frank").callID
        let timedOut = try await erin.expect("call.ended", timeout: 20)
        #expect((timedOut["call"] as? [String: Any])?["endReason"] as? String == "unavailable")
        let call = try await b.request(.GET, "/v1/calls/\(unanswered)", token: await b.token("erin")).call
        let lines = (call["timeline"] as? [[String: Any]])?.compactMap { $0["event"] as? String }
        #expect(lines == ["invite", "timeout"])
        var fired = 0.0
        for node in [b, c] {
            fired += try await node.metric("switchboard_calls_ended_total{reason=\"unavailable\"}") ?? 0
        }
        #expect(fired == 1)
        erin.close()
        for node in [b, c] { await node.stop() }
        await a.stop()
    }
}

extension ClusterTests {
    /// A secure-relay call placed on node a (whose media endpoint then holds both legs), answered on node b,
    /// renegotiated on c and hung up on c: each request is carried to node a over the event bus. Once node a is
    /// gone, an answer for a call it held fails fast with `media_unavailable`.
    @Test func aSecureRelayCallIsCarriedToTheNodeHoldingItsMedia() async throws {
        try await Self.withThreeNodes(ringTimeout: 20, media: true) { nodes in try await Self.carryMedia(nodes) }
    }

    static func carryMedia(_ nodes: [ServeProcess]) async throws {
        let (a, b, c) = (nodes[0].client, nodes[1].client, nodes[2].client)
        let alice = try await MediaPeer.make()
        let bob = try await MediaPeer.make()
        defer {
            alice.close()
            bob.close()
        }
        let aliceStream = try await a.stream("alice", device: "a1")
        let bobStream = try await b.stream("bob", device: "b1")
        for stream in [aliceStream, bobStream] { try await stream.expect("hello") }
        defer { for stream in [aliceStream, bobStream] { stream.close() } }

        let created = try await a.invite(
            "alice", device: "a1", to: "bob", offer: alice.sdp(setup: "actpass"), media: "secure-relay")
        #expect(created.status == 201, "\(created.body)")
        let id = created.callID
        let invite = try await bobStream.expect("call.invite")
        let toBob = try MediaPeer.serverTransport(
            in: try #require((invite["sdp"] as? [String: Any])?["sdp"] as? String), setup: "actpass")
        #expect(try await c.act("ringing", id, as: "bob", device: "b1").status == 200)
        // Answered on node b: node a's media endpoint checks bob's answer and writes alice's.
        let accepted = try await b.act(
            "accept", id, as: "bob", device: "b1", extra: ["sdp": ["type": "answer", "sdp": bob.sdp(setup: "active")]])
        #expect(accepted.status == 200, "\(accepted.body)")
        #expect(accepted.call["state"] as? String == "active")
        try await aliceStream.expect("call.ringing")
        let acceptedEvent = try await aliceStream.expect("call.accepted")
        let answerAtAlice = try #require((acceptedEvent["sdp"] as? [String: Any])?["sdp"] as? String)
        #expect(!answerAtAlice.contains(bob.identity.fingerprint().sdpValue))
        let toAlice = try MediaPeer.serverTransport(in: answerAtAlice, setup: "passive")
        #expect(toAlice.address == toBob.address)

        // Both legs come up on node a; node c shows them, asked of node a.
        for (peer, transport) in [(alice, toAlice), (bob, toBob)] {
            try await peer.connectICE(transport)
            try await peer.handshake(transport)
        }
        func legs(on node: TestServer) async throws -> [[String: Any]] {
            let shown = try await node.request(.GET, "/v1/calls/\(id)", token: await node.token("bob"))
            return shown.call["mediaLegs"] as? [[String: Any]] ?? []
        }
        try await SecureRelayTests.eventually {
            let shown = try await legs(on: c)
            return shown.count == 2 && shown.allSatisfy { $0["fingerprintVerified"] as? Bool == true }
        }
        let packet = MediaPeer.rtp(sequence: 1, payload: Array(repeating: 9, count: 120))
        alice.send(try alice.protect(packet), to: toAlice.address)
        #expect(try await bob.receiveMedia() == packet)

        // A renegotiation on node c: bob's offer reaches alice as Switchboard's, and her answer (on node b)
        // reaches bob.
        let offered = try await c.act(
            "signals", id, as: "bob", device: "b1", extra: ["type": "offer", "sdp": bob.sdp(setup: "actpass")])
        #expect(offered.status == 202, "\(offered.body)")
        let reoffer = try await aliceStream.expect("call.signal")
        #expect(reoffer["type"] as? String == "offer")
        #expect(!(reoffer["sdp"] as? String ?? "").contains(bob.identity.fingerprint().sdpValue))
        let answered = try await b.act(
            "signals", id, as: "alice", device: "a1", extra: ["type": "answer", "sdp": alice.sdp(setup: "active")])
        #expect(answered.status == 202, "\(answered.body)")
        let reanswer = try await bobStream.expect("call.signal")
        #expect(reanswer["type"] as? String == "answer")
        // A refusal on node a comes back as its error: an answer with no offer waiting.
        let early = try await c.act(
            "signals", id, as: "bob", device: "b1", extra: ["type": "answer", "sdp": bob.sdp(setup: "active")])
        #expect(early.status == 409, "\(early.body)")

        // Hung up on node c: node a closes the session, and no more media passes.
        #expect(try await c.act("hangup", id, as: "bob", device: "b1").status == 200)
        try await aliceStream.expect("call.ended")
        try await SecureRelayTests.eventually { try await legs(on: a).isEmpty }
        alice.send(try alice.protect(MediaPeer.rtp(sequence: 2, payload: [1, 2, 3])), to: toAlice.address)
        #expect(try await bob.receiveMedia(timeout: 0.5) == nil)

        // Node a dies holding a ringing call's media: an answer on node b fails fast, the call is unharmed.
        let carol = try await MediaPeer.make()
        defer { carol.close() }
        let stranded = try await a.invite(
            "carol", device: "c1", to: "dave", offer: carol.sdp(setup: "actpass"), media: "secure-relay")
        #expect(stranded.status == 201, "\(stranded.body)")
        nodes[0].kill()
        let refused = try await b.act(
            "accept", stranded.callID, as: "dave", device: "d1",
            extra: ["sdp": ["type": "answer", "sdp": bob.sdp(setup: "active")]])
        #expect(refused.status == 503, "\(refused.body)")
        #expect(refused.errorCode == "media_unavailable")
        let after = try await c.request(.GET, "/v1/calls/\(stranded.callID)", token: await c.token("carol")).call
        #expect(after["state"] as? String == "inviting")
        #expect(try await b.metric("switchboard_media_forwarding_timeouts_total") == 1)
        for node in [b, c] { await node.stop() }
        await a.stop()
    }
}

/// A fresh database on the test server, made and dropped with `psql`.
struct ClusterDatabase {
    static var serverURL: String? { ProcessInfo.processInfo.environment["SWITCHBOARD_TEST_DATABASE_URL"] }

    let url: String
    let name: String

    static func create() async throws -> ClusterDatabase {
        let server = try #require(serverURL)
        let name = "sb_cluster_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(12)
        let made = try await Subprocess.run(
            "/usr/bin/psql", [server, "-v", "ON_ERROR_STOP=1", "-c", "CREATE DATABASE \(name)"])
        guard made.status == 0 else { throw TestFailure("psql: \(made.error)") }
        var components = try #require(URLComponents(string: server))
        components.path = "/" + name
        return ClusterDatabase(url: try #require(components.string), name: String(name))
    }

    func drop() {
        guard let server = Self.serverURL else { return }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/psql")
        process.arguments = [server, "-c", "DROP DATABASE IF EXISTS \(name) WITH (FORCE)"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try? process.run()
        process.waitUntilExit()
    }
}

extension EventStreamClient {
    /// Runs `action`, then reads the `call.invite` it causes on this stream; returns the action's call id.
    func expectAfter(_ action: () async throws -> String) async throws -> String {
        let id = try await action()
        try await expect("call.invite")
        return id
    }
}
