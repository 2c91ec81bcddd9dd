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

    public init(
        callID: String,
        fromUser: String,
        fromDevice: String,
        kind: Kind,
        sdp: String? = nil,
        candidate: ICECandidate? = nil
    ) {
        self.callID = callID
        self.fromUser = fromUser
        self.fromDevice = fromDevice
        self.kind = kind
        self.sdp = sdp
        self.candidate = candidate
    }
}
