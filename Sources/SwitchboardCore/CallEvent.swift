public import Foundation

/// One thing that happened to a call: the single output of every registry input.
///
/// Everything else derives from events, in one place each: the call's timeline (``timelineEntry``), what each
/// device hears (``deliveries``), metrics and admin watchers (``kind``), and a store's event log.
public struct CallEvent: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        /// The call was placed; the offer is what the callee's devices get with the invite.
        case invite(offer: SessionDescription?)
        /// A callee device acknowledged the invite.
        case ringing
        /// A callee device accepted; the answer is what the caller's devices get.
        case accepted(answer: SessionDescription?)
        /// The call ended: its ``Call/endReason`` says why.
        case ended
        /// An offer, answer or candidate for the other party.
        case signal(Signal)
    }

    /// Who hears an event: some devices of one user.
    public struct Recipient: Sendable, Hashable {
        public let user: String
        public let devices: Delivery.Devices
        /// These devices hear the event as `call.ended` with `answered_elsewhere` (the callee's devices that did
        /// not answer).
        public let answeredElsewhere: Bool

        public init(user: String, devices: Delivery.Devices, answeredElsewhere: Bool = false) {
            self.user = user
            self.devices = devices
            self.answeredElsewhere = answeredElsewhere
        }
    }

    public let kind: Kind
    /// The call as it is right after this event.
    public let call: Call
    public let at: Date
    /// The user who caused the event (for a timeout, the callee; for a server failure, the caller).
    public let user: String
    public let device: String?
    /// Who is told, in order; empty for an event nobody hears (a call that ended `busy` as it was placed).
    public let recipients: [Recipient]
    /// The line the event added to the call's timeline; nil for a signal past the timeline's bound.
    public let timelineEntry: TimelineEntry?

    public init(
        kind: Kind, call: Call, at: Date, user: String, device: String?, recipients: [Recipient],
        timelineEntry: TimelineEntry?
    ) {
        self.kind = kind
        self.call = call
        self.at = at
        self.user = user
        self.device = device
        self.recipients = recipients
        self.timelineEntry = timelineEntry
    }

    /// The SSE event name (`call.invite`, ...).
    public var name: String { DeviceEvent.name(of: kind) }

    /// The call id this event is about.
    public var callID: String { call.id }

    /// What each recipient hears.
    public var deliveries: [Delivery] {
        recipients.map { recipient in
            let event: DeviceEvent =
                switch (recipient.answeredElsewhere, kind) {
                case (true, _): .ended(call.answeredElsewhereView())
                case (false, .invite(let offer)): .invite(call, offer: offer)
                case (false, .ringing): .ringing(call)
                case (false, .accepted(let answer)): .accepted(call, answer: answer)
                case (false, .ended): .ended(call)
                case (false, .signal(let signal)): .signal(signal)
                }
            return Delivery(user: recipient.user, devices: recipient.devices, event: event)
        }
    }

    /// The name of this event in a timeline: `invite`, `ringing`, `accepted`, `ended` (`timeout` after a ring
    /// timeout, `failed` when the server ended it), `signal.offer`, ...
    public var timelineName: String {
        switch kind {
        case .invite: "invite"
        case .ringing: "ringing"
        case .accepted: "accepted"
        case .ended:
            switch call.endReason {
            case .noAnswer?, .unavailable?: "timeout"
            case .failed?: "failed"
            default: "ended"
            }
        case .signal(let signal): "signal.\(signal.kind.rawValue)"
        }
    }
}

/// What one device hears: the event as the SSE stream carries it.
public enum DeviceEvent: Sendable, Hashable {
    case invite(Call, offer: SessionDescription?)
    case ringing(Call)
    case accepted(Call, answer: SessionDescription?)
    case ended(Call)
    case signal(Signal)

    /// The SSE event name (`call.invite`, ...).
    public var name: String {
        switch self {
        case .invite: "call.invite"
        case .ringing: "call.ringing"
        case .accepted: "call.accepted"
        case .ended: "call.ended"
        case .signal: "call.signal"
        }
    }

    static func name(of kind: CallEvent.Kind) -> String {
        switch kind {
        case .invite: "call.invite"
        case .ringing: "call.ringing"
        case .accepted: "call.accepted"
        case .ended: "call.ended"
        case .signal: "call.signal"
        }
    }

    /// The call id this event is about.
    public var callID: String {
        switch self {
        case .invite(let call, _), .ringing(let call), .accepted(let call, _), .ended(let call): call.id
        case .signal(let signal): signal.callID
        }
    }
}

/// One event for some of one user's devices.
public struct Delivery: Sendable, Hashable {
    /// Which of the user's devices get the event.
    public enum Devices: Sendable, Hashable {
        case all
        case only(String)
        case allExcept(String)

        public func includes(_ device: String) -> Bool {
            switch self {
            case .all: true
            case .only(let only): device == only
            case .allExcept(let excluded): device != excluded
            }
        }
    }

    public let user: String
    public let devices: Devices
    public let event: DeviceEvent

    public init(user: String, devices: Devices, event: DeviceEvent) {
        self.user = user
        self.devices = devices
        self.event = event
    }
}
