import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
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

    /// Without `-c`, uclient opens an RTP and an RTCP allocation per client: EVEN-PORT with R = 1, then an Allocate
    /// with the RESERVATION-TOKEN it got (RFC 8656 §7.2).
    @Test func uclientInItsDefaultModeGetsEvenAndOddPortPairs() async throws {
        try await TestRelay.with { relay in
            let run = try await relay.uclient(["-v", "-u", "alice", "-w", "secret"])
            // uclient rounds its 5 clients up to 3 RTP/RTCP session pairs of 100 messages each: 600, RTP to the
            // peer's port and RTCP to the one above it.
            try Self.expectNoLoss(run, messages: 600)
            // RTP allocations got an even port, and their RTCP ones the odd port above it (uclient's log names
            // most of them; a pair by chance among 20,000 ports is unlikely).
            let ports = Set(Self.relayedPorts(run.output))
            let pairs = ports.filter { $0 % 2 == 0 && ports.contains($0 + 1) }
            #expect(pairs.count >= 3, "\(ports.sorted())")
        }
    }

    /// TURN over TCP (RFC 8656 §3.1): uclient's default mode with `-t`, every message back.
    @Test func uclientOverTCPRelaysWithoutLoss() async throws {
        try await TestRelay.with { relay in
            let run = try await relay.uclient(["-v", "-t", "-u", "alice", "-w", "secret"], port: relay.ports.tcp)
            try Self.expectNoLoss(run, messages: 600)
            let ports = Set(Self.relayedPorts(run.output))
            #expect(ports.filter { $0 % 2 == 0 && ports.contains($0 + 1) }.count >= 3, "\(ports.sorted())")
            // uclient closed its connections, and so ended every allocation made over them, spares included
            // (over UDP they stay until their lifetime ends).
            try await SecureRelayTests.eventually { await relay.server.allocations().isEmpty }
        }
    }

    /// TURN over TLS (`-S`), side by side with coturn on the same certificate: uclient's TLS client is known to
    /// lose a message or two even against coturn, so the relay must lose no more than coturn does in the same run.
    @Test func uclientOverTLSLosesNoMoreThanAgainstCoturn() async throws {
        try await TestRelay.with { relay in
            let arguments = ["-t", "-S", "-u", "alice", "-w", "secret"]
            // uclient tries a TLS version at random per connection and retries a refused one; now and then it gives
            // up on TLS 1.0/1.1, which the relay refuses (TLS 1.2+ only): that run is uclient's, and is run again.
            var ours = try await relay.uclient(arguments, port: relay.ports.tls)
            for _ in 0..<2 where ours.status != 0 && ours.output.contains("alert protocol version") {
                ours = try await relay.uclient(arguments, port: relay.ports.tls)
            }
            #expect(ours.status == 0, "\(ours.output.suffix(800)) \(ours.error.suffix(400))")
            let coturn = try await Coturn.start(certificates: try TestRelay.certificates())
            defer { coturn.stop() }
            let theirs = try await relay.uclient(arguments, port: coturn.tlsPort)
            let (sent, received) = try #require(Self.totals(ours.output), "\(ours.output.suffix(800))")
            let (coturnSent, coturnReceived) = try #require(Self.totals(theirs.output), "\(theirs.output.suffix(800))")
            #expect(sent == 600 && coturnSent == 600)
            #expect(
                sent - received <= coturnSent - coturnReceived, "ours \(received)/\(sent), coturn's \(coturnReceived)")
        }
    }

    /// A connection's end ends the allocations made over it at once, without waiting for their lifetime; a byte
    /// stream that is not TURN is cut and the relay goes on serving.
    @Test func closingTheTCPConnectionEndsItsAllocation() async throws {
        try await TestRelay.with { relay in
            let connection = try await TURNConnection.open(port: relay.ports.tcp)
            let relayed = try await connection.allocate(username: "alice", password: "secret")
            #expect(relayed.ip == IPAddress("127.0.0.1"))
            #expect(await relay.server.allocations().map(\.relayedAddress) == [relayed])
            try await connection.close()
            try await SecureRelayTests.eventually { await relay.server.allocations().isEmpty }

            let junk = try await TURNConnection.open(port: relay.ports.tcp)
            try await junk.send([0xFF, 0xFF, 0xFF, 0xFF])
            try await junk.waitForClose()
            // A frame longer than a datagram may be (a STUN header that claims 4,000 bytes) is cut as well.
            let long = try await TURNConnection.open(port: relay.ports.tcp)
            try await long.send([0x00, 0x01, 0x0F, 0xA0, 0x21, 0x12, 0xA4, 0x42])
            try await long.waitForClose()
            let again = try await TURNConnection.open(port: relay.ports.tcp)
            #expect(try await again.binding() != nil)
            try await again.close()
        }
    }

    /// One client address holds at most 16 TCP or TLS connections: the 17th is closed at once, the others serve on.
    @Test func connectionsPastThePerAddressCapAreClosed() async throws {
        try await TestRelay.with { relay in
            var open: [TURNConnection] = []
            for _ in 0..<16 {
                let connection = try await TURNConnection.open(port: relay.ports.tcp)
                #expect(try await connection.binding()?.type == .bindingSuccess)
                open.append(connection)
            }
            let refused = try await TURNConnection.open(port: relay.ports.tcp)
            try await refused.waitForClose()
            #expect(try await open[0].binding()?.type == .bindingSuccess)
            for connection in open { try await connection.close() }
            // Closed ones free their places (once the relay has seen them close).
            try await SecureRelayTests.eventually {
                let after = try await TURNConnection.open(port: relay.ports.tcp)
                let answered = (try? await after.binding())??.type == .bindingSuccess
                try await after.close()
                return answered
            }
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

            // The same over TURN over TCP: the allocation is the connection's.
            let overTCP = try await Subprocess.run(
                "/usr/bin/env", ["python3", script, "127.0.0.1", String(relay.ports.tcp), "alice", "secret", "tcp"])
            #expect(overTCP.status == 0, "\(overTCP.output) \(overTCP.error.suffix(600))")
            let tcpFields = overTCP.output.split(separator: "\n").first?.split(separator: " ") ?? []
            #expect(tcpFields.count == 3 && tcpFields[0] == "relay" && tcpFields[1] == "127.0.0.1", "\(overTCP.output)")
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

    /// uclient's final tally: messages sent and received back, from its `tot_send_msgs=N, tot_recv_msgs=M` line.
    static func totals(_ output: String) -> (sent: Int, received: Int)? {
        for line in output.split(separator: "\n").reversed() {
            guard let range = line.range(of: "start_mclient: tot_send_msgs=") else { continue }
            let numbers = line[range.upperBound...].split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
            if numbers.count == 2 { return (numbers[0], numbers[1]) }
        }
        return nil
    }

    /// The relayed ports uclient reports with `-v`.
    static func relayedPorts(_ output: String) -> [Int] {
        output.split(separator: "\n").compactMap { line in
            guard let range = line.range(of: "Received relay addr: ") else { return nil }
            return line[range.upperBound...].split(separator: ":").last.flatMap { Int($0) }
        }
    }

    static func expectNoLoss(_ run: Subprocess.Result, messages: Int) throws {
        #expect(run.status == 0, "uclient failed: \(run.output.suffix(800)) \(run.error.suffix(400))")
        let totals = Self.totals(run.output)
        #expect(totals?.sent == messages && totals?.received == messages, "\(run.output.suffix(800))")
        #expect(run.output.contains("Total lost packets 0 (0.000000%)"), "\(run.output.suffix(800))")
    }
}

/// coturn's `turnutils_peer` echoing UDP on a free loopback port pair: uclient sends RTP to `port` and RTCP to
/// `port + 1`. The peer ignores a port it cannot bind, so both are checked free first, and both must echo before
/// the peer is used (else it is started again on another pair); they are picked below the kernel's ephemeral range,
/// where no test's relay, server or client socket lands.
final class EchoPeer: Sendable {
    let port: Int
    private let process: Process

    init() throws {
        for _ in 0..<10 {
            let port = 2 * Int.random(in: 10_000...15_999)
            guard Self.bothFree(port) else { continue }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/turnutils_peer")
            process.arguments = ["-L", "127.0.0.1", "-p", String(port)]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            if Self.echoes(port) && Self.echoes(port + 1) {
                self.port = port
                self.process = process
                return
            }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        throw TestFailure("turnutils_peer did not echo on a free port pair")
    }

    func stop() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Whether UDP ports `port` and `port + 1` of 127.0.0.1 can both be bound.
    private static func bothFree(_ port: Int) -> Bool {
        let sockets = [port, port + 1].map { port -> Int32 in
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            var address = Self.loopback(port)
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
                }
            }
            if !bound {
                close(fd)
                return -1
            }
            return fd
        }
        for fd in sockets where fd >= 0 { close(fd) }
        return sockets.allSatisfy { $0 >= 0 }
    }

    /// Whether a datagram to `port` comes back within a second or so (three tries: the peer may still be
    /// starting).
    private static func echoes(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var timeout = timeval(tv_sec: 0, tv_usec: 400_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = Self.loopback(port)
        let probe: [UInt8] = Array("echo?".utf8)
        var reply = [UInt8](repeating: 0, count: 64)
        for _ in 0..<3 {
            let sent = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, probe, probe.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard sent == probe.count else { continue }
            if recv(fd, &reply, reply.count, 0) == probe.count, Array(reply.prefix(probe.count)) == probe {
                return true
            }
        }
        return false
    }

    private static func loopback(_ port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return address
    }
}

/// coturn's `turnserver` on free loopback ports, TURN over TLS with the given certificate, the same user and realm
/// as ``TestRelay``: the reference a test compares the relay with.
final class Coturn: Sendable {
    let tlsPort: Int
    private let process: Process

    private init(tlsPort: Int, process: Process) {
        self.tlsPort = tlsPort
        self.process = process
    }

    static func start(certificates: DevCertificates) async throws -> Coturn {
        let port = try freeUDPPort()
        let tlsPort = try freePort(socketType: Int32(SOCK_STREAM.rawValue))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/turnserver")
        process.arguments = [
            "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", "--listening-port=\(port)",
            "--tls-listening-port=\(tlsPort)", "--cert=\(certificates.certificatePath)",
            "--pkey=\(certificates.privateKeyPath)", "--min-port=60000", "--max-port=60999", "--lt-cred-mech",
            "--user=alice:secret", "--realm=example.org", "--allow-loopback-peers", "--no-cli", "--no-dtls",
            "--relay-threads=1", "--log-file=stdout", "--pidfile=",
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let coturn = Coturn(tlsPort: tlsPort, process: process)
        // Ready when its TLS port accepts a connection (bounded: 10 s).
        for _ in 0..<200 {
            if let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: "127.0.0.1", port: tlsPort).get()
            {
                try? await channel.close()
                return coturn
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        coturn.stop()
        throw TestFailure("coturn did not start listening on \(tlsPort)")
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
    static func withRelay(store: StoreLocation? = nil, _ body: (TestServer) async throws -> Void) async throws {
        try await TestServer.with(
            { configuration in
                if let store { configuration.store = store }
                let core = RelayConfiguration(
                    realm: "switchboard", sharedSecrets: [Array(RelayInteropTests.secret.utf8)],
                    relayAddresses: [.ipv4: IPAddress("127.0.0.1")!], maximumAllocationsPerUser: 100,
                    peerPolicy: PeerPolicy(allowed: [CIDR("127.0.0.0/8")!]),
                    channelNumbers: RelayConfiguration.rfc5766ChannelNumbers)
                configuration.relay = RelaySettings(
                    server: RelayServerConfiguration(
                        host: "127.0.0.1", port: 0, relayPorts: 40_000...59_999, core: core, tcpPort: 0),
                    publicHost: "127.0.0.1", credentialTTL: 600, turnsPort: 0)
            }, body)
    }

    @Test func issuedCredentialsWorkOnTheRelayAndAllocationsAreListedForAdminsOnly() async throws {
        try await Self.withRelay { server in
            #expect(try await server.request(.GET, "/v1/turn-credentials").status == 401)
            let reply = try await server.request(.GET, "/v1/turn-credentials", token: await server.token("alice"))
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
            let ports = try await #require(server.relay).boundPorts()
            #expect(
                urls == [
                    "turn:127.0.0.1:\(port)?transport=udp", "turn:127.0.0.1:\(try #require(ports.tcp))?transport=tcp",
                    "turns:127.0.0.1:\(try #require(ports.tls))?transport=tcp",
                ])
            // The credential never reaches the logs.
            #expect(!server.logs.all.joined().contains(credential))

            // A real TURN client authenticates with exactly what the API handed out.
            let peer = try EchoPeer()
            defer { peer.stop() }
            let run = try await uclient(["-c", "-u", username, "-w", credential], port: port, peer: peer, clients: 2)
            try RelayInteropTests.expectNoLoss(run, messages: 200)

            #expect(
                try await server.request(.GET, "/v1/relay/allocations", token: await server.token("alice")).status
                    == 403)
            let list = try await server.request(
                .GET, "/v1/relay/allocations", token: await server.token("admin", admin: true))
            #expect(list.status == 200)
            let allocations = try #require(list.json["allocations"] as? [[String: Any]])
            #expect(!allocations.isEmpty && allocations.allSatisfy { $0["user"] as? String == "alice" })
            #expect(allocations.allSatisfy { ($0["relayed"] as? String)?.hasPrefix("127.0.0.1:") == true })
            #expect(allocations.allSatisfy { $0["transport"] as? String == "udp" })

            let cli = try await CLI.run([
                "relay", "allocations", "--server", server.baseURL, "--ca", server.caPath, "--token",
                await server.token("admin", admin: true),
            ])
            #expect(cli.status == 0, "\(cli.error)")
            #expect(cli.output.contains("alice") && cli.output.contains("RELAYED"))
            let relayMetric = try await server.metric("switchboard_relay_allocations")
            #expect((relayMetric ?? 0) >= 1)
        }
    }

    /// A TCP connection to the relay with an allocation of alice's (fresh REST credentials) and its relayed address.
    static func allocateOverTCP(port: Int, receiveBuffer: Int? = nil) async throws -> (TURNConnection, TransportAddress)
    {
        let connection = try await TURNConnection.open(port: port, receiveBuffer: receiveBuffer)
        let credential = EphemeralCredential.make(
            secret: Array(RelayInteropTests.secret.utf8), user: "alice",
            expiry: Int64(Date().timeIntervalSince1970) + 600)
        return (connection, try await connection.allocate(username: credential.username, password: credential.password))
    }

    /// A TCP client that stops reading costs the relay no more than its connection's write buffer: what a peer
    /// sends past that is dropped and counted (`congested`), and the relay goes on serving everyone else.
    @Test func aTCPClientThatStopsReadingIsBoundedNotBuffered() async throws {
        try await Self.withRelay { server in
            let ports = try await #require(server.relay).boundPorts()
            let (stalled, relayed) = try await Self.allocateOverTCP(port: try #require(ports.tcp), receiveBuffer: 4096)
            let peer = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .bind(host: "127.0.0.1", port: 0).get()
            defer { peer.close(promise: nil) }
            let peerAddress = try #require(peer.localAddress.flatMap(TransportAddress.init))
            #expect(try await stalled.createPermission(peerAddress))
            // The client reads nothing from here on (and its receive buffer is small): the peer sends on.
            try await stalled.stopReading()
            let target = SocketAddress(relayed)
            let payload = ByteBuffer(repeating: 0x5A, count: 1000)
            // Until the relay reports drops (its counters reach the metrics once a second), up to 400 MB: a loaded
            // machine drops much of it before the relay reads it.
            for batch in 0..<4000 {
                for _ in 0..<100 { peer.write(AddressedEnvelope(remoteAddress: target, data: payload), promise: nil) }
                try await peer.writeAndFlush(AddressedEnvelope(remoteAddress: target, data: payload))
                if batch % 20 == 19,
                    try await server.metric(#"switchboard_relay_dropped_total{cause="congested"}"#)
                        ?? 0 > 0
                {
                    break
                }
            }
            try await SecureRelayTests.eventually {
                try await server.metric(#"switchboard_relay_dropped_total{cause="congested"}"#) ?? 0 > 0
            }
            let other = try await TURNConnection.open(port: try #require(ports.tcp))
            #expect(try await other.binding()?.type == .bindingSuccess)
            try await other.close()
            try await stalled.close()
        }
    }

    /// A TCP client that sends requests and never reads the replies is cut once its unread replies pass the cap,
    /// and the relay goes on serving everyone else. (The cut used to close the connection inside the tables' lock,
    /// whose close handler takes the lock again: this test trapped on the debug build's error-checking mutex.)
    @Test func aTCPClientThatDoesNotReadItsRepliesIsCut() async throws {
        try await Self.withRelay { server in
            let ports = try await #require(server.relay).boundPorts()
            let (stalled, _) = try await Self.allocateOverTCP(port: try #require(ports.tcp), receiveBuffer: 4096)
            try await stalled.stopReading()
            let peer = TransportAddress(ip: IPAddress("127.0.0.1")!, port: 9)
            let batch = Array(repeating: try stalled.createPermissionRequest(peer), count: 500).flatMap { $0 }
            // Each request gets a reply of some 70 bytes that the client never reads: past the kernel's buffers and
            // the connection's write buffer they pile up in the relay until the cap cuts the connection, and the
            // client's next writes fail. Up to 400 batches (200,000 requests, some 14 MB of replies).
            var cut = false
            for _ in 0..<400 {
                do { try await stalled.send(batch) } catch {
                    cut = true
                    break
                }
            }
            #expect(cut, "the relay kept a connection whose replies went unread")
            try await SecureRelayTests.eventually {
                try await server.metric(#"switchboard_relay_connections_total{outcome="failed"}"#) ?? 0 > 0
            }
            let other = try await TURNConnection.open(port: try #require(ports.tcp))
            #expect(try await other.binding()?.type == .bindingSuccess)
            try await other.close()
            try? await stalled.close()
        }
    }

    /// `?call=ID` credentials are bound to the call: only its parties get them, and when it ends every allocation
    /// made with them ends at once and they are refused from then on; plain credentials are untouched.
    @Test func callScopedCredentialsEndWithTheCall() async throws {
        try await Self.withRelay { server in
            let id = try await server.invite("alice", to: "bob").callID
            let scoped = try await server.request(
                .GET, "/v1/turn-credentials?call=\(id)", token: await server.token("alice"))
            #expect(scoped.status == 200)
            let ice = try #require((scoped.json["iceServers"] as? [[String: Any]])?.first)
            let username = try #require(ice["username"] as? String)
            let password = try #require(ice["credential"] as? String)
            #expect(username.hasSuffix(":alice:call=\(id)"))
            let stranger = try await server.request(
                .GET, "/v1/turn-credentials?call=\(id)", token: await server.token("mallory"))
            #expect(stranger.status == 404 && stranger.errorCode == "call_not_found")

            let ports = try await #require(server.relay).boundPorts()
            let tcp = try #require(ports.tcp)
            let leg = try await TURNConnection.open(port: tcp)
            _ = try await leg.allocate(username: username, password: password)
            let plain = EphemeralCredential.make(
                secret: Array(RelayInteropTests.secret.utf8), user: "alice",
                expiry: Int64(Date().timeIntervalSince1970) + 600)
            let other = try await TURNConnection.open(port: tcp)
            _ = try await other.allocate(username: plain.username, password: plain.password)
            let listed = try await #require(server.relay).allocations()
            #expect(listed.filter { $0.call == id }.count == 1 && listed.count == 2)

            try await server.act("hangup", id, as: "alice")
            try await SecureRelayTests.eventually {
                await server.relay?.allocations().contains { $0.call == id } == false
            }
            #expect(await server.relay?.allocations().count == 1)
            // The same credentials make nothing any more; the call's credentials are not issued either.
            let again = try await TURNConnection.open(port: tcp)
            #expect(try await again.allocateResponse(username: username, password: password)?.code == 401)
            let ended = try await server.request(
                .GET, "/v1/turn-credentials?call=\(id)", token: await server.token("alice"))
            #expect(ended.status == 409 && ended.errorCode == "invalid_transition")
            for connection in [leg, other, again] { try await connection.close() }
        }
    }

    /// A relay run apart (`switchboard relay --store postgres://…`) follows the cluster database: a call that ends
    /// on the signaling server ends the allocations made there with its credentials.
    @Test(.enabled(if: ClusterDatabase.serverURL != nil, "needs SWITCHBOARD_TEST_DATABASE_URL"))
    func aStandaloneRelayEndsCallScopedAllocationsFromTheClusterStore() async throws {
        let database = try await ClusterDatabase.create()
        defer { database.drop() }
        try await Self.withRelay(store: .postgres(url: database.url)) { server in
            try await TestRelay.with { standalone in
                let following = try await CallScopedRelay.follow(
                    url: database.url, relay: standalone.server, logger: Logger(label: "relay-test"))
                defer { following.stop() }
                let id = try await server.invite("alice", to: "bob").callID
                let reply = try await server.request(
                    .GET, "/v1/turn-credentials?call=\(id)", token: await server.token("alice"))
                let ice = try #require((reply.json["iceServers"] as? [[String: Any]])?.first)
                let username = try #require(ice["username"] as? String)
                let password = try #require(ice["credential"] as? String)
                let leg = try await TURNConnection.open(port: standalone.ports.tcp)
                _ = try await leg.allocate(username: username, password: password)
                #expect(await standalone.server.allocations().map(\.call) == [id])

                try await server.act("hangup", id, as: "bob")
                try await SecureRelayTests.eventually { await standalone.server.allocations().isEmpty }
                let again = try await TURNConnection.open(port: standalone.ports.tcp)
                #expect(try await again.allocateResponse(username: username, password: password)?.code == 401)
                for connection in [leg, again] { try await connection.close() }
            }
        }
    }

    @Test func aServerWithoutARelaySays404() async throws {
        try await TestServer.with { server in
            let reply = try await server.request(.GET, "/v1/turn-credentials", token: await server.token("alice"))
            #expect(reply.status == 404 && reply.errorCode == "not_found")
        }
    }
}

/// A relay and an echo peer on free loopback ports.
final class TestRelay: Sendable {
    let server: RelayServer
    let port: Int
    let ports: (tcp: Int, tls: Int)
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
            configuration: RelayServerConfiguration(
                host: "127.0.0.1", port: 0, relayPorts: 40_000...59_999, core: core, tcpPort: 0,
                tls: (0, try Self.tlsContext())))
        let group = ServiceGroup(
            configuration: .init(services: [.init(service: server)], logger: Logger(label: "relay-test")))
        let task = Task { try await group.run() }
        let ports = try await server.boundPorts()
        return TestRelay(server: server, ports: ports, peer: try EchoPeer(), group: group, task: task)
    }

    /// The dev certificate (made on first use) in the temporary directory.
    static func certificates() throws -> DevCertificates {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("relay-test-certs")
        let certificates = DevCertificates(directory: directory.path)
        _ = try certificates.ensure()
        return certificates
    }

    static func tlsContext() throws -> NIOSSLContext {
        let certificates = try certificates()
        return try RelayServerConfiguration.tlsContext(
            certificatePath: certificates.certificatePath, keyPath: certificates.privateKeyPath)
    }

    private init(
        server: RelayServer, ports: RelayPorts, peer: EchoPeer, group: ServiceGroup, task: Task<Void, any Error>
    ) {
        self.server = server
        self.port = ports.udp
        self.ports = (ports.tcp ?? 0, ports.tls ?? 0)
        self.peer = peer
        self.group = group
        self.task = task
    }

    func stop() async {
        peer.stop()
        await group.triggerGracefulShutdown()
        _ = await task.result
    }

    func uclient(
        _ arguments: [String], port: Int? = nil, messages: Int = 100, clients: Int = 5, peer: Bool = true
    ) async throws -> Subprocess.Result {
        try await EndToEndTests.uclient(
            arguments, port: port ?? self.port, peer: peer ? self.peer : nil, messages: messages, clients: clients)
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
