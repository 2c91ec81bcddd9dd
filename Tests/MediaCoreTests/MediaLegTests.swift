import MediaCore
import STUN
import Testing

/// The per-leg state machine and the session's deadlines, on an injected clock.
@Suite struct MediaLegTests {
    let start = ContinuousClock.now
    let party = ICECredentials(ufrag: "cliU", password: "client-password-0123456789")
    let server = ICECredentials(ufrag: "srvU", password: "server-password-0123456789")
    let address = TransportAddress("127.0.0.1:50000")!

    func remote() -> RemoteTransport {
        RemoteTransport(credentials: party, fingerprint: "sha-256 AB", setup: "active", mids: ["0"])
    }

    func check(useCandidate: Bool = false, password: String? = nil) throws -> STUNMessage {
        var attributes: [STUNAttribute] = [.username("srvU:cliU"), .iceControlling(1), .priority(100)]
        if useCandidate { attributes.append(.useCandidate) }
        let bytes = try STUNMessage(type: .bindingRequest, transactionID: .random(), attributes: attributes)
            .encode(integrity: Array((password ?? server.password).utf8), fingerprint: true)
        return try STUNMessage(decoding: bytes)
    }

    func session() -> MediaSession {
        MediaSession(
            callID: "c1", caller: MediaLeg(party: .caller, local: server, remote: remote()),
            callee: MediaLeg(party: .callee, local: ICECredentials(ufrag: "other", password: "x"), remote: nil))
    }

    @Test func aCheckValidatesItsSourceAndUseCandidateSelectsIt() throws {
        var leg = MediaLeg(party: .caller, local: server, remote: remote())
        #expect(!leg.accepts(address))
        _ = leg.check(try check(), from: address, now: start)
        #expect(leg.accepts(address))
        #expect(leg.iceState == .checking)
        #expect(leg.destination == address)
        let nominated = TransportAddress("127.0.0.1:50002")!
        _ = leg.check(try check(useCandidate: true), from: nominated, now: start)
        #expect(leg.iceState == .connected)
        #expect(leg.destination == nominated)
        #expect(!leg.isForwarding)
        leg.dtlsState = .established
        #expect(!leg.isForwarding)
        leg.fingerprintVerified = true
        #expect(leg.isForwarding)
    }

    @Test func anICERestartAnswersTheOldCredentialsUntilTheNewOnesAreUsed() throws {
        var leg = MediaLeg(party: .caller, local: server, remote: remote())
        let newLocal = ICECredentials(ufrag: "srv2", password: "server-password-new-0123")
        let newRemote = RemoteTransport(
            credentials: ICECredentials(ufrag: "cli2", password: "client-password-new-01234"),
            fingerprint: "sha-256 AB",
            setup: "actpass", mids: ["0"])
        leg.restartICE(local: newLocal, remote: newRemote)
        func newCheck() throws -> STUNMessage {
            let bytes = try STUNMessage(
                type: .bindingRequest, transactionID: .random(),
                attributes: [.username("srv2:cli2"), .iceControlling(1), .priority(100), .useCandidate]
            ).encode(integrity: Array(newLocal.password.utf8), fingerprint: true)
            return try STUNMessage(decoding: bytes)
        }
        // The old path keeps its consent with the old credentials.
        guard case .answered = leg.check(try check(), from: address, now: start) else {
            Issue.record("the old credentials must still be answered")
            return
        }
        guard case .answered = leg.check(try newCheck(), from: address, now: start) else {
            Issue.record("the new credentials must be answered")
            return
        }
        #expect(leg.previousICE == nil)
        guard case .refused = leg.check(try check(), from: address, now: start) else {
            Issue.record("the old credentials end once the new ones were used")
            return
        }
    }

    @Test func anAddressTakenByAnotherLegIsForgotten() throws {
        var leg = MediaLeg(party: .caller, local: server, remote: remote())
        let other = TransportAddress("127.0.0.1:50004")!
        _ = leg.check(try check(), from: other, now: start)
        _ = leg.check(try check(useCandidate: true), from: address, now: start)
        leg.forget(address)
        #expect(!leg.accepts(address))
        #expect(leg.destination == other)
        leg.forget(other)
        #expect(leg.destination == nil)
    }

    @Test func aRefusedCheckValidatesNothingAndIsCounted() throws {
        var leg = MediaLeg(party: .caller, local: server, remote: remote())
        guard case .refused(_, 401) = leg.check(try check(password: "wrong"), from: address, now: start) else {
            Issue.record("a wrong password must be refused with 401")
            return
        }
        #expect(!leg.accepts(address))
        #expect(leg.counters.drops[.stunRefused] == 1)
    }

    @Test func legsThatDoNotCompleteInTimeFailByWhatWasMissing() throws {
        var noICE = session()
        noICE.answered(now: start)
        #expect(
            noICE.evaluate(now: start + .seconds(19), setupTimeout: .seconds(20), consentTimeout: .seconds(30)) == nil)
        #expect(
            noICE.evaluate(now: start + .seconds(20), setupTimeout: .seconds(20), consentTimeout: .seconds(30))
                == .iceTimeout)
        // Reported once.
        #expect(
            noICE.evaluate(now: start + .seconds(21), setupTimeout: .seconds(20), consentTimeout: .seconds(30)) == nil)

        var noDTLS = session()
        _ = noDTLS.caller.check(try check(useCandidate: true), from: address, now: start + .seconds(1))
        noDTLS.answered(now: start)
        noDTLS.callee.dtlsState = .established
        noDTLS.callee.fingerprintVerified = true
        let failure = noDTLS.evaluate(
            now: start + .seconds(20), setupTimeout: .seconds(20), consentTimeout: .seconds(30))
        #expect(failure == .dtlsFailed)
    }

    @Test func aRejoinStartsTheLegOverAndTheSetupTimeRunsAgain() throws {
        var session = session()
        session.answered(now: start)
        _ = session.caller.check(try check(useCandidate: true), from: address, now: start)
        session.caller.dtlsState = .established
        session.caller.fingerprintVerified = true
        session.caller.counters.packetsIn = 42
        session.callee.dtlsState = .established
        session.callee.fingerprintVerified = true
        _ = session.callee.check(
            try STUNMessage(
                decoding: STUNMessage(
                    type: .bindingRequest, transactionID: .random(),
                    attributes: [.username("other:x"), .iceControlling(1), .priority(100), .useCandidate]
                ).encode(integrity: Array("x".utf8), fingerprint: true)),
            from: TransportAddress("127.0.0.1:50010")!, now: start)
        #expect(session.caller.isForwarding && session.callee.isForwarding)

        let newLocal = ICECredentials(ufrag: "srv3", password: "server-password-rejoin-01")
        let newRemote = RemoteTransport(
            credentials: ICECredentials(ufrag: "cli3", password: "client-password-rejoin-012"),
            fingerprint: "sha-256 CD", setup: "actpass", mids: ["0"])
        let gone = session.rejoin(.caller, local: newLocal, remote: newRemote, now: start + .seconds(15))
        #expect(gone == [address])
        let leg = session.caller
        #expect(!leg.accepts(address) && leg.destination == nil && !leg.isForwarding)
        #expect(leg.dtlsState == .new && !leg.fingerprintVerified && leg.iceState == .new)
        #expect(leg.remote?.fingerprint == "sha-256 CD" && leg.ice.local == newLocal)
        #expect(leg.counters.packetsIn == 42)
        #expect(session.callee.isForwarding)
        // The old credentials get no answer now; the setup time counts from the rejoin, not the first answer.
        if case .answered = session.caller.check(try check(), from: address, now: start + .seconds(16)) {
            Issue.record("a check with the old credentials was answered")
        }
        #expect(
            session.evaluate(now: start + .seconds(34), setupTimeout: .seconds(20), consentTimeout: .seconds(60)) == nil
        )
        #expect(
            session.evaluate(now: start + .seconds(35), setupTimeout: .seconds(20), consentTimeout: .seconds(60))
                == .iceTimeout)
    }

    @Test func aLegWithoutChecksFor30SecondsLosesConsent() throws {
        var session = session()
        _ = session.caller.check(try check(useCandidate: true), from: address, now: start)
        #expect(
            session.evaluate(now: start + .seconds(29), setupTimeout: .seconds(60), consentTimeout: .seconds(30)) == nil
        )
        _ = session.caller.check(try check(), from: address, now: start + .seconds(29))
        #expect(
            session.evaluate(now: start + .seconds(58), setupTimeout: .seconds(60), consentTimeout: .seconds(30)) == nil
        )
        #expect(
            session.evaluate(now: start + .seconds(59), setupTimeout: .seconds(60), consentTimeout: .seconds(30))
                == .consentLost)
    }

    @Test func theFirstFailureWins() {
        var session = session()
        #expect(session.fail(.fingerprintMismatch) == .fingerprintMismatch)
        #expect(session.fail(.dtlsFailed) == nil)
        #expect(session.failure == .fingerprintMismatch)
    }
}
