public import STUN

/// A point in time on the relay's clock: milliseconds since the Unix epoch. Wall-clock based because TURN REST
/// credentials carry a Unix expiry; the adapter reads the clock, the core only compares.
public struct RelayTime: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var milliseconds: Int64

    public init(milliseconds: Int64) { self.milliseconds = milliseconds }
    /// Saturates instead of overflowing (a TURN REST username may claim any expiry).
    public init(seconds: Int64) {
        let (product, overflow) = seconds.multipliedReportingOverflow(by: 1000)
        self.milliseconds = overflow ? (seconds < 0 ? .min : .max) : product
    }

    public var seconds: Int64 { milliseconds / 1000 }

    public static func < (lhs: RelayTime, rhs: RelayTime) -> Bool { lhs.milliseconds < rhs.milliseconds }
    public static func + (lhs: RelayTime, rhs: Duration) -> RelayTime {
        RelayTime(milliseconds: lhs.milliseconds + rhs.relayMilliseconds)
    }
    public static func - (lhs: RelayTime, rhs: RelayTime) -> Duration {
        .milliseconds(lhs.milliseconds - rhs.milliseconds)
    }

    public var description: String { "\(milliseconds) ms" }
}

extension Duration {
    var relayMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}

/// What a relay enforces and advertises (RFC 8656 and the TURN REST API).
public struct RelayConfiguration: Sendable {
    /// RFC 8656 §12: channel numbers 0x4000 through 0x4FFF.
    public static let rfc8656ChannelNumbers: ClosedRange<UInt16> = 0x4000...0x4FFF
    /// RFC 5766 §11: 0x4000 through 0x7FFF.
    public static let rfc5766ChannelNumbers: ClosedRange<UInt16> = 0x4000...0x7FFF

    /// The long-term credential realm (RFC 8489 §9.2).
    public var realm: String
    /// SOFTWARE sent in successful Allocate responses (nil: none).
    public var software: String?
    /// Users with fixed passwords.
    public var staticUsers: [String: String]
    /// Shared secrets of the TURN REST API: a username `EXPIRY:USER` is valid until EXPIRY (Unix seconds) with
    /// password `base64(HMAC-SHA1(secret, username))`. The first signs new credentials; all verify (rotation).
    public var sharedSecrets: [[UInt8]]
    /// The relayed address of each family the relay offers (the port is chosen per allocation).
    public var relayAddresses: [AddressFamily: IPAddress]
    /// The ports relayed addresses use. A peer on one of the relay's own addresses (another allocation of this relay)
    /// is reachable only on these ports: nothing else on the relay host is.
    public var relayPorts: ClosedRange<UInt16>
    public var defaultLifetime: Duration
    public var maximumLifetime: Duration
    public var permissionLifetime: Duration
    public var channelLifetime: Duration
    /// How long after a channel binding expires its number is not bound to another peer, nor its peer to another
    /// number (RFC 8656 §12: a ChannelData still in flight must not reach the wrong peer).
    public var channelReuseDelay: Duration
    /// How long a NONCE is accepted before 438 (Stale Nonce).
    public var nonceLifetime: Duration
    public var maximumAllocationsPerUser: Int
    public var maximumAllocations: Int
    public var maximumPermissionsPerAllocation: Int
    public var maximumChannelsPerAllocation: Int
    public var peerPolicy: PeerPolicy
    /// Channel numbers ChannelBind accepts: RFC 8656's 0x4000–0x4FFF, or RFC 5766's 0x4000–0x7FFF for older
    /// clients (coturn's own test client picks from the wider range).
    public var channelNumbers: ClosedRange<UInt16>
    /// Unauthenticated requests (Binding, and requests answered 401/438/400 before authentication) each source IP
    /// may make per second, and the burst allowed.
    public var unauthenticatedRate: Int
    public var unauthenticatedBurst: Int
    /// How long the odd port reserved by an Allocate with EVEN-PORT R = 1 waits for the Allocate that claims it
    /// with its RESERVATION-TOKEN (RFC 8656 §7.2: about 30 seconds).
    public var reservationLifetime: Duration = .seconds(30)
    /// How long a call that ended stays refused to its call-scoped credentials, and so the longest such a credential
    /// may live: one that expires later than this from now is refused outright.
    public var endedCallRetention: Duration = .seconds(86_400)

    public init(
        realm: String,
        software: String? = "Switchboard",
        staticUsers: [String: String] = [:],
        sharedSecrets: [[UInt8]] = [],
        relayAddresses: [AddressFamily: IPAddress],
        relayPorts: ClosedRange<UInt16> = 49152...65535,
        defaultLifetime: Duration = .seconds(600),
        maximumLifetime: Duration = .seconds(3600),
        permissionLifetime: Duration = .seconds(300),
        channelLifetime: Duration = .seconds(600),
        channelReuseDelay: Duration = .seconds(300),
        nonceLifetime: Duration = .seconds(600),
        maximumAllocationsPerUser: Int = 10,
        maximumAllocations: Int = 10_000,
        maximumPermissionsPerAllocation: Int = 64,
        maximumChannelsPerAllocation: Int = 256,
        peerPolicy: PeerPolicy = PeerPolicy(),
        channelNumbers: ClosedRange<UInt16> = RelayConfiguration.rfc8656ChannelNumbers,
        unauthenticatedRate: Int = 50,
        unauthenticatedBurst: Int = 100
    ) {
        self.realm = realm
        self.software = software
        self.staticUsers = staticUsers
        self.sharedSecrets = sharedSecrets
        self.relayAddresses = relayAddresses
        self.relayPorts = relayPorts
        self.defaultLifetime = defaultLifetime
        self.maximumLifetime = maximumLifetime
        self.permissionLifetime = permissionLifetime
        self.channelLifetime = channelLifetime
        self.channelReuseDelay = channelReuseDelay
        self.nonceLifetime = nonceLifetime
        self.maximumAllocationsPerUser = maximumAllocationsPerUser
        self.maximumAllocations = maximumAllocations
        self.maximumPermissionsPerAllocation = maximumPermissionsPerAllocation
        self.maximumChannelsPerAllocation = maximumChannelsPerAllocation
        self.peerPolicy = peerPolicy
        self.channelNumbers = channelNumbers
        self.unauthenticatedRate = unauthenticatedRate
        self.unauthenticatedBurst = unauthenticatedBurst
    }
}
