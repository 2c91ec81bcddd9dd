import Foundation
import Logging
import NIOCore
import NIOPosix
import Relay
import RelayCore
import STUN
import ServiceLifecycle
import SwitchboardServer
import Testing

/// The TURN relay on an ephemeral loopback port, driven by coturn's `turnutils_uclient` (a client no one here wrote)
/// through coturn's `turnutils_peer` echo peer, over real UDP.
@Suite(.serialized) struct RelayInteropTests {
    static let uclient = "/usr/bin/turnutils_uclient"
    static let secret = "interop-shared-secret-of-32-bytes-or-more"

    @Test func uclientRelaysThroughChannelsWithoutLoss() async throws {
        try await TestRelay.with { relay in
            let run = try await relay.uclient(["-c", "-u", "alice", "-w", "secret"])
            try Self.expectNoLoss(run, messages: 500)
            // uclient deletes the allocations it used and leaves a spare one per client to expire.
            let allocations = await relay.server.allocations()
            #expect(allocations.count == 5 && allocations.allSatisfy { $0.user == "alice" }, "\(allocations)")
        }
    }

    @Test func uclientRelaysWithSendAndDataIndications() async throws {
        try await TestRelay.with { relay in
            try Self.expectNoLoss(try await relay.uclient(["-s", "-c", "-u", "alice", "-w", "secret"]), messages: 500)
        }
    }

    @Test func uclientRelaysClientToClientThroughTwoAllocations() async throws {
        try await TestRelay.with { relay in
            let run = try await relay.uclient(["-y", "-c", "-u", "alice", "-w", "secret"], clients: 4, peer: false)
            try Self.expectNoLoss(run, messages: 400)
        }
    }

    @Test func uclientAuthenticatesWithTURNRESTCredentials() async throws {
        try await TestRelay.with { relay in
            try Self.expectNoLoss(try await relay.uclient(["-c", "-W", Self.secret, "-u", "carol"]), messages: 500)
            let users = Set(await relay.server.allocations().map(\.user))
            #expect(users == ["carol"])
        }
    }

    /// aioice (PyPI), a Python ICE agent, gathers a relay candidate through the relay; with a wrong password none.
    @Test func aioiceGathersARelayCandidate() async throws {
        try await TestRelay.with { relay in
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("relay-clients/aioice_relay_candidate.py").path
            let gathered = try await Subprocess.run(
                "/usr/bin/env", ["python3", script, "127.0.0.1", String(relay.port), "alice", "secret"])
            #expect(gathered.status == 0, "\(gathered.output) \(gathered.error.suffix(600))")
            let fields = gathered.output.split(separator: "\n").first?.split(separator: " ") ?? []
            #expect(fields.count == 3 && fields[0] == "relay" && fields[1] == "127.0.0.1", "\(gathered.output)")
            #expect(fields.count == 3 && Int(fields[2]).map { (40_000...59_999).contains($0) } == true)
            let refused = try await Subprocess.run(
                "/usr/bin/env", ["python3", script, "127.0.0.1", String(relay.port), "alice", "wrong"])
            #expect(refused.status == 1 && !refused.output.contains("relay"), "\(refused.output)")
        }
    }

    @Test func wrongCredentialsAreRefused() async throws {
        try await TestRelay.with { relay in
            let run = try await relay.uclient(["-c", "-u", "alice", "-w", "not-the-password"], messages: 5)
            #expect(run.status != 0)
            #expect((run.output + run.error).contains("Cannot complete Allocation"))
            #expect(await relay.server.allocations().isEmpty)
        }
    }

    @Test func loopbackPeersAreRefusedUnlessAllowed() async throws {
        try await TestRelay.with(allowLoopback: false) { relay in
            let run = try await relay.uclient(["-c", "-u", "alice", "-w", "secret"], messages: 5)
            #expect(run.status != 0)
            #expect((run.output + run.error).contains("403"), "\(run.output)")
        }
    }

    @Test func malformedDatagramsAreDroppedAndTheRelayKeepsAnswering() async throws {
        try await TestRelay.with { relay in
            let socket = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .bind(host: "127.0.0.1", port: 0).get()
            defer { socket.close(promise: nil) }
            let target = try SocketAddress(ipAddress: "127.0.0.1", port: relay.port)
            let junk: [[UInt8]] = [
                [], [0], [0x40, 0x00, 0xFF, 0xFF], [UInt8](repeating: 0xFF, count: 300), [0, 1, 0, 8],
            ]
            for bytes in junk {
                try await socket.writeAndFlush(AddressedEnvelope(remoteAddress: target, data: ByteBuffer(bytes: bytes)))
            }
            let reply = try await relay.binding(from: socket)
            #expect(reply.type == .bindingSuccess)
            #expect(try reply.xorMappedAddress == socket.localAddress.flatMap(TransportAddress.init))
        }
    }

    static func expectNoLoss(_ run: Subprocess.Result, messages: Int) throws {
        #expect(run.status == 0, "uclient failed: \(run.output.suffix(800)) \(run.error.suffix(400))")
        #expect(
            run.output.contains("tot_send_msgs=\(messages), tot_recv_msgs=\(messages)"), "\(run.output.suffix(800))")
        #expect(run.output.contains("Total lost packets 0 (0.000000%)"), "\(run.output.suffix(800))")
    }
}

/// coturn's `turnutils_peer` echoing UDP on a free loopback port.
final class EchoPeer: Sendable {
    let port: Int
    private let process: Process

    init() throws {
        port = try freeUDPPort()
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/turnutils_peer")
        process.arguments = ["-L", "127.0.0.1", "-p", String(port)]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    func stop() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}

/// coturn's `turnutils_uclient` run to completion against the relay on `port`: `messages` of 172 bytes per client,
/// 5 ms apart, echoed by `peer` (none with `-y`).
func uclient(
    _ arguments: [String], port: Int, peer: EchoPeer?, messages: Int = 100, clients: Int = 5
) async throws -> Subprocess.Result {
    var all = arguments + ["-n", String(messages), "-m", String(clients), "-l", "172", "-z", "5", "-p", String(port)]
    if let peer { all += ["-e", "127.0.0.1", "-r", String(peer.port)] }
    return try await Subprocess.run("/usr/bin/timeout", ["60", RelayInteropTests.uclient] + all + ["127.0.0.1"])
}

/// The relay inside `switchboard serve`: credentials from the signaling plane, the admin's allocation list.
@Suite(.serialized) struct RelayAPITests {
    static func withRelay(_ body: (TestServer) async throws -> Void) async throws {
        try await TestServer.with(
            { configuration in
                let core = RelayConfiguration(
                    realm: "switchboard", sharedSecrets: [Array(RelayInteropTests.secret.utf8)],
                    relayAddresses: [.ipv4: IPAddress("127.0.0.1")!], maximumAllocationsPerUser: 100,
                    peerPolicy: PeerPolicy(allowed: [CIDR("127.0.0.0/8")!]),
                    channelNumbers: RelayConfiguration.rfc5766ChannelNumbers)
                configuration.relay = RelaySettings(
                    server: RelayServerConfiguration(
                        host: "127.0.0.1", port: 0, relayPorts: 40_000...59_999, core: core),
                    publicHost: "127.0.0.1", credentialTTL: 600)
            }, body)
    }

    @Test func issuedCredentialsWorkOnTheRelayAndAllocationsAreListedForAdminsOnly() async throws {
        try await Self.withRelay { server in
            #expect(try await server.request(.GET, "/v1/turn-credentials").status == 401)
            let reply = try await server.request(.GET, "/v1/turn-credentials", token: server.token("alice"))
            #expect(reply.status == 200)
            let ice = try #require((reply.json["iceServers"] as? [[String: Any]])?.first)
            let urls = try #require(ice["urls"] as? [String])
            let username = try #require(ice["username"] as? String)
            let credential = try #require(ice["credential"] as? String)
            #expect(reply.json["ttl"] as? Int == 600)
            #expect(username.hasSuffix(":alice"))
            let expiry = try #require(Int(username.split(separator: ":")[0]))
            #expect(abs(expiry - Int(Date().timeIntervalSince1970) - 600) <= 5)
            let port = try #require(
                urls.first.flatMap { url in
                    url.split(separator: ":").last?.split(separator: "?").first.flatMap { Int($0) }
                })
            #expect(urls == ["turn:127.0.0.1:\(port)?transport=udp"])
            // The credential never reaches the logs.
            #expect(!server.logs.all.joined().contains(credential))

            // A real TURN client authenticates with exactly what the API handed out.
            let peer = try EchoPeer()
            defer { peer.stop() }
            let run = try await uclient(["-c", "-u", username, "-w", credential], port: port, peer: peer, clients: 2)
            try RelayInteropTests.expectNoLoss(run, messages: 200)

            #expect(try await server.request(.GET, "/v1/relay/allocations", token: server.token("alice")).status == 403)
            let list = try await server.request(
                .GET, "/v1/relay/allocations", token: server.token("admin", admin: true))
            #expect(list.status == 200)
            let allocations = try #require(list.json["allocations"] as? [[String: Any]])
            #expect(!allocations.isEmpty && allocations.allSatisfy { $0["user"] as? String == "alice" })
            #expect(allocations.allSatisfy { ($0["relayed"] as? String)?.hasPrefix("127.0.0.1:") == true })

            let cli = try await CLI.run([
                "relay", "allocations", "--server", server.baseURL, "--ca", server.caPath, "--token",
                server.token("admin", admin: true),
            ])
            #expect(cli.status == 0, "\(cli.error)")
            #expect(cli.output.contains("alice") && cli.output.contains("RELAYED"))
            let relayMetric = try await server.metric("switchboard_relay_allocations")
            #expect((relayMetric ?? 0) >= 1)
        }
    }

    @Test func aServerWithoutARelaySays404() async throws {
        try await TestServer.with { server in
            let reply = try await server.request(.GET, "/v1/turn-credentials", token: server.token("alice"))
            #expect(reply.status == 404 && reply.errorCode == "not_found")
        }
    }
}

/// A relay and an echo peer on free loopback ports.
final class TestRelay: Sendable {
    let server: RelayServer
    let port: Int
    private let peer: EchoPeer
    private let group: ServiceGroup
    private let task: Task<Void, any Error>

    static func with(allowLoopback: Bool = true, _ body: (TestRelay) async throws -> Void) async throws {
        let relay = try await start(allowLoopback: allowLoopback)
        do {
            try await body(relay)
            await relay.stop()
        } catch {
            await relay.stop()
            throw error
        }
    }

    static func start(allowLoopback: Bool) async throws -> TestRelay {
        let core = RelayConfiguration(
            realm: "example.org", staticUsers: ["alice": "secret"],
            sharedSecrets: [Array(RelayInteropTests.secret.utf8)], relayAddresses: [.ipv4: IPAddress("127.0.0.1")!],
            maximumAllocationsPerUser: 100,
            peerPolicy: PeerPolicy(allowed: allowLoopback ? [CIDR("127.0.0.0/8")!] : []),
            // coturn's uclient picks channel numbers from RFC 5766's wider range.
            channelNumbers: RelayConfiguration.rfc5766ChannelNumbers)
        let server = RelayServer(
            configuration: RelayServerConfiguration(host: "127.0.0.1", port: 0, relayPorts: 40_000...59_999, core: core)
        )
        let group = ServiceGroup(
            configuration: .init(services: [.init(service: server)], logger: Logger(label: "relay-test")))
        let task = Task { try await group.run() }
        let port = try await server.boundPort()
        return TestRelay(server: server, port: port, peer: try EchoPeer(), group: group, task: task)
    }

    private init(server: RelayServer, port: Int, peer: EchoPeer, group: ServiceGroup, task: Task<Void, any Error>) {
        self.server = server
        self.port = port
        self.peer = peer
        self.group = group
        self.task = task
    }

    func stop() async {
        peer.stop()
        await group.triggerGracefulShutdown()
        _ = await task.result
    }

    func uclient(_ arguments: [String], messages: Int = 100, clients: Int = 5, peer: Bool = true) async throws
        -> Subprocess.Result
    {
        try await EndToEndTests.uclient(
            arguments, port: port, peer: peer ? self.peer : nil, messages: messages, clients: clients)
    }

    /// A STUN Binding over `socket`, answered within 5 s.
    func binding(from socket: any Channel) async throws -> STUNMessage {
        let replies = try await socket.pipeline.addHandler(Collector()).flatMap { _ in
            socket.pipeline.handler(type: Collector.self)
        }.get()
        let request = STUNMessage(type: .bindingRequest, transactionID: .random())
        try await socket.writeAndFlush(
            AddressedEnvelope(
                remoteAddress: try SocketAddress(ipAddress: "127.0.0.1", port: port),
                data: ByteBuffer(bytes: try request.encode(fingerprint: true))))
        guard let bytes = try await nextElement(of: replies.stream, timeout: 5) else {
            throw TestFailure("no Binding response")
        }
        return try STUNMessage(decoding: bytes)
    }

    /// Hands every datagram a socket receives to an async stream.
    final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        let stream: AsyncStream<[UInt8]>
        private let continuation: AsyncStream<[UInt8]>.Continuation

        init() { (stream, continuation) = AsyncStream.makeStream() }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            continuation.yield(Array(unwrapInboundIn(data).data.readableBytesView))
        }
    }
}

/// A UDP port that was free a moment ago.
func freeUDPPort() throws -> Int { try freePort(socketType: Int32(SOCK_DGRAM.rawValue)) }
