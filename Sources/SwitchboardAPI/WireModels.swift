public import SwitchboardCore

// The API's wire models: what the server sends and the CLI reads (docs/openapi.yaml describes them).

/// A call as the API shows it.
public struct CallJSON: Codable, Sendable {
    public var id: String
    public var caller: String
    public var callee: String
    public var state: CallState
    public var endReason: EndReason?
    public var createdAt: String
    public var answeredAt: String?
    public var endedAt: String?
    public var answeredBy: String?
    public var media: MediaPath?
    public var failure: String?
    public var timeline: [TimelineJSON]?
    public var mediaLegs: [MediaLegJSON]?

    public init(
        id: String, caller: String, callee: String, state: CallState, endReason: EndReason? = nil, createdAt: String,
        answeredAt: String? = nil, endedAt: String? = nil, answeredBy: String? = nil, media: MediaPath? = nil,
        failure: String? = nil, timeline: [TimelineJSON]? = nil, mediaLegs: [MediaLegJSON]? = nil
    ) {
        self.id = id
        self.caller = caller
        self.callee = callee
        self.state = state
        self.endReason = endReason
        self.createdAt = createdAt
        self.answeredAt = answeredAt
        self.endedAt = endedAt
        self.answeredBy = answeredBy
        self.media = media
        self.failure = failure
        self.timeline = timeline
        self.mediaLegs = mediaLegs
    }
}

/// One leg of a secure-relay call: its ICE and DTLS state and packet counters.
public struct MediaLegJSON: Codable, Sendable {
    public var party: String
    public var ice: String
    public var dtls: String
    public var srtpProfile: String?
    public var fingerprintVerified: Bool
    public var packetsIn: Int
    public var bytesIn: Int
    public var packetsOut: Int
    public var bytesOut: Int
    public var dropped: [String: Int]

    public init(
        party: String, ice: String, dtls: String, srtpProfile: String? = nil, fingerprintVerified: Bool, packetsIn: Int,
        bytesIn: Int, packetsOut: Int, bytesOut: Int, dropped: [String: Int]
    ) {
        self.party = party
        self.ice = ice
        self.dtls = dtls
        self.srtpProfile = srtpProfile
        self.fingerprintVerified = fingerprintVerified
        self.packetsIn = packetsIn
        self.bytesIn = bytesIn
        self.packetsOut = packetsOut
        self.bytesOut = bytesOut
        self.dropped = dropped
    }
}

/// One entry of a call's timeline.
public struct TimelineJSON: Codable, Sendable {
    public var at: String
    public var event: String
    public var user: String
    public var device: String?
    public var reason: String?

    public init(
        at: String, event: String, user: String, device: String? = nil, reason: String? = nil
    ) {
        self.at = at
        self.event = event
        self.user = user
        self.device = device
        self.reason = reason
    }
}

/// `{"call": Call}`.
public struct CallResponse: Codable, Sendable {
    public var call: CallJSON

    public init(
        call: CallJSON
    ) {
        self.call = call
    }
}

/// A page of calls; `next` is the cursor of the page after, when there may be one.
public struct CallListResponse: Codable, Sendable {
    public var calls: [CallJSON]
    public var next: String?

    public init(
        calls: [CallJSON], next: String? = nil
    ) {
        self.calls = calls
        self.next = next
    }
}

/// A `call.signal` event's data.
public struct SignalEventJSON: Codable, Sendable {
    public struct From: Codable, Sendable {
        public var user: String
        public var device: String

        public init(user: String, device: String) {
            self.user = user
            self.device = device
        }
    }
    public var callId: String
    public var from: From
    public var type: Signal.Kind
    public var sdp: String?
    public var candidate: ICECandidate?

    public init(callId: String, from: From, type: Signal.Kind, sdp: String? = nil, candidate: ICECandidate? = nil) {
        self.callId = callId
        self.from = from
        self.type = type
        self.sdp = sdp
        self.candidate = candidate
    }
}

/// `GET /v1/turn-credentials`: ICE servers in `RTCIceServer` shape.
public struct TURNCredentialsJSON: Codable, Sendable {
    public struct IceServer: Codable, Sendable {
        public var urls: [String]
        public var username: String
        public var credential: String

        public init(urls: [String], username: String, credential: String) {
            self.urls = urls
            self.username = username
            self.credential = credential
        }
    }
    public var iceServers: [IceServer]
    public var ttl: Int

    public init(iceServers: [IceServer], ttl: Int) {
        self.iceServers = iceServers
        self.ttl = ttl
    }
}

/// `GET /v1/relay/allocations`.
public struct AllocationListJSON: Codable, Sendable {
    public var allocations: [AllocationJSON]

    public init(allocations: [AllocationJSON]) { self.allocations = allocations }
}

/// One live TURN allocation, for admins.
public struct AllocationJSON: Codable, Sendable {
    public struct ChannelJSON: Codable, Sendable {
        public var number: Int
        public var peer: String

        public init(number: Int, peer: String) {
            self.number = number
            self.peer = peer
        }
    }
    public var id: String
    public var user: String
    /// The TURN username (`EXPIRY:USER` for REST credentials).
    public var username: String
    /// The call its credentials are bound to (`?call=` credentials), or nil.
    public var call: String?
    /// How the client reaches the relay: `udp`, `tcp` or `tls`.
    public var transport: String?
    public var client: String
    public var server: String
    public var relayed: String
    /// Every relayed address: the IPv4 and the IPv6 one of a dual allocation.
    public var relayedAddresses: [String]?
    public var permissions: [String]
    public var channels: [ChannelJSON]
    public var createdAt: String
    public var expiresAt: String
    public var ageSeconds: Int
    public var packetsToPeers: UInt64
    public var bytesToPeers: UInt64
    public var packetsFromPeers: UInt64
    public var bytesFromPeers: UInt64

    public init(
        id: String, user: String, username: String, call: String? = nil, transport: String? = nil, client: String,
        server: String, relayed: String, relayedAddresses: [String]? = nil, permissions: [String],
        channels: [ChannelJSON], createdAt: String, expiresAt: String, ageSeconds: Int, packetsToPeers: UInt64,
        bytesToPeers: UInt64, packetsFromPeers: UInt64, bytesFromPeers: UInt64
    ) {
        self.id = id
        self.user = user
        self.username = username
        self.call = call
        self.transport = transport
        self.client = client
        self.server = server
        self.relayed = relayed
        self.relayedAddresses = relayedAddresses
        self.permissions = permissions
        self.channels = channels
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.ageSeconds = ageSeconds
        self.packetsToPeers = packetsToPeers
        self.bytesToPeers = bytesToPeers
        self.packetsFromPeers = packetsFromPeers
        self.bytesFromPeers = bytesFromPeers
    }
}
