import Foundation
import SwitchboardCore
import Testing

/// The instant every test counts from. Time only moves when a test adds seconds to it: no clock is ever read.
let t0 = Date(timeIntervalSince1970: 1_800_000_000)

/// Runs `body` and checks that it throws a ``CallError`` with `code`.
func expectCallError(
    _ code: CallError.Code,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> Void
) {
    do {
        try body()
        Issue.record("expected \(code.rawValue), but the input was accepted", sourceLocation: sourceLocation)
    } catch let error as CallError {
        #expect(error.code.rawValue == code.rawValue, "\(error)", sourceLocation: sourceLocation)
        #expect(!error.message.isEmpty, sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected a CallError \(code.rawValue), got \(error)", sourceLocation: sourceLocation)
    }
}

extension DeviceEvent {
    /// The call snapshot the event carries, if it carries one.
    var call: Call? {
        switch self {
        case .invite(let call, _), .ringing(let call), .accepted(let call, _), .ended(let call): call
        case .signal: nil
        }
    }
}

extension [Delivery] {
    /// The `call.ended` deliveries, as (user, call id, reason), in order.
    var endings: [Ending] {
        compactMap { delivery in
            guard case .ended(let call) = delivery.event else { return nil }
            return Ending(user: delivery.user, devices: delivery.devices, callID: call.id, reason: call.endReason)
        }
    }

    /// How many `call.accepted` events these deliveries carry.
    var acceptedCount: Int {
        count(where: { if case .accepted = $0.event { true } else { false } })
    }
}

struct Ending: Hashable {
    var user: String
    var devices: Delivery.Devices
    var callID: String
    var reason: EndReason?
}

/// An ICE candidate as Chromium sends it.
let sampleCandidate = ICECandidate(
    candidate: "candidate:3877542846 1 udp 2122194687 198.51.100.10 34093 typ host generation 0 network-id 1",
    sdpMid: "0", sdpMLineIndex: 0)

/// The real browser SDP in `Fixtures/sdp`, read as bytes so that the CRLF line endings stay as captured.
enum Fixture {
    static let directory = "Fixtures/sdp"

    static func url(_ name: String) throws -> URL {
        try #require(
            Bundle.module.url(forResource: name, withExtension: "sdp", subdirectory: directory),
            "fixture \(name).sdp is missing from the test bundle")
    }

    static func sdp(_ name: String) throws -> String {
        String(decoding: try Data(contentsOf: url(name)), as: UTF8.self)
    }

    static func offer(_ name: String = "chrome-offer-av") throws -> SessionDescription {
        SessionDescription(type: .offer, sdp: try sdp(name))
    }

    static func answer(_ name: String = "chrome-answer-av") throws -> SessionDescription {
        SessionDescription(type: .answer, sdp: try sdp(name))
    }
}

/// Small hand-written SDP for the cases browsers never produce.
enum InlineSDP {
    /// `count` bytes of a fingerprint, as colon-separated upper-case hex.
    static func hex(_ count: Int) -> String {
        (0..<count).map { index in
            let byte = String((index * 37 + 11) % 256, radix: 16, uppercase: true)
            return byte.count == 1 ? "0" + byte : byte
        }.joined(separator: ":")
    }

    static func fingerprint(_ hash: String = "sha-256", bytes: Int = 32) -> String {
        "a=fingerprint:\(hash) \(hex(bytes))"
    }

    /// One media section; nil leaves the line out.
    static func media(
        _ kind: String = "audio",
        port: String = "9",
        proto: String = "UDP/TLS/RTP/SAVPF",
        mid: String? = "0",
        fingerprint: String? = InlineSDP.fingerprint(),
        setup: String? = "actpass",
        extra: [String] = []
    ) -> [String] {
        var lines = [
            "m=\(kind) \(port) \(proto) 111", "c=IN IP4 0.0.0.0", "a=ice-ufrag:abcd",
            "a=ice-pwd:0123456789abcdef01234567",
        ]
        if let fingerprint { lines.append(fingerprint) }
        if let setup { lines.append("a=setup:\(setup)") }
        if let mid { lines.append("a=mid:\(mid)") }
        lines += extra
        lines.append("a=rtpmap:111 opus/48000/2")
        return lines
    }

    static func make(session: [String] = [], media: [[String]] = [media()], lineEnding: String = "\r\n") -> String {
        let head = ["v=0", "o=- 4611731400430051336 2 IN IP4 127.0.0.1", "s=-", "t=0 0"]
        return (head + session + media.flatMap { $0 }).map { $0 + lineEnding }.joined()
    }
}

/// Where call `c1`, from alice (device `a1`) to bob (devices `b1`, `b2`), stands. Each ended stage ends it a
/// different way.
enum Stage: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case inviting, ringing, active
    case endedCancelled, endedDeclined, endedHangup, endedNoAnswer, endedUnavailable, endedBusy, endedGlare

    var testDescription: String { rawValue }

    static let pending: [Stage] = [.inviting, .ringing]
    static let ended: [Stage] = allCases.filter { $0.state == .ended }

    var state: CallState {
        switch self {
        case .inviting: .inviting
        case .ringing: .ringing
        case .active: .active
        default: .ended
        }
    }

    var endReason: EndReason? {
        switch self {
        case .inviting, .ringing, .active: nil
        case .endedCancelled: .cancelled
        case .endedDeclined: .declined
        case .endedHangup: .hangup
        case .endedNoAnswer: .noAnswer
        case .endedUnavailable: .unavailable
        case .endedBusy: .busy
        case .endedGlare: .glare
        }
    }

    /// The last timeline entry of `c1` once it reached this stage.
    var lastEntry: TimelineEntry {
        switch self {
        case .inviting: TimelineEntry(at: t0, event: "invite", user: "alice", device: "a1")
        case .ringing: TimelineEntry(at: t0 + 1, event: "ringing", user: "bob", device: "b1")
        case .active: TimelineEntry(at: t0 + 2, event: "accepted", user: "bob", device: "b1")
        case .endedCancelled:
            TimelineEntry(at: t0 + 3, event: "ended", user: "alice", device: "a1", reason: "cancelled")
        case .endedDeclined: TimelineEntry(at: t0 + 3, event: "ended", user: "bob", device: "b1", reason: "declined")
        case .endedHangup: TimelineEntry(at: t0 + 3, event: "ended", user: "alice", device: "a1", reason: "hangup")
        case .endedNoAnswer:
            TimelineEntry(at: t0 + 60, event: "timeout", user: "bob", device: nil, reason: "no_answer")
        case .endedUnavailable:
            TimelineEntry(at: t0 + 60, event: "timeout", user: "bob", device: nil, reason: "unavailable")
        case .endedBusy: TimelineEntry(at: t0 + 1, event: "ended", user: "bob", device: nil, reason: "busy")
        case .endedGlare: TimelineEntry(at: t0 + 1, event: "ended", user: "alice", device: "a1", reason: "glare")
        }
    }

    /// A fresh registry (30 s ring timeout) holding `c1` in this stage.
    func registry() throws -> CallRegistry {
        var registry = CallRegistry(configuration: .init(ringTimeout: 30))
        switch self {
        case .endedBusy:
            _ = try registry.invite(id: "c0", from: "bob", device: "b1", to: "carol", offer: nil, now: t0)
            _ = try registry.accept("c0", user: "carol", device: "k1", answer: nil, now: t0)
            _ = try registry.invite(id: "c1", from: "alice", device: "a1", to: "bob", offer: nil, now: t0 + 1)
        case .endedGlare:
            _ = try registry.invite(id: "c0", from: "bob", device: "b1", to: "alice", offer: nil, now: t0)
            _ = try registry.invite(id: "c1", from: "alice", device: "a1", to: "bob", offer: nil, now: t0 + 1)
        default:
            _ = try registry.invite(id: "c1", from: "alice", device: "a1", to: "bob", offer: nil, now: t0)
            if [.ringing, .endedNoAnswer].contains(self) {
                _ = try registry.ring("c1", user: "bob", device: "b1", now: t0 + 1)
            }
            if [.active, .endedHangup].contains(self) {
                _ = try registry.accept("c1", user: "bob", device: "b1", answer: nil, now: t0 + 2)
            }
            switch self {
            case .endedCancelled, .endedHangup: _ = try registry.hangup("c1", user: "alice", device: "a1", now: t0 + 3)
            case .endedDeclined: _ = try registry.decline("c1", user: "bob", device: "b1", now: t0 + 3)
            case .endedNoAnswer, .endedUnavailable: _ = registry.expire(now: t0 + 60)
            default: break
            }
        }
        let call = try registry.call("c1", visibleTo: "alice")
        try #require(call.state == state && call.endReason == endReason, "setting up \(rawValue) went wrong")
        return registry
    }
}

/// The inputs that act on an existing call.
enum Action: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case ring, accept, decline, hangup, signal

    var testDescription: String { rawValue }

    /// Only the callee may do these.
    var isCalleeOnly: Bool { [.ring, .accept, .decline].contains(self) }

    /// Whether the state machine allows this input in `state` (for a party allowed to do it at all).
    func isAllowed(in state: CallState) -> Bool {
        switch self {
        case .ring, .accept, .decline: state.isPending
        case .hangup, .signal: state != .ended
        }
    }

    func perform(
        on registry: inout CallRegistry,
        call id: String = "c1",
        user: String,
        device: String,
        now: Date
    ) throws(CallError) {
        switch self {
        case .ring: _ = try registry.ring(id, user: user, device: device, now: now)
        case .accept: _ = try registry.accept(id, user: user, device: device, answer: nil, now: now)
        case .decline: _ = try registry.decline(id, user: user, device: device, now: now)
        case .hangup: _ = try registry.hangup(id, user: user, device: device, now: now)
        case .signal:
            let signal = Signal(
                callID: id, fromUser: user, fromDevice: device, kind: .candidate, candidate: sampleCandidate)
            _ = try registry.signal(signal, now: now)
        }
    }
}

/// Checks the registry's per-user index against its calls: every call is listed for both parties exactly once,
/// and nothing else is listed.
func expectIndexConsistent(_ registry: CallRegistry, users: [String], sourceLocation: SourceLocation = #_sourceLocation)
{
    for user in users {
        let listed = registry.calls(of: user)
        #expect(
            Set(listed.map(\.id)).count == listed.count, "\(user) has a call listed twice",
            sourceLocation: sourceLocation)
        #expect(listed.allSatisfy { $0.isParty(user) && registry.calls[$0.id] == $0 }, sourceLocation: sourceLocation)
        let expected = Set(registry.calls.values.filter { $0.isParty(user) }.map(\.id))
        #expect(Set(listed.map(\.id)) == expected, "index of \(user)", sourceLocation: sourceLocation)
    }
    #expect(Set(registry.calls(of: nil).map(\.id)) == Set(registry.calls.keys), sourceLocation: sourceLocation)
}
