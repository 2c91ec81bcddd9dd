import Foundation
import SwitchboardServer
import Testing

/// TLS policy, metrics, health, and the CLI against a live server.
@Suite struct OperationsTests {
    @Test func onlyTLS12AndLaterIsServed() async throws {
        try await TestServer.with { server in
            func curl(_ arguments: [String]) async throws -> (Int32, String) {
                let result = try await Subprocess.run(
                    "/usr/bin/curl",
                    ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", server.caPath] + arguments)
                return (result.status, result.output)
            }
            #expect(try await curl(["--tlsv1.3", server.baseURL + "/healthz"]) == (0, "200"))
            #expect(try await curl(["--tlsv1.2", "--tls-max", "1.2", server.baseURL + "/healthz"]) == (0, "200"))
            #expect(try await curl(["--tlsv1.1", "--tls-max", "1.1", server.baseURL + "/healthz"]).0 != 0)
            #expect(try await curl(["http://127.0.0.1:\(server.port)/healthz"]).1 != "200")
            let weak = try await curl([
                "--tlsv1.2", "--tls-max", "1.2", "--ciphers", "AES128-SHA", server.baseURL + "/healthz",
            ])
            #expect(weak.0 != 0)
        }
    }

    @Test func plainHTTPOnlyRedirectsToHTTPS() async throws {
        let redirectPort = try freeTCPPort()
        try await TestServer.with({ $0.httpRedirectPort = redirectPort }) { server in
            let reply = try await Subprocess.run(
                "/usr/bin/curl",
                [
                    "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                    "http://127.0.0.1:\(redirectPort)/v1/calls?x=1",
                ])
            #expect(reply.output == "308 https://127.0.0.1:\(server.port)/v1/calls?x=1")
            let health = try await Subprocess.run(
                "/usr/bin/curl",
                ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(redirectPort)/healthz"])
            #expect(health.output == "308")
        }
    }

    @Test func cliWatchPrintsCallEventsLive() async throws {
        try await TestServer.with { server in
            let watch = try lineStream(
                CLI.executable.path,
                [
                    "calls", "watch", "--all", "--server", server.baseURL, "--ca", server.caPath, "--token",
                    await server.token("ops", admin: true),
                ])
            defer { watch.stop() }
            #expect(try await watch.next()?.hasPrefix("TIME") == true)
            #expect(try await watch.next()?.contains("hello") == true)
            let id = try await server.invite("alice", to: "bob").callID
            try await server.act("decline", id, as: "bob")
            let invite = try #require(try await watch.next())
            #expect(invite.contains("call.invite") && invite.contains(id) && invite.contains("alice"))
            let ended = try #require(try await watch.next())
            #expect(ended.contains("call.ended") && ended.contains(id) && ended.contains("declined"))
        }
    }

    @Test func metricsDescribeCallsStreamsAndRequests() async throws {
        try await TestServer.with { server in
            let stream = try await server.stream("bob", device: "b1")
            defer { stream.close() }
            try await stream.expect("hello")
            let id = try await server.invite("alice", to: "bob").callID
            try await stream.expect("call.invite")
            try await server.act("accept", id, as: "bob", device: "b1")
            let text = try await server.metrics()
            #expect(text.contains(#"switchboard_calls{state="active"} 1"#))
            #expect(text.contains(#"switchboard_calls{state="inviting"} 0"#))
            #expect(text.contains("switchboard_call_setups_total 1"))
            #expect(text.contains("switchboard_sse_streams_open 1"))
            #expect(text.contains("switchboard_sse_events_sent_total"))
            #expect(text.contains("switchboard_sse_slow_readers_dropped_total 0"))
            #expect(
                text.contains(
                    #"switchboard_http_request_duration_seconds_bucket{method="POST",route="/v1/calls/{id}/accept",status="200""#
                ))
            try await server.act("hangup", id, as: "alice")
            #expect(try await server.metric(#"switchboard_calls_ended_total{reason="hangup"}"#) == 1)
        }
    }

    @Test func cliListsShowsAndFailsCleanly() async throws {
        try await TestServer.with { server in
            let id = try await server.invite("alice", to: "bob").callID
            try await server.act("decline", id, as: "bob")
            let common = ["--server", server.baseURL, "--ca", server.caPath, "--token", await server.token("alice")]
            let list = try await CLI.run(["calls", "list"] + common)
            #expect(list.status == 0)
            #expect(list.output.contains(id))
            #expect(list.output.contains("declined"))
            let filtered = try await CLI.run(["calls", "list", "--state", "active"] + common)
            #expect(!filtered.output.contains(id))
            let show = try await CLI.run(["calls", "show", id] + common)
            #expect(show.status == 0)
            #expect(show.output.contains("invite"))
            #expect(show.output.contains("declined"))
            let json = try await CLI.run(["calls", "show", id, "--json"] + common)
            let decoded = try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any]
            #expect((decoded?["call"] as? [String: Any])?["id"] as? String == id)

            let notMine = try await CLI.run([
                "calls", "show", id, "--server", server.baseURL, "--ca", server.caPath, "--token",
                await server.token("eve"),
            ])
            #expect(notMine.status != 0)
            #expect(notMine.error.contains("call_not_found"))
            #expect(notMine.error.split(separator: "\n").count == 1)
            let untrusted = try await CLI.run([
                "calls", "list", "--server", server.baseURL, "--token", await server.token("alice"), "--ca",
                "/etc/ssl/certs/ca-certificates.crt",
            ])
            #expect(untrusted.status != 0)
            let unreachable = try await CLI.run([
                "calls", "list", "--server", "https://127.0.0.1:1", "--insecure", "--token", "x",
            ])
            #expect(unreachable.status != 0)
            #expect(unreachable.error.hasPrefix("error: cannot reach"))
            let noToken = try await CLI.run(
                ["calls", "list", "--server", server.baseURL], environment: ["SWITCHBOARD_TOKEN": ""])
            #expect(noToken.status != 0)
            #expect(noToken.error.contains("no token"))
        }
    }

    @Test func cliTokensAreAcceptedByTheServer() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sb-cli-\(UUID().uuidString)")
            .path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let generated = try await CLI.run(["certs", "generate", "--dir", directory])
        #expect(generated.status == 0)
        #expect(FileManager.default.fileExists(atPath: directory + "/dev-ca.pem"))
        let keyMode =
            try FileManager.default.attributesOfItem(atPath: directory + "/dev-key.pem")[.posixPermissions] as? Int
        #expect(keyMode == 0o600)
        let issued = try await CLI.run([
            "token", "issue", "--user", "dora", "--admin", "--ttl", "60", "--certs-dir", directory,
        ])
        #expect(issued.status == 0)
        let token = issued.output.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(token.split(separator: ".").count == 3)
        let secret = try String(contentsOfFile: directory + "/dev-token-secret", encoding: .utf8)
        let authority = TokenAuthority(secret: Array(secret.trimmingCharacters(in: .whitespacesAndNewlines).utf8))
        #expect(try await authority.verify(token).get() == Identity(user: "dora", isAdmin: true))
        let invalid = try await CLI.run(["token", "issue", "--user", "no spaces", "--certs-dir", directory])
        #expect(invalid.status != 0)
        let weak = try await CLI.run(["token", "issue", "--user", "dora", "--token-secret", "short"])
        #expect(weak.status != 0)
        #expect(weak.error.contains("at least 32 bytes"))
    }
}

/// Runs the built `switchboard` executable.
enum CLI {
    static var executable: URL {
        // The test bundle sits next to the package's executables in the build folder.
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        while url.pathComponents.count > 1
            && !FileManager.default.fileExists(atPath: url.appendingPathComponent("switchboard").path)
        {
            url.deleteLastPathComponent()
        }
        return url.appendingPathComponent("switchboard")
    }

    static func run(_ arguments: [String], environment: [String: String] = [:]) async throws -> Subprocess.Result {
        try await Subprocess.run(executable.path, arguments, environment: environment)
    }
}

/// Runs a program to completion on a thread of its own, never blocking the cooperative pool (on two cores, a
/// blocked pool would also stall the in-process server the program talks to).
enum Subprocess {
    struct Result: Sendable {
        let status: Int32
        let output: String
        let error: String
    }

    static func run(_ path: String, _ arguments: [String], environment: [String: String] = [:]) async throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        process.environment = env
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        return await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                let output = out.fileHandleForReading.readDataToEndOfFile()
                let error = err.fileHandleForReading.readDataToEndOfFile()
                process.waitUntilExit()
                continuation.resume(
                    returning: Result(
                        status: process.terminationStatus, output: String(decoding: output, as: UTF8.self),
                        error: String(decoding: error, as: UTF8.self)))
            }
        }
    }
}

/// A TCP port that was free a moment ago (bind to port 0, read it, close).
func freeTCPPort() throws -> Int { try freePort(socketType: Int32(SOCK_STREAM.rawValue)) }

/// A loopback port of `socketType` that was free a moment ago.
func freePort(socketType: Int32) throws -> Int {
    let fd = socket(AF_INET, socketType, 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
        }
    }
    guard bound else { throw TestFailure("no free port") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// A long-running program whose stdout is read line by line as it comes.
func lineStream(_ path: String, _ arguments: [String], mergeStandardError: Bool = false) throws
    -> StreamingProcess<String>
{
    try StreamingProcess(path, arguments, state: Data(), mergeStandardError: mergeStandardError) { pending, data in
        pending.append(data)
        var lines: [String] = []
        while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
            lines.append(String(decoding: pending[pending.startIndex..<newline], as: UTF8.self))
            pending.removeSubrange(pending.startIndex...newline)
        }
        return lines
    }
}
