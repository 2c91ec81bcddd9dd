import RelayCore
import STUN
import Testing

/// IPv6 relayed addresses and dual allocations (RFC 8656 §7.2, §7.3, §9.1, §18.11, §18.12).
@Suite struct AddressFamilyTests {
    static let relayIPv6 = IPAddress("2001:db8::10")!

    /// A relay offering an IPv4 and an IPv6 relayed address.
    static func dualStack(perUser: Int = 10, total: Int = 100) -> TURNServer {
        var dual = configuration(perUser: perUser, total: total)
        dual.relayAddresses[.ipv6] = relayIPv6
        return TURNServer(configuration: dual)
    }

    /// The ids of the relay sockets an allocation's removal closed.
    static func closed(_ actions: [RelayAction]) -> Set<AllocationID> {
        Set(actions.compactMap { if case .closeRelay(let id) = $0 { id } else { nil } })
    }

    @Test func requestedAddressFamilyIPv6GetsAnIPv6RelayedAddressThatReachesOnlyIPv6Peers() throws {
        var server = Self.dualStack()
        var client = Client()
        let reply = try #require(
            client.call(.allocate, [.requestedTransport(17), .requestedAddressFamily(.ipv6)], on: &server))
        #expect(reply.isSuccess, "\(String(describing: reply.code))")
        #expect(try reply.xorRelayedAddresses == [TransportAddress(ip: Self.relayIPv6, port: 50_000)])
        #expect(client.call(.createPermission, [], peers: [peer("2001:4860::8888")], on: &server)?.isSuccess == true)
        #expect(client.call(.createPermission, [], peers: [peer("8.8.8.8")], on: &server)?.code == 443)
    }

    @Test func additionalAddressFamilyMakesADualAllocationReachingPeersOfBothFamilies() throws {
        var server = Self.dualStack()
        var client = Client()
        let actions = client.send(.allocate, [.requestedTransport(17), .additionalAddressFamily(.ipv6)], to: &server)
        guard case .openRelay(let pending) = actions.first, let second = pending.additional else {
            Issue.record("no second socket asked for: \(actions)")
            return
        }
        #expect(pending.relayAddress == relayIP && second.relayAddress == Self.relayIPv6 && second.id != pending.id)
        let v4 = TransportAddress(ip: relayIP, port: 50_000)
        let v6 = TransportAddress(ip: Self.relayIPv6, port: 50_002)
        let reply = try #require(
            Client.reply(server.relayOpened(pending.id, at: v4, additional: v6, now: start)))
        #expect(reply.isSuccess)
        #expect(try reply.xorRelayedAddresses == [v4, v6])
        #expect(try reply.addressErrorCode == nil)
        #expect(server.snapshot(now: start).map(\.relayedAddresses) == [[v4, v6]])

        // Each peer is reached from the relayed address (the socket) of its own family.
        let peer4 = peer("8.8.8.8")
        let peer6 = peer("2001:4860::8888")
        #expect(client.call(.createPermission, [], peers: [peer4, peer6], on: &server)?.isSuccess == true)
        #expect(client.call(.channelBind, [.channelNumber(0x4000)], peers: [peer4], on: &server)?.isSuccess == true)
        #expect(client.call(.channelBind, [.channelNumber(0x4001)], peers: [peer6], on: &server)?.isSuccess == true)
        #expect(server.channelData(0x4000, length: 8, from: client.fiveTuple, now: start) == .toPeer(pending.id, peer4))
        #expect(server.channelData(0x4001, length: 8, from: client.fiveTuple, now: start) == .toPeer(second.id, peer6))
        let indication = TransactionID.random()
        let sent = server.receive(
            try STUNMessage(
                type: STUNMessageType(method: .send, class: .indication), transactionID: indication,
                attributes: [.xorPeerAddress(peer6, transactionID: indication), .data([1, 2, 3])]
            ).encode(), from: client.fiveTuple, now: start)
        guard case .sendToPeer(let socket, _, let to) = sent.first else {
            Issue.record("not sent: \(sent)")
            return
        }
        #expect(socket == second.id && to == peer6)
        // A peer's datagram on the second socket reaches the client on its channel.
        #expect(
            server.fromPeer(peer6, length: 8, allocation: second.id, now: start)
                == .channelData(0x4001, to: client.fiveTuple))
        #expect(
            server.fromPeer(peer4, length: 8, allocation: pending.id, now: start)
                == .channelData(0x4000, to: client.fiveTuple))

        // Deleting the allocation closes both sockets.
        let deleted = client.send(.refresh, [.lifetime(0)], to: &server)
        #expect(Self.closed(deleted) == [pending.id, second.id])
        #expect(server.allocationCount == 0)
    }

    @Test func aRefreshWithAFamilyAndLifetimeZeroDeletesOnlyThatRelayedAddress() throws {
        var server = Self.dualStack()
        var client = Client()
        let reply = try #require(
            client.call(.allocate, [.requestedTransport(17), .additionalAddressFamily(.ipv6)], on: &server))
        let v6 = try #require(try reply.xorRelayedAddresses.last)
        let id = try #require(server.allocation(for: client.fiveTuple))
        let peer6 = peer("2001:4860::8888")
        #expect(client.call(.createPermission, [], peers: [peer6], on: &server)?.isSuccess == true)

        let deleted = client.send(.refresh, [.lifetime(0), .requestedAddressFamily(.ipv6)], to: &server)
        #expect(Client.reply(deleted)?.isSuccess == true)
        let closed = Self.closed(deleted)
        #expect(closed.count == 1 && !closed.contains(id))
        #expect(server.snapshot(now: start).map(\.relayedAddresses) == [[TransportAddress(ip: relayIP, port: 50_000)]])
        #expect(!server.snapshot(now: start)[0].relayedAddresses.contains(v6))
        // Its peers' permissions went with it.
        #expect(server.snapshot(now: start)[0].permissions.isEmpty)
        // The IPv6 side is gone: its peers are of a family the allocation no longer has.
        #expect(client.call(.createPermission, [], peers: [peer6], on: &server)?.code == 443)
        #expect(client.call(.refresh, [.requestedAddressFamily(.ipv6)], on: &server)?.code == 443)
        #expect(client.call(.createPermission, [], peers: [peer("8.8.8.8")], on: &server)?.isSuccess == true)
        // The last family deleted ends the allocation.
        let last = client.send(.refresh, [.lifetime(0), .requestedAddressFamily(.ipv4)], to: &server)
        #expect(Self.closed(last) == [id])
        #expect(server.allocationCount == 0)
    }

    @Test func aRelayWithoutIPv6AllocatesIPv4AndSaysWhyNotIPv6() throws {
        var server = TURNServer(configuration: configuration())
        var client = Client()
        let reply = try #require(
            client.call(.allocate, [.requestedTransport(17), .additionalAddressFamily(.ipv6)], on: &server))
        #expect(reply.isSuccess)
        #expect(try reply.xorRelayedAddresses == [TransportAddress(ip: relayIP, port: 50_000)])
        let refusal = try #require(try reply.addressErrorCode)
        #expect(refusal.family == .ipv6 && refusal.code == 440)
    }

    @Test func anIPv6PortThatCannotBeBoundLeavesTheIPv4AddressWith508() throws {
        var server = Self.dualStack()
        var client = Client()
        let actions = client.send(.allocate, [.requestedTransport(17), .additionalAddressFamily(.ipv6)], to: &server)
        guard case .openRelay(let pending) = actions.first else {
            Issue.record("no relay asked for: \(actions)")
            return
        }
        let reply = try #require(
            Client.reply(
                server.relayOpened(pending.id, at: TransportAddress(ip: relayIP, port: 50_000), now: start)))
        #expect(reply.isSuccess)
        #expect(try reply.xorRelayedAddresses.count == 1)
        #expect(try reply.addressErrorCode?.code == 508)
        #expect(client.call(.createPermission, [], peers: [peer("2001:4860::8888")], on: &server)?.code == 443)
    }

    @Test func familyAttributesThatContradictEachOtherGet400() throws {
        var server = Self.dualStack()
        var client = Client()
        let both: [STUNAttribute] = [
            .requestedTransport(17), .requestedAddressFamily(.ipv4), .additionalAddressFamily(.ipv6),
        ]
        #expect(client.call(.allocate, both, on: &server)?.code == 400)
        let ipv4Added: [STUNAttribute] = [.requestedTransport(17), .additionalAddressFamily(.ipv4)]
        #expect(client.call(.allocate, ipv4Added, on: &server)?.code == 400)
        let withToken: [STUNAttribute] = [
            .requestedTransport(17), .reservationToken(42), .additionalAddressFamily(.ipv6),
        ]
        #expect(client.call(.allocate, withToken, on: &server)?.code == 400)
        // A reserved port pair is of one family: not for a dual allocation.
        let pairAndDual: [STUNAttribute] = [
            .requestedTransport(17), .evenPort(reserveNextHigherPort: true), .additionalAddressFamily(.ipv6),
        ]
        #expect(client.call(.allocate, pairAndDual, on: &server)?.code == 400)
        #expect(server.allocationCount == 0)
    }

    @Test func aDualAllocationIsOneOfTheUsersButHoldsTwoPorts() throws {
        // Per user: one place. In all: two ports, so a relay with room for one more port makes bob's dual request
        // an IPv4 allocation, with 508 for IPv6 in ADDRESS-ERROR-CODE (RFC 8656 §7.2).
        var server = Self.dualStack(perUser: 1, total: 3)
        var alice = Client()
        let dual: [STUNAttribute] = [.requestedTransport(17), .additionalAddressFamily(.ipv6)]
        #expect(try alice.call(.allocate, dual, on: &server)?.xorRelayedAddresses.count == 2)
        var bob = Client(port: 41_000, username: "bob", password: "hunter2")
        let bobs = try #require(bob.call(.allocate, dual, on: &server))
        #expect(bobs.isSuccess)
        #expect(try bobs.xorRelayedAddresses.count == 1)
        #expect(try bobs.addressErrorCode?.code == 508)
        var carol = Client(port: 42_000, username: "alice", password: "secret")
        #expect(carol.allocate(on: &server)?.code == 486)
        // Expiry closes both of alice's sockets and bob's one.
        let expired = server.expire(now: start + .seconds(3600))
        #expect(Self.closed(expired).count == 3)
    }
}
