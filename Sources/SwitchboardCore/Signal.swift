/// Something one party sends the other during call setup: an SDP offer or answer, an ICE candidate, or the end of
/// candidates. The registry routes it; it does not change the call's state.
public struct Signal: Sendable, Hashable {
    public enum Kind: String, Sendable, Codable, Hashable, CaseIterable {
        case offer
        case answer
        case candidate
        case endOfCandidates = "end-of-candidates"
    }

    public let callID: String
    public let fromUser: String
    public let fromDevice: String
    public let kind: Kind
    /// Present for `offer` and `answer`.
    public let sdp: String?
    /// Present for `candidate`.
    public let candidate: ICECandidate?
    /// The SDP is Switchboard's own, written by the secure relay's media endpoint: the only SDP a secure-relay
    /// call carries.
    public let relayed: Bool

    public init(
        callID: String,
        fromUser: String,
        fromDevice: String,
        kind: Kind,
        sdp: String? = nil,
        candidate: ICECandidate? = nil,
        relayed: Bool = false
    ) {
        self.callID = callID
        self.fromUser = fromUser
        self.fromDevice = fromDevice
        self.kind = kind
        self.sdp = sdp
        self.candidate = candidate
        self.relayed = relayed
    }
}
