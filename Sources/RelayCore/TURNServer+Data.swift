public import STUN

extension TURNServer {
    // MARK: Data (RFC 8656 §10–12)

    mutating func handleSend(_ indication: STUNMessage, from fiveTuple: FiveTuple, now: RelayTime)
        -> RelayAction
    {
        guard let id = table.id(for: fiveTuple), let expiresAt = table[id]?.expiresAt, expiresAt > now else {
            return .dropped(.noAllocation)
        }
        guard let peers = try? indication.xorPeerAddresses, peers.count == 1, let payload = indication.data,
            indication.unknownComprehensionRequired.isEmpty, indication.unsupportedAttributes.isEmpty
        else { return .dropped(.malformed) }
        let peer = peers[0]
        guard table[id]?.hasPermission(for: peer.ip, at: now) == true else { return .dropped(.noPermission) }
        guard reachableOnRelay(peer) else { return .dropped(.forbiddenPeer) }
        guard let socket = table[id]?.socket(for: peer.ip.family) else { return .dropped(.noAllocation) }
        table.modify(id) { allocation in
            allocation.packetsToPeers += 1
            allocation.bytesToPeers += UInt64(payload.count)
        }
        return .sendToPeer(socket, payload: payload, peer: peer)
    }

    /// ChannelData a client sent to the server socket: where its `length`-byte payload goes.
    public mutating func channelData(_ channel: UInt16, length: Int, from fiveTuple: FiveTuple, now: RelayTime)
        -> ClientForward
    {
        guard let id = table.id(for: fiveTuple) else { return .drop(.noAllocation) }
        return table.modify(id) { $0.forwardFromClient(channel: channel, length: length, now: now) }
            ?? .drop(.noAllocation)
    }

    /// A datagram of `length` bytes from `peer` arrived on the relay socket `socket` (an allocation's own id, or the
    /// second socket of a dual allocation).
    public mutating func fromPeer(
        _ peer: TransportAddress, length: Int, allocation socket: AllocationID, now: RelayTime
    )
        -> PeerForward
    {
        table.modify(table.id(forSocket: socket)) { $0.forwardFromPeer(peer, length: length, now: now) }
            ?? .drop(.noAllocation)
    }

    /// A Data indication carrying `payload` from `peer` (RFC 8656 §11.4).
    public static func dataIndication(from peer: TransportAddress, payload: [UInt8]) -> [UInt8] {
        let transaction = TransactionID.random()
        let message = STUNMessage(
            type: STUNMessageType(method: .data, class: .indication), transactionID: transaction,
            attributes: [.xorPeerAddress(peer, transactionID: transaction), .data(payload)])
        return (try? message.encode()) ?? []
    }
}
