import Foundation
import Testing

/// Memory taken by a storm of connections comes back. The server runs as its own process (so no other test's
/// allocations count), and a Node client opens and closes the connections (so none of the client's do).
///
/// The storm loads both cores for about a minute, so it runs alone: `scripts/test` runs it after the other tests
/// with `SWITCHBOARD_STORM_TEST=1`; without it the suite is skipped.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["SWITCHBOARD_STORM_TEST"] == "1"))
struct MemoryStormTests {
    static let loadTool = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Benchmarks/signaling/load.mjs")

    @Test func rssReturnsAfterTwelveRoundsOfTwoThousandConnections() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("switchboard-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let server = try StreamingProcess(
            CLI.executable.path,
            [
                "serve", "--port", "0", "--certs-dir", directory.path, "--no-relay", "--no-media", "--no-web",
                "--max-pending-per-address", "100000", "--log-level", "warning", "--store",
                "sqlite:" + directory.appendingPathComponent("switchboard.sqlite").path,
            ],
            state: "",
            feed: { buffer, data in
                buffer += String(decoding: data, as: UTF8.self)
                var lines: [String] = []
                while let newline = buffer.firstIndex(of: "\n") {
                    lines.append(String(buffer[..<newline]))
                    buffer = String(buffer[buffer.index(after: newline)...])
                }
                return lines
            })
        defer { server.stop() }
        var url: String?
        while url == nil, let line = try await server.next(timeout: 60) {
            url = line.firstMatch(of: #/https://127\.0\.0\.1:[0-9]+/#).map { String($0.output) }
        }
        let target = try #require(url, "the server did not say where it listens")
        let storm = try await Subprocess.run(
            "/usr/bin/env",
            [
                "node", Self.loadTool.path, "storm", "--url", target, "--insecure", "--count", "2000", "--rounds", "12",
                "--pid", String(server.process.processIdentifier), "--settle", "20",
            ])
        #expect(storm.status == 0, "\(storm.error)")
        let result = try #require(
            try JSONSerialization.jsonObject(with: Data(storm.output.utf8)) as? [String: Any], "\(storm.output)")
        let before = try #require(result["rssBeforeMiB"] as? Double)
        let peak = try #require(result["rssPeakMiB"] as? Double)
        let after = try #require(result["rssAfterMiB"] as? Double)
        #expect(result["accepted"] as? Int == 24_000)
        // The storm took memory (a few kB per connection), and at least three quarters of it came back.
        #expect(peak - before > 20)
        #expect(after - before < (peak - before) / 4, "RSS before \(before) MiB, peak \(peak), after \(after)")
    }
}
