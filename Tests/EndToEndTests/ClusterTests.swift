import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// Three real `switchboard serve` nodes on one PostgreSQL database (`SWITCHBOARD_TEST_DATABASE_URL`, which
/// `scripts/test` provides): any node for any request.
@Suite(.serialized, .enabled(if: ClusterDatabase.serverURL != nil, "needs SWITCHBOARD_TEST_DATABASE_URL"))
struct ClusterTests {
    @Test func threeNodesShareCallsStreamsRacesAndTimeouts() async throws {
        let database = try await ClusterDatabase.create()
        let files = try ServeProcess.Files()
        defer {
            files.remove()
            database.drop()
        }
        var nodes: [ServeProcess] = []
        for _ in 0..<3 { nodes.append(try await ServeProcess.start(files, ringTimeout: 4, store: database.url)) }
        defer { for node in nodes { node.kill() } }
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
            let admin = c.token("root", admin: true)
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
        let issued = try await a.post("/v1/stream-tickets", token: a.token("bob"), json: ["device": "tab1"])
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
        let call = try await b.request(.GET, "/v1/calls/\(unanswered)", token: b.token("erin")).call
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
