public import Foundation

/// One call between two users, as the registry keeps it and the API shows it.
///
/// A `Call` is a value: the registry hands out copies, so a snapshot in an event never changes afterwards.
public struct Call: Sendable, Hashable {
    /// Server-chosen id, an ``Identifier``.
    public let id: String
    /// The user who placed the call.
    public let caller: String
    /// The device the caller placed the call from.
    public let callerDevice: String
    /// The user being called.
    public let callee: String
    public internal(set) var state: CallState
    /// Set when `state` is `ended`.
    public internal(set) var endReason: EndReason?
    public let createdAt: Date
    public internal(set) var answeredAt: Date?
    public internal(set) var endedAt: Date?
    /// The callee device that accepted the call.
    public internal(set) var answeredBy: String?
    /// The callee devices that acknowledged the invite, in order.
    public internal(set) var ringingDevices: [String] = []
    /// When an unanswered call times out.
    public internal(set) var ringDeadline: Date?
    /// The caller's SDP offer, kept so that a device that connects late still gets it with the invite.
    public internal(set) var offer: SessionDescription?
    /// Every event of the call with its time, actor and device. A call loaded from a store for a transition may
    /// come without it (``timelineLength`` still counts it).
    public internal(set) var timeline: [TimelineEntry] = []
    /// How many entries the timeline has.
    public internal(set) var timelineLength = 0
    /// How media flows: peer to peer (possibly through TURN), or through Switchboard's secure relay.
    public internal(set) var media: MediaPath = .direct
    /// Why a call ended `failed`, when the server knows (`fingerprint_mismatch`, `ice_timeout`, ...).
    public internal(set) var failure: String?
    /// The node whose media endpoint holds a secure-relay call's legs (`--node-id`): answers and renegotiations
    /// that reach another node of a cluster are carried to it.
    public internal(set) var mediaNode: String?

    init(
        id: String, caller: String, callerDevice: String, callee: String, state: CallState, createdAt: Date,
        ringDeadline: Date?, offer: SessionDescription?
    ) {
        self.id = id
        self.caller = caller
        self.callerDevice = callerDevice
        self.callee = callee
        self.state = state
        self.createdAt = createdAt
        self.ringDeadline = ringDeadline
        self.offer = offer
    }

    /// A call rebuilt from a store's row, field by field.
    public init(
        id: String, caller: String, callerDevice: String, callee: String, state: CallState, endReason: EndReason?,
        createdAt: Date, answeredAt: Date?, endedAt: Date?, answeredBy: String?, ringingDevices: [String],
        ringDeadline: Date?, offer: SessionDescription?, timeline: [TimelineEntry] = [], timelineLength: Int,
        media: MediaPath, failure: String?, mediaNode: String? = nil
    ) {
        self.init(
            id: id, caller: caller, callerDevice: callerDevice, callee: callee, state: state, createdAt: createdAt,
            ringDeadline: ringDeadline, offer: offer)
        self.endReason = endReason
        self.answeredAt = answeredAt
        self.endedAt = endedAt
        self.answeredBy = answeredBy
        self.ringingDevices = ringingDevices
        self.timeline = timeline
        self.timelineLength = timelineLength
        self.media = media
        self.failure = failure
        self.mediaNode = mediaNode
    }

    /// This call with `timeline` as its timeline (a store loads the lines apart from the row).
    public func withTimeline(_ timeline: [TimelineEntry]) -> Call {
        var call = self
        call.timeline = timeline
        return call
    }

    /// This call without its timeline lines, as a store keeps it in a row.
    public var withoutTimeline: Call { withTimeline([]) }

    /// Whether `user` is the caller or the callee.
    public func isParty(_ user: String) -> Bool { user == caller || user == callee }

    /// The other party of `user`.
    public func peer(of user: String) -> String { user == caller ? callee : caller }

    /// This call as the callee's other devices see it once one device answered: ended, `answered_elsewhere`.
    public func answeredElsewhereView() -> Call {
        var view = self
        view.state = .ended
        view.endReason = .answeredElsewhere
        view.endedAt = answeredAt
        return view
    }
}

/// How a call's media flows (the API's `media`).
public enum MediaPath: String, Sendable, Codable, CaseIterable, Hashable {
    /// Peer to peer, or through the TURN relay: the parties negotiate with each other.
    case direct
    /// Switchboard is each party's DTLS-SRTP peer and forwards only media that authenticates.
    case secureRelay = "secure-relay"
}

/// One line of a call's timeline.
public struct TimelineEntry: Sendable, Hashable, Codable {
    public let at: Date
    /// `invite`, `ringing`, `accepted`, `declined`, `ended`, `signal.offer`, `signal.candidate`, ...
    public let event: String
    public let user: String
    public let device: String?
    /// For `ended`: the end reason.
    public let reason: String?

    public init(at: Date, event: String, user: String, device: String?, reason: String? = nil) {
        self.at = at
        self.event = event
        self.user = user
        self.device = device
        self.reason = reason
    }
}

/// An SDP offer or answer as the API carries it: `{"type": "offer", "sdp": "..."}`.
public struct SessionDescription: Sendable, Hashable, Codable {
    public enum Kind: String, Sendable, Codable, Hashable {
        case offer
        case answer
    }

    public let type: Kind
    public let sdp: String

    public init(type: Kind, sdp: String) {
        self.type = type
        self.sdp = sdp
    }
}

/// An ICE candidate as browsers serialise `RTCIceCandidate.toJSON()`.
public struct ICECandidate: Sendable, Hashable, Codable {
    public let candidate: String
    public let sdpMid: String?
    public let sdpMLineIndex: Int?
    public let usernameFragment: String?

    public init(candidate: String, sdpMid: String?, sdpMLineIndex: Int?, usernameFragment: String? = nil) {
        self.candidate = candidate
        self.sdpMid = sdpMid
        self.sdpMLineIndex = sdpMLineIndex
        self.usernameFragment = usernameFragment
    }
}
