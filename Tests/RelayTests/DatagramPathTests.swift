import DatagramPump
import Foundation
import Logging
import Relay
import RelayCore
import STUN
import ServiceLifecycle
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The relay adapter's raw UDP data path on several threads, over real loopback sockets: N server sockets share the
/// TURN port (`SO_REUSEPORT`), relay sockets are spread over the threads, and one allocation table serves them all.
@Suite(.serialized) struct DatagramPathTests {
    /// 32 clients over two threads: the kernel spreads them over both server sockets and the relay spreads their relay
    /// sockets over both threads, so most clients are read by one thread and their peers by the other. Every
    /// Refresh, CreatePermission and ChannelBind succeeds, and every message comes back on its channel, while other
    /// allocations come and go.
    @Test func allocationsOnTwoThreadsShareOneTableAndLoseNothing() async throws {
        try await TestRelay.with(threads: 2) { relay in
            let peer = try UDPTestSocket()
            let clients = try (0..<32).map { _ in try TURNTestClient(server: relay.address) }
            var relayed: [TransportAddress] = []
            for (index, client) in clients.enumerated() {
                relayed.append(try client.allocate())
                #expect(try client.createPermission(peer.address))
                #expect(try client.channelBind(0x4000 + UInt16(index), to: peer.address))
            }
            let threads = relay.server.datagramThreads()
            #expect(threads.count == 2)
            #expect(threads.allSatisfy { $0.clientDatagrams > 0 && $0.relaySockets > 0 }, "\(threads)")

            let churn = try TURNTestClient(server: relay.address)
            for round in 0..<12 {
                if round % 4 == 3 {
                    for (index, client) in clients.enumerated() {
                        #expect(try client.refresh(lifetime: 600))
                        #expect(try client.createPermission(peer.address))
                        #expect(try client.channelBind(0x4000 + UInt16(index), to: peer.address))
                    }
                }
                // An allocation made and deleted: its relay socket is closed while the others relay.
                _ = try churn.allocate()
                #expect(try churn.refresh(lifetime: 0))

                for (index, client) in clients.enumerated() {
                    try client.sendChannelData(0x4000 + UInt16(index), Array("\(index):\(round)".utf8))
                }
                // The peer echoes what it gets to where it came from: the client's relayed address.
                var seen = Set<Int>()
                for _ in clients.indices {
                    let (bytes, from) = try #require(try peer.receive(), "round \(round): \(seen.count) at the peer")
                    let index = try #require(Int(String(decoding: bytes, as: UTF8.self).split(separator: ":")[0]))
                    #expect(from == relayed[index], "client \(index) relayed from \(from)")
                    seen.insert(index)
                    try peer.send(bytes, to: from)
                }
                #expect(seen.count == clients.count)
                for (index, client) in clients.enumerated() {
                    let echo = try #require(try client.receiveChannelData(), "round \(round): client \(index)")
                    #expect(echo.channel == 0x4000 + UInt16(index))
                    #expect(echo.payload == Array("\(index):\(round)".utf8))
                }
            }
            #expect(await relay.server.allocations().count == clients.count)
        }
    }

    /// A STUN message longer than 2,048 bytes is valid over UDP and is answered: truncation is what the kernel
    /// reports, not a guess from a length.
    @Test func aLargeValidSTUNMessageIsAnswered() async throws {
        try await TestRelay.with(threads: 1) { relay in
            let client = try TURNTestClient(server: relay.address)
            // An unknown comprehension-optional attribute (0x8000 and up) is ignored (RFC 8489 §14).
            let padding = STUNAttribute(
                type: STUNAttributeType(rawValue: 0x8FF0), value: [UInt8](repeating: 7, count: 6_000))
            let reply = try client.request(.bindingRequest, [padding])
            #expect(reply.type == .bindingSuccess)
            #expect(try reply.xorMappedAddress == client.socket.address)
        }
    }

    /// A deleted allocation's relay socket is closed (once every thread has moved on from it): its port can be
    /// bound again.
    @Test func aDeletedAllocationsPortIsFreed() async throws {
        try await TestRelay.with(threads: 2) { relay in
            let clients = try (0..<4).map { _ in try TURNTestClient(server: relay.address) }
            let relayed = try clients.map { try $0.allocate() }
            for client in clients { #expect(try client.refresh(lifetime: 0)) }
            #expect(await relay.server.allocations().isEmpty)
            for address in relayed {
                try await eventually { Self.canBind(address) }
            }
        }
    }

    /// A dual allocation over real sockets: an IPv4 client gets an IPv4 and an IPv6 relayed address, reaches an IPv4
    /// and an IPv6 peer each from the relayed address of its family, and gets their answers on its channels; deleting
    /// the IPv4 address closes its socket and keeps the IPv6 side relaying.
    @Test func aDualAllocationRelaysToPeersOfBothFamilies() async throws {
        try await TestRelay.with(threads: 2, dualStack: true) { relay in
            let client = try TURNTestClient(server: relay.address)
            let answer = try client.allocateAnswer(attributes: [.additionalAddressFamily(.ipv6)])
            let relayed = try answer.xorRelayedAddresses
            try #require(relayed.count == 2, "\(relayed)")
            #expect(relayed[0].ip == IPAddress("127.0.0.1")! && relayed[1].ip == IPAddress("::1")!)
            #expect(try answer.addressErrorCode == nil)
            #expect(await relay.server.allocations().map(\.relayedAddresses) == [relayed])

            let peer4 = try UDPTestSocket()
            let peer6 = try UDPTestSocket(on: IPAddress("::1")!)
            #expect(try client.channelBind(0x4000, to: peer4.address))
            #expect(try client.channelBind(0x4001, to: peer6.address))
            for (channel, peer) in [(UInt16(0x4000), peer4), (0x4001, peer6)] {
                try client.sendChannelData(channel, Array("to \(channel)".utf8))
                let (bytes, from) = try #require(try peer.receive(), "nothing reached the peer on \(channel)")
                #expect(bytes == Array("to \(channel)".utf8))
                #expect(from == relayed[channel == 0x4000 ? 0 : 1])
                try peer.send(Array("back \(channel)".utf8), to: from)
                let echo = try #require(try client.receiveChannelData(), "no answer on \(channel)")
                #expect(echo.channel == channel && echo.payload == Array("back \(channel)".utf8))
            }

            // The IPv4 relayed address alone is deleted (the socket under the allocation's own id): its port is
            // freed, the IPv6 side still relays both ways.
            let deleted = try client.request(
                STUNMessageType(method: .refresh, class: .request), [.lifetime(0), .requestedAddressFamily(.ipv4)])
            #expect(deleted.type.messageClass == .successResponse)
            #expect(await relay.server.allocations().map(\.relayedAddresses) == [[relayed[1]]])
            try await eventually { Self.canBind(relayed[0]) }
            try client.sendChannelData(0x4001, Array("still".utf8))
            let (still, from) = try #require(try peer6.receive(), "the IPv6 side stopped relaying")
            #expect(still == Array("still".utf8) && from == relayed[1])
            try peer6.send(Array("and back".utf8), to: from)
            #expect(try client.receiveChannelData()?.payload == Array("and back".utf8))
        }
    }

    /// Server sockets on 0.0.0.0 answer from the address a client sent to (IP_PKTINFO), not the one the kernel would
    /// pick: a client that sends to 127.0.0.2 gets its replies and its relayed data from 127.0.0.2 (without it they
    /// come from 127.0.0.1, and a client behind a NAT or a connected socket drops them), and that address is its
    /// 5-tuple's server address.
    @Test func aWildcardServerAnswersFromTheAddressItWasSentTo() async throws {
        try await TestRelay.with(threads: 2, host: "0.0.0.0") { relay in
            let target = TransportAddress(ip: IPAddress("127.0.0.2")!, port: relay.address.port)
            let client = try TURNTestClient(server: target)
            let binding = STUNMessage(type: .bindingRequest, transactionID: .random())
            try client.socket.send(try binding.encode(), to: target)
            let (_, from) = try #require(try client.socket.receive(), "no Binding answer")
            #expect(from == target)

            _ = try client.allocate()
            let peer = try UDPTestSocket()
            #expect(try client.channelBind(0x4000, to: peer.address))
            #expect(await relay.server.allocations().map(\.fiveTuple.server) == [target])
            try client.sendChannelData(0x4000, Array("ping".utf8))
            let (_, relayed) = try #require(try peer.receive(), "nothing reached the peer")
            try peer.send(Array("pong".utf8), to: relayed)
            let (bytes, source) = try #require(try client.socket.receive(), "no relayed answer")
            #expect(source == target)
            #expect(bytes == [0x40, 0x00, 0x00, 0x04] + Array("pong".utf8))
        }
    }

    static func canBind(_ address: TransportAddress) -> Bool {
        let fd = socket(address.ip.isIPv4 ? AF_INET : AF_INET6, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var storage = sockaddr_storage()
        let length = SocketAddressBytes.write(address, into: &storage)
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 }
        }
    }
}

/// Polls `condition` every 20 ms for up to 5 s (for a state with no event to await, such as a closed socket).
func eventually(_ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(5)
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    throw TestFailure("condition not met within 5 s")
}

/// The relay on an ephemeral loopback port, UDP only, with `threads` datagram threads.
struct TestRelay {
    let server: RelayServer
    let address: TransportAddress

    /// - Parameters:
    ///   - dualStack: offer an IPv6 relayed address (on ::1) besides the IPv4 one.
    ///   - host: the server sockets' address (relay sockets stay on 127.0.0.1).
    static func with(
        threads: Int, dualStack: Bool = false, host: String = "127.0.0.1",
        _ body: (TestRelay) async throws -> Void
    ) async throws {
        var core = RelayConfiguration(
            realm: "example.org", staticUsers: ["alice": "secret"], sharedSecrets: [],
            relayAddresses: [.ipv4: IPAddress("127.0.0.1")!], maximumAllocationsPerUser: 100,
            peerPolicy: PeerPolicy(allowed: [CIDR("127.0.0.0/8")!, CIDR("::1/128")!]), unauthenticatedRate: 1000,
            unauthenticatedBurst: 1000)
        if dualStack { core.relayAddresses[.ipv6] = IPAddress("::1")! }
        var configuration = RelayServerConfiguration(
            host: host, port: 0, relayPorts: 40_000...59_999, core: core)
        configuration.threads = threads
        let server = RelayServer(configuration: configuration)
        let group = ServiceGroup(
            configuration: .init(services: [.init(service: server)], logger: Logger(label: "relay-test")))
        let task = Task { try await group.run() }
        let port = try await server.boundPort()
        let relay = TestRelay(
            server: server, address: TransportAddress(ip: IPAddress("127.0.0.1")!, port: UInt16(port)))
        do {
            try await body(relay)
        } catch {
            await group.triggerGracefulShutdown()
            _ = await task.result
            throw error
        }
        await group.triggerGracefulShutdown()
        try await task.value
    }
}
