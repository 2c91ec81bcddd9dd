public import STUN

/// Identifies an allocation for its lifetime; never reused within a process.
public struct AllocationID: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public static func < (lhs: AllocationID, rhs: AllocationID) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { "a\(rawValue)" }
}

/// How a client reaches the server port (RFC 8656 §3.1): datagrams, or a TCP connection, bare or inside TLS.
/// Relayed data between the relay and peers is UDP whichever it is.
public enum ClientTransport: String, Sendable, Hashable, CaseIterable {
    case udp
    case tcp
    case tls

    /// STUN and ChannelData arrive framed by their own lengths on a byte stream, ChannelData padded to 4 bytes.
    public var isStream: Bool { self != .udp }
}

/// The 5-tuple that identifies an allocation (RFC 8656 §2.2): the client's address, the server address it reached,
/// and the transport between them.
public struct FiveTuple: Sendable, Hashable, CustomStringConvertible {
    public var client: TransportAddress
    public var server: TransportAddress
    public var transport: ClientTransport

    public init(client: TransportAddress, server: TransportAddress, transport: ClientTransport = .udp) {
        self.client = client
        self.server = server
        self.transport = transport
    }

    public var description: String { "\(transport.rawValue) \(client) -> \(server)" }
}

/// Who an authenticated request came from.
struct Identity: Sendable {
    /// The USERNAME as sent (`EXPIRY:USER` for REST credentials).
    var username: String
    /// The user it names (the part after the expiry for REST credentials).
    var user: String
    var key: [UInt8]
    var algorithm: IntegrityAlgorithm
    /// When REST credentials stop being valid; nil for static users.
    var credentialExpiry: RelayTime?
    /// The call call-scoped credentials are bound to: every allocation made with them ends when it does.
    var call: String?
}

/// An allocation waiting for the adapter to bind its relay socket (RFC 8656 §7.2, last step).
public struct PendingAllocation: Sendable {
    public let id: AllocationID
    public let fiveTuple: FiveTuple
    /// Bind on this address (the configured relay address of the requested family), port from the relay range.
    public let relayAddress: IPAddress
    /// The client asked for an even port (EVEN-PORT).
    public let evenPort: Bool
    /// EVEN-PORT with R = 1: bind the next-higher port too, for this id (a reservation), and report it to
    /// ``TURNServer/relayOpened(_:at:reserved:now:)``; without both ports the allocation fails.
    public let reservation: AllocationID?
    /// The Allocate claimed a reservation (RESERVATION-TOKEN): the socket of `id` is already bound, at this port.
    public let reservedPort: UInt16?
    /// A dual allocation (ADDITIONAL-ADDRESS-FAMILY, RFC 8656 §7.2): bind a second relay socket, under its own id, on
    /// this address of the other family, and report it to ``TURNServer/relayOpened(_:at:reserved:additional:now:)``
    /// (nil there if it could not be bound: the allocation is made with its first family alone).
    public let additional: AdditionalRelay?
    /// Why the additional family the client asked for is not being allocated (ADDRESS-ERROR-CODE), if it is not.
    let additionalRefusal: (family: AddressFamily, code: STUNErrorCode)?
    let transactionID: TransactionID
    let identity: Identity
    let lifetime: Duration
}

/// The second relay socket of a dual allocation (RFC 8656 §7.2): its own id (the adapter names relay sockets by id)
/// and the address of the other family to bind it on.
public struct AdditionalRelay: Sendable {
    public let id: AllocationID
    public let relayAddress: IPAddress
}

/// One relayed transport address of an allocation and the id of its relay socket: the allocation's own id for the
/// first, another id for the second of a dual allocation (RFC 8656 §7.2).
struct RelayedAddress {
    let socket: AllocationID
    let address: TransportAddress
}

/// A relayed port held for the Allocate that names its RESERVATION-TOKEN (RFC 8656 §7.2): the odd port next to an
/// allocation made with EVEN-PORT R = 1. Its socket is bound (under `id`) and relays nothing until it is claimed.
struct Reservation {
    var id: AllocationID
    var address: TransportAddress
    /// Only the user who reserved it may claim it.
    var user: String
    /// The call of the credentials that reserved it, if call-scoped.
    var call: String?
    var expiresAt: RelayTime
}

/// One permission (RFC 8656 §9): the peer IP it admits and until when.
struct Permission {
    var expiresAt: RelayTime
}

/// One channel binding (RFC 8656 §12). It relays until `expiresAt`; it stays in the allocation (its number and its
/// peer held for each other, relaying nothing) for the configured reuse delay after that.
struct Channel {
    var peer: TransportAddress
    var expiresAt: RelayTime
}

/// An allocation's state in the table (RFC 8656 §6).
struct Allocation {
    let id: AllocationID
    let fiveTuple: FiveTuple
    let identity: Identity
    /// One relayed address, or two of different families (a dual allocation); never none.
    var relayed: [RelayedAddress]
    let createdAt: RelayTime
    var expiresAt: RelayTime
    var permissions: [IPAddress: Permission] = [:]
    /// Live channels and those whose reuse delay runs.
    var channels: [UInt16: Channel] = [:]
    var channelByPeer: [TransportAddress: UInt16] = [:]
    /// The Allocate transaction and its success response, resent when the request is retransmitted.
    let allocateTransaction: TransactionID
    var allocateResponse: [UInt8] = []
    var packetsToPeers: UInt64 = 0
    var bytesToPeers: UInt64 = 0
    var packetsFromPeers: UInt64 = 0
    var bytesFromPeers: UInt64 = 0

    /// The first relayed address (the IPv4 one of a dual allocation, unless that was deleted).
    var relayedAddress: TransportAddress { relayed[0].address }

    /// The relay socket that reaches peers of `family`, if the allocation has a relayed address of that family.
    func socket(for family: AddressFamily) -> AllocationID? {
        relayed.first { $0.address.ip.family == family }?.socket
    }

    func hasPermission(for ip: IPAddress, at now: RelayTime) -> Bool {
        guard let permission = permissions[ip] else { return false }
        return permission.expiresAt > now
    }

    /// Where a client's ChannelData on `channel` goes, counting it when relayed.
    mutating func forwardFromClient(channel: UInt16, length: Int, now: RelayTime) -> ClientForward {
        guard expiresAt > now else { return .drop(.noAllocation) }
        guard let bound = channels[channel], bound.expiresAt > now else { return .drop(.noChannel) }
        guard hasPermission(for: bound.peer.ip, at: now) else { return .drop(.noPermission) }
        // The relayed address of the peer's family may have been deleted from a dual allocation (RFC 8656 §7.3).
        guard let socket = socket(for: bound.peer.ip.family) else { return .drop(.noAllocation) }
        packetsToPeers += 1
        bytesToPeers += UInt64(length)
        return .toPeer(socket, bound.peer)
    }

    /// How a datagram from `peer` reaches the client, counting it when relayed.
    mutating func forwardFromPeer(_ peer: TransportAddress, length: Int, now: RelayTime) -> PeerForward {
        guard expiresAt > now else { return .drop(.noAllocation) }
        guard hasPermission(for: peer.ip, at: now) else { return .drop(.noPermission) }
        packetsFromPeers += 1
        bytesFromPeers += UInt64(length)
        if let channel = channelByPeer[peer], let bound = channels[channel], bound.expiresAt > now {
            return .channelData(channel, to: fiveTuple)
        }
        return .dataIndication(to: fiveTuple)
    }
}

/// A live allocation as the admin API lists it.
public struct AllocationInfo: Sendable, Hashable {
    public var id: AllocationID
    public var user: String
    public var username: String
    /// The call its credentials are bound to (call-scoped credentials), or nil.
    public var call: String?
    public var fiveTuple: FiveTuple
    /// The first relayed address (IPv4 for a dual allocation).
    public var relayedAddress: TransportAddress
    /// Every relayed address: two, of different families, for a dual allocation (RFC 8656 §7.2).
    public var relayedAddresses: [TransportAddress]
    /// Peer IPs with a live permission.
    public var permissions: [IPAddress]
    /// Bound channels and their peers.
    public var channels: [UInt16: TransportAddress]
    public var createdAt: RelayTime
    public var expiresAt: RelayTime
    public var packetsToPeers: UInt64
    public var bytesToPeers: UInt64
    public var packetsFromPeers: UInt64
    public var bytesFromPeers: UInt64
}
