import Foundation
import SwitchboardCore
import Testing

/// Offers, answers and ICE candidates: who gets them, what they must carry, and what the timeline keeps.
@Suite struct SignalTests {
    static func candidate(_ user: String, _ device: String, call: String = "c1") -> Signal {
        Signal(callID: call, fromUser: user, fromDevice: device, kind: .candidate, candidate: sampleCandidate)
    }

    /// Switchboard is each party's ICE peer in a secure-relay call: candidates are checked and recorded but reach
    /// nobody; offers and answers still go to the other party.
    @Test func aSecureRelayCallsCandidatesReachNobody() throws {
        var registry = CallRegistry()
        _ = try registry.invite(
            id: "c1", from: "alice", device: "a1", to: "bob", offer: try Fixture.offer(), media: .secureRelay, now: t0)
        // Only SDP the media endpoint wrote: the parties' own answer and offer are refused as they come.
        expectCallError(.needsMediaRelay) {
            _ = try registry.accept("c1", user: "bob", device: "b1", answer: try Fixture.answer(), now: t0 + 1)
        }
        _ = try registry.accept(
            "c1", user: "bob", device: "b1", answer: try Fixture.answer(), relayed: true, now: t0 + 1)
        for signal in [
            Self.candidate("alice", "a1"), Self.candidate("bob", "b1"),
            Signal(callID: "c1", fromUser: "bob", fromDevice: "b1", kind: .endOfCandidates),
        ] {
            let outcome = try registry.signal(signal, now: t0 + 2)
            #expect(outcome.deliveries.isEmpty, "\(signal.kind)")
            #expect(outcome.events.first?.timelineEntry?.event == "signal.\(signal.kind.rawValue)")
        }
        expectCallError(.badRequest) {
            _ = try registry.signal(
                Signal(callID: "c1", fromUser: "bob", fromDevice: "b1", kind: .candidate), now: t0 + 3)
        }
        expectCallError(.needsMediaRelay) {
            _ = try registry.signal(
                Signal(
                    callID: "c1", fromUser: "alice", fromDevice: "a1", kind: .offer,
                    sdp: try Fixture.sdp("chrome-offer-av")),
                now: t0 + 4)
        }
        let offer = Signal(
            callID: "c1", fromUser: "alice", fromDevice: "a1", kind: .offer, sdp: try Fixture.sdp("chrome-offer-av"),
            relayed: true)
        #expect(
            try registry.signal(offer, now: t0 + 4).deliveries == [
                Delivery(user: "bob", devices: .only("b1"), event: .signal(offer))
            ])
    }

    @Test(arguments: Stage.pending)
    func theCallersSignalsReachEveryCalleeDeviceBeforeTheAnswer(stage: Stage) throws {
        var registry = try stage.registry()
        let before = registry.calls["c1"]
        let signal = Self.candidate("alice", "a1")
        #expect(
            try registry.signal(signal, now: t0 + 5).deliveries == [
                Delivery(user: "bob", devices: .all, event: .signal(signal))
            ])
        // A signal never changes the call's state.
        #expect(registry.calls["c1"]?.state == before?.state)
        #expect(registry.calls["c1"]?.ringingDevices == before?.ringingDevices)
    }

    @Test func afterTheAnswerTheCallersSignalsReachOnlyTheDeviceThatAnswered() throws {
        var registry = try Stage.ringing.registry()
        _ = try registry.accept("c1", user: "bob", device: "b2", answer: nil, now: t0 + 5)
        let signal = Self.candidate("alice", "a1")
        #expect(
            try registry.signal(signal, now: t0 + 6).deliveries == [
                Delivery(user: "bob", devices: .only("b2"), event: .signal(signal))
            ])
        #expect(registry.calls["c1"]?.state == .active)
    }

    @Test(arguments: Stage.allCases.filter { $0.state != .ended }, ["b1", "b2"])
    func theCalleesSignalsReachOnlyTheDeviceThatPlacedTheCall(stage: Stage, device: String) throws {
        var registry = try stage.registry()
        let signal = Self.candidate("bob", device)
        if stage.state == .active && device != "b1" {
            // Answered on b1: b2 is out of the call.
            expectCallError(.forbidden) { _ = try registry.signal(signal, now: t0 + 6).deliveries }
            return
        }
        #expect(
            try registry.signal(signal, now: t0 + 6).deliveries == [
                Delivery(user: "alice", devices: .only("a1"), event: .signal(signal))
            ])
    }

    @Test(arguments: Stage.allCases.filter { $0.state != .ended })
    func theCallersOtherDevicesCannotSignal(stage: Stage) throws {
        var registry = try stage.registry()
        let before = registry.calls
        expectCallError(.forbidden) { _ = try registry.signal(Self.candidate("alice", "a2"), now: t0 + 6).deliveries }
        #expect(registry.calls == before)
    }

    @Test func offersAndAnswersAreRoutedWithTheirSdp() throws {
        var registry = try Stage.active.registry()
        let offer = Signal(
            callID: "c1", fromUser: "alice", fromDevice: "a1", kind: .offer, sdp: try Fixture.sdp("chrome-offer-av"))
        let answer = Signal(
            callID: "c1", fromUser: "bob", fromDevice: "b1", kind: .answer, sdp: try Fixture.sdp("chrome-answer-av"))
        let done = Signal(callID: "c1", fromUser: "bob", fromDevice: "b1", kind: .endOfCandidates)
        #expect(
            try registry.signal(offer, now: t0 + 5).deliveries == [
                Delivery(user: "bob", devices: .only("b1"), event: .signal(offer))
            ])
        #expect(
            try registry.signal(answer, now: t0 + 6).deliveries == [
                Delivery(user: "alice", devices: .only("a1"), event: .signal(answer))
            ])
        #expect(
            try registry.signal(done, now: t0 + 7).deliveries == [
                Delivery(user: "alice", devices: .only("a1"), event: .signal(done))
            ])
        #expect(
            registry.calls["c1"]?.timeline.suffix(3).map(\.event) == [
                "signal.offer", "signal.answer", "signal.end-of-candidates",
            ])
        #expect(DeviceEvent.signal(offer).name == "call.signal" && DeviceEvent.signal(offer).callID == "c1")
    }

    struct Payload: Sendable, CustomTestStringConvertible {
        var kind: Signal.Kind
        var sdp: Bool
        var candidate: Bool
        var testDescription: String { "\(kind.rawValue) sdp:\(sdp) candidate:\(candidate)" }

        /// Whether the API contract allows this shape.
        var isWellFormed: Bool {
            switch kind {
            case .offer, .answer: sdp && !candidate
            case .candidate: candidate && !sdp
            case .endOfCandidates: !sdp && !candidate
            }
        }

        static let all: [Payload] = Signal.Kind.allCases.flatMap { kind in
            [false, true].flatMap { sdp in [false, true].map { Payload(kind: kind, sdp: sdp, candidate: $0) } }
        }
    }

    @Test(arguments: Payload.all)
    func eachSignalTypeCarriesExactlyItsPayload(payload: Payload) throws {
        var registry = try Stage.ringing.registry()
        let sdp = payload.kind == .answer ? try Fixture.sdp("firefox-answer-av") : try Fixture.sdp("firefox-offer-av")
        let signal = Signal(
            callID: "c1", fromUser: "alice", fromDevice: "a1", kind: payload.kind, sdp: payload.sdp ? sdp : nil,
            candidate: payload.candidate ? sampleCandidate : nil)
        let before = registry.calls
        if payload.isWellFormed {
            #expect(try registry.signal(signal, now: t0 + 5).deliveries.count == 1)
            #expect(registry.calls["c1"]?.timeline.last?.event == "signal.\(payload.kind.rawValue)")
        } else {
            expectCallError(.badRequest) { _ = try registry.signal(signal, now: t0 + 5).deliveries }
            #expect(registry.calls == before)
        }
    }

    @Test(arguments: Stage.ended, Signal.Kind.allCases)
    func noSignalOnceTheCallHasEnded(stage: Stage, kind: Signal.Kind) throws {
        var registry = try stage.registry()
        let before = registry.calls
        let signal = Signal(
            callID: "c1", fromUser: "bob", fromDevice: "b1", kind: kind,
            sdp: kind == .offer || kind == .answer ? try Fixture.sdp("chrome-answer-audio") : nil,
            candidate: kind == .candidate ? sampleCandidate : nil)
        expectCallError(.invalidTransition) { _ = try registry.signal(signal, now: t0 + 100).deliveries }
        #expect(registry.calls == before)
    }

    @Test(arguments: [
        ("bad-sdes-crypto", Signal.Kind.offer), ("bad-md5-fingerprint", .offer), ("bad-no-setup", .answer),
        ("bad-answer-setup-actpass", .answer), ("chrome-offer-av", .answer),
    ])
    func insecureSdpInASignalIsRefused(fixture: String, kind: Signal.Kind) throws {
        var registry = try Stage.active.registry()
        let before = registry.calls
        let signal = Signal(
            callID: "c1", fromUser: "alice", fromDevice: "a1", kind: kind, sdp: try Fixture.sdp(fixture))
        expectCallError(.insecureSDP) { _ = try registry.signal(signal, now: t0 + 5).deliveries }
        #expect(registry.calls == before)
    }

    @Test func theTimelineKeepsSignalsOnlyUpToItsBoundButAlwaysKeepsLifecycleEntries() throws {
        var registry = CallRegistry(configuration: .init(maxTimelineEntries: 5))
        _ = try registry.invite(id: "c1", from: "alice", device: "a1", to: "bob", offer: nil, now: t0)
        _ = try registry.ring("c1", user: "bob", device: "b1", now: t0 + 1)
        for index in 0..<10 {
            let deliveries = try registry.signal(Self.candidate("alice", "a1"), now: t0 + 2 + Double(index)).deliveries
            #expect(deliveries.count == 1, "signals past the bound are still delivered")
        }
        let afterSignals = try #require(registry.calls["c1"]).timeline
        #expect(afterSignals.count == 5)
        #expect(
            afterSignals.map(\.event) == [
                "invite", "ringing", "signal.candidate", "signal.candidate", "signal.candidate",
            ])
        #expect(afterSignals.map(\.at) == [t0, t0 + 1, t0 + 2, t0 + 3, t0 + 4])

        _ = try registry.ring("c1", user: "bob", device: "b2", now: t0 + 20)
        _ = try registry.accept("c1", user: "bob", device: "b2", answer: nil, now: t0 + 21)
        _ = try registry.signal(Self.candidate("bob", "b2"), now: t0 + 22).deliveries
        _ = try registry.hangup("c1", user: "bob", device: "b2", now: t0 + 23)
        let final = try #require(registry.calls["c1"]).timeline
        #expect(final.count == 8)
        #expect(
            Array(final.dropFirst(5)) == [
                TimelineEntry(at: t0 + 20, event: "ringing", user: "bob", device: "b2"),
                TimelineEntry(at: t0 + 21, event: "accepted", user: "bob", device: "b2"),
                TimelineEntry(at: t0 + 23, event: "ended", user: "bob", device: "b2", reason: "hangup"),
            ])
    }
}
