import Foundation
import NIOCore
import NIOHTTP1
import SwitchboardServer
import Testing

/// A real `switchboard serve` on SQLite, killed with SIGKILL mid-call and started again on the same file.
@Suite(.serialized) struct RestartTests {
    @Test func aKilledServerRestartsWithEveryCallTimelineDeadlineAndMissedEvent() async throws {
        let node = try ServeProcess.Files()
        defer { node.remove() }
        let ringTimeout = 3.0
        var server = try await ServeProcess.start(node, ringTimeout: ringTimeout, media: true)
        var client = server.client

        // An active call, an ended one, and two pending: one rang on a device, one nobody acknowledged.
        let active = try await client.invite("carol", to: "dave").callID
        #expect(try await client.act("accept", active, as: "dave").status == 200)
        let declined = try await client.invite("erin", to: "frank").callID
        #expect(try await client.act("decline", declined, as: "frank").status == 200)
        let bob = try await client.stream("bob", device: "b1")
        try await bob.expect("hello")
        let ringing = try await client.invite("alice", to: "bob").callID
        try await bob.expect("call.invite")
        let seenID = try #require(bob.lastEventID)
        #expect(try await client.act("ringing", ringing, as: "bob", device: "b1").status == 200)
        let unanswered = try await client.invite("gina", to: "hank").callID
        // A secure-relay call, answered: its media session dies with the process.
        let (mia, ned) = (try await MediaPeer.make(), try await MediaPeer.make())
        defer {
            mia.close()
            ned.close()
        }
        let relayed = try await client.invite(
            "mia", to: "ned", offer: mia.sdp(setup: "actpass"), media: "secure-relay")
        #expect(relayed.status == 201, "\(relayed.body)")
        let relayedAccept = try await client.act(
            "accept", relayed.callID, as: "ned", extra: ["sdp": ["type": "answer", "sdp": ned.sdp(setup: "active")]])
        #expect(relayedAccept.status == 200, "\(relayedAccept.body)")
        // Bob misses a candidate from alice: it is committed, and his stream is gone before it is read.
        bob.close()
        let candidate: [String: Any] = [
            "device": "d1", "type": "candidate",
            "candidate": ["candidate": "candidate:1 1 udp 2122194687 192.0.2.7 4000 typ host", "sdpMid": "0"],
        ]
        #expect(
            try await client.post("/v1/calls/\(ringing)/signals", token: await client.token("alice"), json: candidate)
                .status
                == 202)
        let deadline = Date().addingTimeInterval(ringTimeout)

        server.kill()
        await client.stop()
        // Both ring deadlines pass while the server is down.
        let wait = deadline.timeIntervalSinceNow
        if wait > 0 { try await Task.sleep(for: .milliseconds(Int(wait * 1000) + 200)) }
        server = try await ServeProcess.start(node, ringTimeout: ringTimeout, media: true)
        client = server.client
        defer { server.kill() }

        // Bob resumes with the id he saw last: exactly what he missed, in order, then the deadline's end.
        let resumed = try await client.stream("bob", device: "b1", lastEventID: seenID)
        try await resumed.expect("hello")
        let signal = try await resumed.expect("call.signal")
        #expect(signal["type"] as? String == "candidate" && signal["callId"] as? String == ringing)
        let ended = try await resumed.expect("call.ended", timeout: 15)
        #expect((ended["call"] as? [String: Any])?["endReason"] as? String == "no_answer")
        #expect(Int64(resumed.lastEventID ?? "") ?? 0 > Int64(seenID)!)

        let admin = await client.token("root", admin: true)
        func call(_ id: String) async throws -> [String: Any] {
            try await client.request(.GET, "/v1/calls/\(id)", token: admin).call
        }
        #expect(try await call(unanswered)["endReason"] as? String == "unavailable")
        #expect(try await call(active)["state"] as? String == "active")
        // The secure-relay call cannot go on without its media session: it ended at start-up, and says why.
        let lost = try await call(relayed.callID)
        #expect(lost["endReason"] as? String == "failed")
        #expect(lost["failure"] as? String == "media_node_restarted")
        let history = try await call(declined)
        #expect(history["endReason"] as? String == "declined")
        #expect(
            (history["timeline"] as? [[String: Any]])?.compactMap { $0["event"] as? String } == ["invite", "ended"])
        let rang = try await call(ringing)
        #expect(
            (rang["timeline"] as? [[String: Any]])?.compactMap { $0["event"] as? String } == [
                "invite", "ringing", "signal.candidate", "timeout",
            ])
        // The active call goes on: it can be hung up, and carol can call again.
        #expect(try await client.act("hangup", active, as: "carol").status == 200)
        #expect(try await client.invite("carol", to: "dave").status == 201)
        // An id from another store (or the old EPOCH-SEQ form) resyncs instead of replaying the wrong events.
        for stale in ["999999999", "k3x9-12"] {
            let other = try await client.stream("bob", device: "b2", lastEventID: stale)
            try await other.expect("hello")
            try await other.expect("resync")
            other.close()
        }
        resumed.close()
        await client.stop()
    }
}

/// `switchboard serve` as its own process, on a SQLite file that outlives it.
struct ServeProcess {
    /// What survives a restart: the certificate, the token secret and the store file.
    struct Files {
        let directory: URL
        let caPath: String
        let secret: String

        init() throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent(
                "switchboard-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            secret = "restart-secret-\(UUID().uuidString)"
            let material = try DevCertificates.make()
            caPath = directory.appendingPathComponent("ca.pem").path
            try material.caPEM.write(toFile: caPath, atomically: true, encoding: .utf8)
            try material.certificatePEM.write(toFile: path("cert.pem"), atomically: true, encoding: .utf8)
            try material.privateKeyPEM.write(toFile: path("key.pem"), atomically: true, encoding: .utf8)
        }

        func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

        func remove() { try? FileManager.default.removeItem(at: directory) }
    }

    let output: StreamingProcess<String>
    let client: TestServer

    /// With `media`, the node runs the secure relay's media endpoint on a free UDP port; `extra` arguments go
    /// last; with `logs`, the process's log lines (stderr) come out of ``output`` too.
    static func start(
        _ files: Files, ringTimeout: Double, store: String? = nil, media: Bool = false, extra: [String] = [],
        logs: Bool = false
    ) async throws -> ServeProcess {
        let output = try lineStream(
            CLI.executable.path,
            [
                "serve", "--host", "127.0.0.1", "--port", "0", "--cert", files.path("cert.pem"), "--key",
                files.path("key.pem"), "--token-secret", files.secret, "--no-relay", "--no-web",
                "--rate-limit", "0", "--unauthenticated-rate-limit", "0", "--ring-timeout", String(ringTimeout),
                "--store", store ?? "sqlite:" + files.path("data/switchboard.sqlite"), "--certs-dir",
                files.path("certs"),
            ] + (media ? ["--media-port", "0"] : ["--no-media"]) + extra, mergeStandardError: logs)
        while let line = try await output.next(timeout: 60) {
            guard let range = line.range(of: "listening on https://127.0.0.1:") else { continue }
            let port = try #require(Int(line[range.upperBound...]))
            // The client's own scratch folder: stopping it must not remove the store.
            let client = TestServer.attach(
                port: port, directory: files.directory.appendingPathComponent("client-\(UUID().uuidString)"),
                caPath: files.caPath, secret: Array(files.secret.utf8))
            return ServeProcess(output: output, client: client)
        }
        throw TestFailure("switchboard serve exited before it listened")
    }

    /// SIGKILL: no shutdown path runs.
    func kill() {
        output.stop()
        output.process.waitUntilExit()
    }
}
