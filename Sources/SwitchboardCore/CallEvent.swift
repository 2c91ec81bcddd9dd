/// What the registry tells the world after a transition: one event, addressed to some devices of one user.
///
/// The same deliveries feed SSE streams, the call timeline and metrics.
public enum CallEvent: Sendable, Hashable {
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
    public let event: CallEvent

    public init(user: String, devices: Devices, event: CallEvent) {
        self.user = user
        self.devices = devices
        self.event = event
    }
}
