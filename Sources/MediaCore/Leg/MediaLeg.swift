public import STUN

/// Why a leg failed; the call then ends `failed` with this as its `failure`.
public enum MediaFailure: String, Sendable, Hashable, CaseIterable {
    /// The party's DTLS certificate did not match the fingerprint in its SDP.
    case fingerprintMismatch = "fingerprint_mismatch"
    /// No valid ICE check arrived within the setup time after the answer.
    case iceTimeout = "ice_timeout"
    /// ICE worked but DTLS did not complete (or failed) within the setup time.
    case dtlsFailed = "dtls_failed"
    /// The party stopped sending consent checks (RFC 7675 §5.1: 30 s).
    case consentLost = "consent_lost"
}

/// One party's side of a secure-relay call: Switchboard as that party's ICE-lite and DTLS peer.
///
/// A value: the adapter feeds it checks and DTLS outcomes and asks it where media may come from and go to. Only a
/// source that passed an ICE check is accepted; media goes to the nominated (USE-CANDIDATE) address, or the last
/// validated one before a nomination. Media is forwarded only once DTLS is established and the party's certificate
/// matched the fingerprint its SDP signalled.
public struct MediaLeg: Sendable {
    public enum Party: String, Sendable, Hashable, CaseIterable, Codable {
        case caller
        case callee

        /// The other leg.
        public var other: Party { self == .caller ? .callee : .caller }
    }

    public enum ICEState: String, Sendable, Hashable, Codable {
        /// No valid check yet.
        case new
        /// A check succeeded, none nominated a pair yet.
        case checking
        /// A pair was nominated.
        case connected
    }

    public enum DTLSState: String, Sendable, Hashable, Codable {
        case new
        case handshaking
        case established
        case failed
    }

    public let party: Party
    public private(set) var ice: ICELiteResponder
    /// The agent's credentials before an ICE restart (RFC 8445 §9): checks made with them are still answered, so
    /// the current path keeps its consent, until a check with the new ones arrives.
    public private(set) var previousICE: ICELiteResponder?
    /// The party's transport from its SDP; nil until its offer or answer arrives.
    public private(set) var remote: RemoteTransport?
    public private(set) var iceState: ICEState = .new
    public var dtlsState: DTLSState = .new
    public var fingerprintVerified = false
    /// The negotiated SRTP protection profile (e.g. `SRTP_AEAD_AES_128_GCM`).
    public var srtpProfile: String?
    public private(set) var selected: TransportAddress?
    public private(set) var validated: [TransportAddress] = []
    /// The remote ufrag each validated address checked with (the USERNAME's second half), in `validated`'s order.
    private var validatedUfrags: [String] = []
    /// The address the last check pushed out of `validated` (it keeps at most ``maximumValidated``): the adapter
    /// stops routing it here.
    public private(set) var evicted: TransportAddress?
    /// When the last valid check arrived (consent freshness, RFC 7675).
    public private(set) var lastCheck: ContinuousClock.Instant?
    public var counters = MediaCounters()

    /// Addresses kept per leg: a browser checks a few candidate pairs, never hundreds.
    static let maximumValidated = 8

    public init(party: Party, local: ICECredentials, remote: RemoteTransport?) {
        self.party = party
        self.ice = ICELiteResponder(local: local, remoteUfrag: remote?.credentials.ufrag)
        self.remote = remote
    }

    /// The party's SDP arrived (its answer, or a new offer): its ufrag is checked from now on. Addresses that were
    /// validated before with another remote ufrag (another of the callee's devices, checking before the answer
    /// said which one answered) are forgotten and returned.
    @discardableResult
    public mutating func learn(_ remote: RemoteTransport) -> [TransportAddress] {
        self.remote = remote
        ice.remoteUfrag = remote.credentials.ufrag
        let others = zip(validated, validatedUfrags).filter { $0.1 != remote.credentials.ufrag }.map(\.0)
        for address in others { forget(address) }
        return others
    }

    /// An ICE restart: the party's new offer carries new credentials, and Switchboard's answer `local` ones.
    public mutating func restartICE(local: ICECredentials, remote: RemoteTransport) {
        previousICE = ice
        ice = ICELiteResponder(local: local, remoteUfrag: remote.credentials.ufrag)
        self.remote = remote
    }

    /// Consent starts a new period at `now` (a rejoin offer: the party's old peer connection is gone and its new
    /// one checks once the other party answered).
    public mutating func refreshConsent(now: ContinuousClock.Instant) {
        lastCheck = now
    }

    /// Answers one Binding request from `source`, validating (and, with USE-CANDIDATE, selecting) it on success.
    public mutating func check(
        _ request: STUNMessage, from source: TransportAddress, now: ContinuousClock.Instant
    ) -> ICELiteResponder.Outcome {
        let previous = previousICE.flatMap { old in
            ICELiteResponder.localUfrag(of: request) == old.local.ufrag ? old : nil
        }
        let outcome = (previous ?? ice).respond(to: request, from: source)
        switch outcome {
        case .answered(_, let nominated):
            // The first valid check with the new credentials ends the old ones.
            if previous == nil { previousICE = nil }
            lastCheck = now
            evicted = nil
            let ufrag = (try? request.username).map { String($0.split(separator: ":").dropFirst().first ?? "") } ?? ""
            if let index = validated.firstIndex(of: source) {
                validatedUfrags[index] = ufrag
            } else {
                if validated.count >= Self.maximumValidated {
                    let oldest = validated.removeFirst()
                    validatedUfrags.removeFirst()
                    if selected == oldest { selected = nil }
                    evicted = oldest
                }
                validated.append(source)
                validatedUfrags.append(ufrag)
            }
            if nominated {
                selected = source
                iceState = .connected
            } else if iceState == .new {
                iceState = .checking
            }
        case .refused:
            counters.drop(.stunRefused)
        case .ignored:
            break
        }
        return outcome
    }

    /// `address` now belongs to another leg (a later valid check from it, with that leg's credentials): media no
    /// longer comes from or goes to it here.
    public mutating func forget(_ address: TransportAddress) {
        if let index = validated.firstIndex(of: address) {
            validated.remove(at: index)
            validatedUfrags.remove(at: index)
        }
        if selected == address { selected = nil }
    }

    /// Whether a datagram from `source` may be taken (it passed an ICE check).
    public func accepts(_ source: TransportAddress) -> Bool { validated.contains(source) }

    /// Where media for this party goes.
    public var destination: TransportAddress? { selected ?? validated.last }

    /// DTLS is established and the party's certificate matched its SDP: media flows to and from it.
    public var isForwarding: Bool { dtlsState == .established && fingerprintVerified && destination != nil }
}

/// Both legs of one secure-relay call and the deadlines that end it.
public struct MediaSession: Sendable {
    public let callID: String
    public var caller: MediaLeg
    public var callee: MediaLeg
    /// When the callee answered: from then on both legs must complete ICE and DTLS within the setup time.
    public private(set) var answeredAt: ContinuousClock.Instant?
    /// Set once the session failed; it is torn down with the call.
    public private(set) var failure: MediaFailure?

    public init(callID: String, caller: MediaLeg, callee: MediaLeg) {
        self.callID = callID
        self.caller = caller
        self.callee = callee
    }

    public subscript(party: MediaLeg.Party) -> MediaLeg {
        get { party == .caller ? caller : callee }
        set {
            if party == .caller { caller = newValue } else { callee = newValue }
        }
    }

    public mutating func answered(now: ContinuousClock.Instant) {
        answeredAt = answeredAt ?? now
    }

    /// `party` rejoined from a new peer connection (its page reloaded): its leg starts over with `local` and its new
    /// `remote` (no validated address, DTLS to do again, its counters kept), and the setup time runs again from
    /// `now`. Returns the addresses the old leg had validated, which no longer belong to it.
    public mutating func rejoin(
        _ party: MediaLeg.Party, local: ICECredentials, remote: RemoteTransport, now: ContinuousClock.Instant
    ) -> [TransportAddress] {
        let old = self[party]
        var leg = MediaLeg(party: party, local: local, remote: remote)
        leg.counters = old.counters
        self[party] = leg
        answeredAt = now
        return old.validated
    }

    /// Records a failure (the first one wins) and returns it when it is new.
    public mutating func fail(_ failure: MediaFailure) -> MediaFailure? {
        guard self.failure == nil else { return nil }
        self.failure = failure
        return failure
    }

    /// Checks the deadlines at `now`: a leg not forwarding `setupTimeout` after the answer fails (`ice_timeout`
    /// without a valid check, `dtls_failed` with one); a leg whose last check is older than `consentTimeout` lost
    /// consent. Returns a failure when one is new.
    public mutating func evaluate(
        now: ContinuousClock.Instant, setupTimeout: Duration, consentTimeout: Duration
    ) -> MediaFailure? {
        guard failure == nil else { return nil }
        for party in MediaLeg.Party.allCases {
            let leg = self[party]
            if let lastCheck = leg.lastCheck, now - lastCheck >= consentTimeout { return fail(.consentLost) }
            if let answeredAt, now - answeredAt >= setupTimeout, !leg.isForwarding {
                return fail(leg.validated.isEmpty ? .iceTimeout : .dtlsFailed)
            }
        }
        return nil
    }
}
