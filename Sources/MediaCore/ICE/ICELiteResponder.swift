public import STUN

/// The ICE-lite side of connectivity checks (RFC 8445 §2.5, §7.3): Switchboard never sends checks, it answers the
/// Binding requests a full agent sends to its host candidate, as mediasoup's and Janus's servers do.
///
/// A request must carry `USERNAME` = `localUfrag:remoteUfrag`, a `MESSAGE-INTEGRITY` made with the local password
/// (short-term credential, RFC 8489 §9.1), `FINGERPRINT` and `PRIORITY`; wrong integrity is answered 401, a
/// missing attribute 400, and a peer claiming `ICE-CONTROLLED` 487 (a full agent facing a lite one must control,
/// RFC 8445 §6.1.1). Success responses carry `XOR-MAPPED-ADDRESS` and are signed with the local password. The remote
/// ufrag may be unknown when the first check arrives (a callee starts checks before its answer reaches the
/// server): the check is then answered on the local password alone and the ufrag is compared once it is known.
/// Unknown comprehension-optional attributes (Chrome's 0xC057 network cost) are ignored.
public struct ICELiteResponder: Sendable {
    public let local: ICECredentials
    /// The remote agent's ufrag, once its SDP is known.
    public var remoteUfrag: String?

    public init(local: ICECredentials, remoteUfrag: String? = nil) {
        self.local = local
        self.remoteUfrag = remoteUfrag
    }

    /// What to do with one Binding request.
    public enum Outcome: Sendable, Hashable {
        /// A valid check: send `response`; `nominated` when it carried USE-CANDIDATE.
        case answered(response: [UInt8], nominated: Bool)
        /// A refused check: send this error response; the source is not validated.
        case refused(response: [UInt8], code: Int)
        /// Nothing to send (not a Binding request, or not for this agent).
        case ignored
    }

    /// The local ufrag a check is addressed to: the part of USERNAME before the colon (how the endpoint finds the
    /// leg of a check arriving from an address it has not seen).
    public static func localUfrag(of message: STUNMessage) -> String? {
        guard let username = try? message.username, let colon = username.firstIndex(of: ":") else { return nil }
        return String(username[..<colon])
    }

    public func respond(to request: STUNMessage, from source: TransportAddress) -> Outcome {
        guard request.type == .bindingRequest else { return .ignored }
        guard request.verifyFingerprint() == true else { return refuse(request, .badRequest, "FINGERPRINT needed") }
        guard let username = try? request.username, let colon = username.firstIndex(of: ":") else {
            return refuse(request, .badRequest, "USERNAME needed")
        }
        let localPart = String(username[..<colon])
        let remotePart = String(username[username.index(after: colon)...])
        guard localPart == local.ufrag else { return refuse(request, .unauthorized, "unknown ufrag") }
        if let remoteUfrag, remotePart != remoteUfrag { return refuse(request, .unauthorized, "wrong remote ufrag") }
        switch request.verifyIntegrity(key: Array(local.password.utf8)) {
        case .valid: break
        case .missing: return refuse(request, .badRequest, "MESSAGE-INTEGRITY needed")
        case .invalid: return refuse(request, .unauthorized, "wrong MESSAGE-INTEGRITY")
        }
        guard (try? request.priority) != nil, request.attribute(.priority) != nil else {
            return refuse(request, .badRequest, "PRIORITY needed")
        }
        if request.attribute(.iceControlled) != nil {
            return refuse(request, .roleConflict, "this agent is ICE-lite: be controlling")
        }
        let unknown = request.unknownComprehensionRequired
        guard unknown.isEmpty else {
            let response = STUNMessage(
                type: .bindingError, transactionID: request.transactionID,
                attributes: [.errorCode(.unknownAttribute), .unknownAttributes(unknown)])
            return .refused(response: (try? response.encode(fingerprint: true)) ?? [], code: 420)
        }
        let response = STUNMessage(
            type: .bindingSuccess, transactionID: request.transactionID,
            attributes: [.xorMappedAddress(source, transactionID: request.transactionID)])
        guard let bytes = try? response.encode(integrity: Array(local.password.utf8), fingerprint: true) else {
            return .ignored
        }
        return .answered(response: bytes, nominated: request.useCandidate)
    }

    private func refuse(_ request: STUNMessage, _ code: STUNErrorCode, _ reason: String) -> Outcome {
        let response = STUNMessage(
            type: .bindingError, transactionID: request.transactionID, attributes: [.errorCode(code, reason)])
        return .refused(response: (try? response.encode(fingerprint: true)) ?? [], code: Int(code.rawValue))
    }
}
