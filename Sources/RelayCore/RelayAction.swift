public import STUN

/// What the adapter must do after the core took an input.
public enum RelayAction: Sendable {
    /// Send `bytes` from the server socket `to.server` to the client `to.client`.
    case sendToClient([UInt8], to: FiveTuple)
    /// Bind a relay socket for this allocation (and those of its reservation or its second family), then call
    /// ``TURNServer/relayOpened(_:at:reserved:additional:now:)`` or ``TURNServer/relayFailed(_:)``.
    case openRelay(PendingAllocation)
    /// The relay socket of this id is done with (its allocation or reservation ended, or the relayed address of one
    /// family was deleted from a dual allocation): close it.
    case closeRelay(AllocationID)
    /// Send `payload` from the relay socket of this id (the allocation's, or its second of a dual allocation) to
    /// `peer` (a Send indication).
    case sendToPeer(AllocationID, payload: [UInt8], peer: TransportAddress)
    /// A datagram was dropped; count it.
    case dropped(RelayDropReason)
}

/// Why the relay dropped a datagram (a metrics label).
public enum RelayDropReason: String, Sendable, Hashable, CaseIterable {
    /// Not a STUN message or ChannelData, or a STUN message that does not parse.
    case malformed
    /// A source over the unauthenticated request rate.
    case rateLimited = "rate_limited"
    /// Data for a 5-tuple or relay socket with no allocation.
    case noAllocation = "no_allocation"
    /// Data to or from a peer without a permission.
    case noPermission = "no_permission"
    /// ChannelData on a channel that is not bound.
    case noChannel = "no_channel"
    /// A STUN indication or response the server does not act on.
    case unexpectedMessage = "unexpected_message"
    /// An Allocate retransmitted while its relay socket is being bound.
    case allocationInProgress = "allocation_in_progress"
    /// Data to a port of the relay's own address that is not a relayed address.
    case forbiddenPeer = "forbidden_peer"
    /// A datagram that filled its whole receive slot and may have been cut short.
    case truncated
    /// The socket's send buffer is full.
    case congested
    /// The allocation's relay socket is gone.
    case noRelaySocket = "no_relay_socket"
}

/// Where the payload of a client's ChannelData goes.
public enum ClientForward: Sendable, Equatable {
    /// Send from the relay socket of this id (the one of the peer's family) to the peer.
    case toPeer(AllocationID, TransportAddress)
    case drop(RelayDropReason)
}

/// How a datagram from a peer reaches the client.
public enum PeerForward: Sendable, Equatable {
    /// Wrap it as ChannelData on this channel.
    case channelData(UInt16, to: FiveTuple)
    /// Wrap it as a Data indication (no channel bound to the peer).
    case dataIndication(to: FiveTuple)
    case drop(RelayDropReason)
}
