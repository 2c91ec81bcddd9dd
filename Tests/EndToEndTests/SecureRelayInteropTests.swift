import Foundation
import Testing

/// Secure-relay calls between clients no one here wrote: aiortc (PyPI) as caller and as callee.
@Suite struct SecureRelayInteropTests {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("media-clients/aiortc_secure_relay.py").path

    /// Video, audio and data-channel messages cross both ways through the secure relay, and each aiortc peer's DTLS
    /// peer certificate is Switchboard's, never the other party's.
    @Test func aiortcCallerAndCalleeTalkThroughTheSecureRelay() async throws {
        try await TestServer.with { server in
            let run = try await Subprocess.run(
                "/usr/bin/env",
                [
                    "python3", Self.script, server.baseURL, server.caPath, await server.token("alice"),
                    await server.token("bob"),
                    "bob", "--media", "secure-relay", "--timeout", "40",
                ])
            #expect(run.status == 0, "\(run.output) \(run.error.suffix(1500))")
            let result =
                (try? JSONSerialization.jsonObject(with: Data(run.output.utf8))) as? [String: Any] ?? [:]
            let serverFingerprint = try #require(server.media?.identity.fingerprint().sdpValue)
            for side in ["caller", "callee"] {
                let party = result[side] as? [String: Any] ?? [:]
                #expect((party["videoFrames"] as? Int ?? 0) >= 10, "\(side)")
                #expect((party["audioFrames"] as? Int ?? 0) >= 10, "\(side)")
                let transports = party["transports"] as? [[String: Any]] ?? []
                #expect(!transports.isEmpty)
                for transport in transports {
                    #expect("sha-256 \(transport["peer"] as? String ?? "")" == serverFingerprint, "\(side)")
                }
            }
            #expect((result["caller"] as? [String: Any])?["message"] as? String == "pong from callee")
            #expect((result["callee"] as? [String: Any])?["message"] as? String == "ping from caller")
            // The server forwarded media both ways (its metrics count what arrived and what it sent).
            for direction in ["in", "out"] {
                var packets = 0.0
                for _ in 0..<50 {
                    packets =
                        try await server.metric(#"switchboard_media_packets_total{direction="\#(direction)"}"#) ?? 0
                    if packets >= 40 { break }
                    try await Task.sleep(for: .milliseconds(100))
                }
                #expect(packets >= 40, "\(direction)")
            }
            let id = try #require(result["callId"] as? String)
            let shown = try await server.request(.GET, "/v1/calls/\(id)", token: await server.token("alice"))
            #expect(shown.call["media"] as? String == "secure-relay")
            #expect(shown.call["endReason"] as? String == "hangup")
        }
    }
}
