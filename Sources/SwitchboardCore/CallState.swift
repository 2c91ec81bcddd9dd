/// Where a call is in its life: `inviting` → `ringing` → `active` → `ended`.
///
/// `inviting`: the call exists and the callee's devices are being alerted. `ringing`: at least one callee device
/// acknowledged the invite. `active`: one callee device accepted. `ended`: terminal, with an ``EndReason``.
public enum CallState: String, Sendable, Codable, CaseIterable, Hashable {
    case inviting
    case ringing
    case active
    case ended

    /// The call has not been answered yet and may still ring.
    public var isPending: Bool { self == .inviting || self == .ringing }
}

/// Why a call ended. Raw values are the wire spelling of the API (`endReason`).
public enum EndReason: String, Sendable, Codable, CaseIterable, Hashable {
    /// A party hung up an active call.
    case hangup
    /// The caller gave up before the call was answered.
    case cancelled
    /// The callee refused the call.
    case declined
    /// The callee was already in an active call.
    case busy
    /// The call rang on a callee device but nobody answered before the ring timeout.
    case noAnswer = "no_answer"
    /// No callee device acknowledged the invite before the ring timeout.
    case unavailable
    /// Another device of the callee answered; only ever sent to the other devices, never stored on the call.
    case answeredElsewhere = "answered_elsewhere"
    /// Both users invited each other at once; this is the invite that lost.
    case glare
    /// The call could not be set up or was torn down by the server.
    case failed
}
