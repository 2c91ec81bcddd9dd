import STUN

extension TURNServer {
    // MARK: CreatePermission (RFC 8656 §9) and ChannelBind (§11)

    /// The allocation of an authenticated request by the user who made it, or the error to answer with.
    func ownAllocation(_ request: STUNMessage, _ identity: Identity, _ fiveTuple: FiveTuple)
        -> Lookup
    {
        guard let id = table.id(for: fiveTuple), let allocation = table[id] else {
            return .refused(.allocationMismatch)
        }
        guard allocation.identity.username == identity.username else {
            return .refused(.wrongCredentials)
        }
        return .found(allocation)
    }

    enum Lookup {
        case found(Allocation)
        case refused(STUNErrorCode)
    }

    /// Refuses peers the policy forbids (403) or of the wrong family (443). `port` also checks the port: a peer on
    /// the relay's own address must be a relayed address (ChannelBind; CreatePermission is per IP and Send checks
    /// each datagram).
    private func checkPeer(_ peer: TransportAddress, for allocation: Allocation, port: Bool) -> STUNErrorCode? {
        if !configuration.peerPolicy.permits(peer.ip) { return .forbidden }
        if port && !reachableOnRelay(peer) { return .forbidden }
        // A peer is reached from the relayed address of its family: a dual allocation reaches both (RFC 8656 §9.1).
        if allocation.socket(for: peer.ip.family) == nil {
            return .peerAddressFamilyMismatch
        }
        return nil
    }

    /// False for a port of the relay's own address that is not a relayed address (DNS, SNMP or the TURN port of
    /// the relay host itself must stay out of reach), unless the operator allowed that address explicitly
    /// (`--allow-peer`, as tests on loopback do).
    func reachableOnRelay(_ peer: TransportAddress) -> Bool {
        guard !configuration.relayPorts.contains(peer.port) else { return true }
        let own = PeerPolicy.canonicalForms(of: peer.ip).filter { configuration.relayAddresses.values.contains($0) }
        return own.allSatisfy { form in configuration.peerPolicy.allowed.contains { $0.contains(form) } }
    }

    mutating func handleCreatePermission(
        _ request: STUNMessage, _ allocation: Allocation, _ identity: Identity, _ fiveTuple: FiveTuple,
        _ now: RelayTime
    ) -> [RelayAction] {
        var allocation = allocation
        guard let peers = try? request.xorPeerAddresses, !peers.isEmpty else {
            return reply(error(request, .badRequest), identity, fiveTuple)
        }
        for peer in peers {
            if let failure = checkPeer(peer, for: allocation, port: false) {
                return reply(error(request, failure), identity, fiveTuple)
            }
        }
        let added = Set(peers.map(\.ip)).subtracting(allocation.permissions.keys).count
        guard allocation.permissions.count + added <= configuration.maximumPermissionsPerAllocation else {
            return reply(error(request, .insufficientCapacity), identity, fiveTuple)
        }
        for peer in peers {
            allocation.permissions[peer.ip] = Permission(expiresAt: now + configuration.permissionLifetime)
        }
        table.update(allocation)
        return reply(response(request, attributes: []), identity, fiveTuple)
    }

    mutating func handleChannelBind(
        _ request: STUNMessage, _ allocation: Allocation, _ identity: Identity, _ fiveTuple: FiveTuple,
        _ now: RelayTime
    ) -> [RelayAction] {
        var allocation = allocation
        guard let channel = try? request.channelNumber, configuration.channelNumbers.contains(channel),
            let peers = try? request.xorPeerAddresses, peers.count == 1
        else {
            return reply(error(request, .badRequest), identity, fiveTuple)
        }
        let peer = peers[0]
        if let failure = checkPeer(peer, for: allocation, port: true) {
            return reply(error(request, failure), identity, fiveTuple)
        }
        // A channel stays with one peer and a peer with one channel (RFC 8656 §11.2), and so for the reuse delay
        // after the binding expired (§12); binding the same pair again renews it.
        if let bound = allocation.channels[channel], bound.peer != peer {
            return reply(error(request, .badRequest), identity, fiveTuple)
        }
        if let other = allocation.channelByPeer[peer], other != channel {
            return reply(error(request, .badRequest), identity, fiveTuple)
        }
        let newChannel = allocation.channels[channel] == nil
        let newPermission = allocation.permissions[peer.ip] == nil
        guard !newChannel || allocation.channels.count < configuration.maximumChannelsPerAllocation,
            !newPermission || allocation.permissions.count < configuration.maximumPermissionsPerAllocation
        else {
            return reply(error(request, .insufficientCapacity), identity, fiveTuple)
        }
        allocation.channels[channel] = Channel(peer: peer, expiresAt: now + configuration.channelLifetime)
        allocation.channelByPeer[peer] = channel
        allocation.permissions[peer.ip] = Permission(expiresAt: now + configuration.permissionLifetime)
        table.update(allocation)
        return reply(response(request, attributes: []), identity, fiveTuple)
    }
}
