import Foundation
import SwitchboardCore
import TestSupport
import Testing

/// History is kept by time (`forgetCalls(endedBefore:)`), pages newest first, and a registry rebuilt from the
/// calls an input needs decides as the whole registry does.
@Suite struct RetentionTests {
    static let users = (0..<12).map { "u\($0)" }

    @Test func onlyCallsThatEndedBeforeTheCutoffAreForgottenAndLiveCallsNeverGo() throws {
        var registry = CallRegistry()
        _ = try registry.invite(id: "pending", from: "u10", device: "d", to: "u11", offer: nil, now: t0)
        _ = try registry.invite(id: "live", from: "u8", device: "d", to: "u9", offer: nil, now: t0)
        _ = try registry.accept("live", user: "u9", device: "d", answer: nil, now: t0)
        for index in 1...5 {
            _ = try registry.invite(
                id: "c\(index)", from: "u0", device: "d", to: "u\(index)", offer: nil, now: t0 + Double(index))
        }
        // End them newest-created first, so "ended long ago" and "created long ago" differ.
        for (step, index) in [5, 4, 3, 2, 1].enumerated() {
            _ = try registry.hangup("c\(index)", user: "u0", device: "d", now: t0 + 10 + Double(step))
        }
        #expect(registry.forgetCalls(endedBefore: t0 + 12) == 2)
        #expect(Set(registry.calls.keys) == ["pending", "live", "c3", "c2", "c1"])
        #expect(registry.calls(of: "u0").map(\.id) == ["c3", "c2", "c1"])
        #expect(registry.calls(of: "u5").isEmpty && registry.calls(of: "u4").isEmpty)
        expectCallError(.callNotFound) { _ = try registry.call("c5", visibleTo: "u0") }
        #expect(registry.countsByState() == [.inviting: 1, .ringing: 0, .active: 1, .ended: 3])
        #expect(registry.forgetCalls(endedBefore: t0 + 1_000_000) == 3)
        #expect(Set(registry.calls.keys) == ["pending", "live"])
        expectIndexConsistent(registry, users: Self.users)
    }

    @Test func historyPagesNewestFirstWithACursor() throws {
        var registry = CallRegistry()
        for index in 0..<7 {
            _ = try registry.invite(
                id: "c\(index)", from: "u0", device: "d", to: "u1", offer: nil, now: t0 + Double(index))
            _ = try registry.hangup("c\(index)", user: "u0", device: "d", now: t0 + Double(index))
        }
        // Two calls made at the same instant are ordered by id.
        _ = try registry.invite(id: "c7", from: "u2", device: "d", to: "u0", offer: nil, now: t0 + 6)
        var pages: [[String]] = []
        var cursor: HistoryCursor?
        repeat {
            let page = registry.calls(of: "u0", before: cursor, limit: 3)
            pages.append(page.map(\.id))
            cursor = page.count == 3 ? page.last.map(HistoryCursor.init) : nil
        } while cursor != nil
        #expect(pages == [["c7", "c6", "c5"], ["c4", "c3", "c2"], ["c1", "c0"]])
        let token = try #require(HistoryCursor(registry.calls["c4"]!).token as String?)
        #expect(HistoryCursor(token: token) == HistoryCursor(registry.calls["c4"]!))
        for bad in ["", "_c1", "1.5_", "x_c1", "1.5_c 1", "nan_c1", "inf_c1"] {
            #expect(HistoryCursor(token: bad) == nil, "\(bad)")
        }
        #expect(registry.calls(of: "u0", states: [.inviting], limit: 10).map(\.id) == ["c7"])
    }

    /// A store builds a registry from the calls an input needs; every input then decides exactly as the registry
    /// holding every call does.
    @Test func aRegistryOfTheNeededCallsDecidesAsTheWholeOne() throws {
        var generator = SplitMix64(seed: 7)
        var whole = CallRegistry()
        var nextID = 0
        for step in 0..<2000 {
            let now = t0 + Double(step)
            let input = RandomInputs.next(&generator, whole, nextID: &nextID)
            let needed = RandomInputs.needed(for: input, in: whole)
            var partial = CallRegistry(calls: needed.map(\.withoutTimeline))
            let fromWhole = Result { () throws(CallError) in try whole.apply(input, now: now) }
            let fromPartial = Result { () throws(CallError) in try partial.apply(input, now: now) }
            switch (fromWhole, fromPartial) {
            case (.success(let a), .success(let b)):
                #expect(a.map(\.call.withoutTimeline) == b.map(\.call.withoutTimeline), "step \(step): \(input)")
                #expect(a.map(\.recipients) == b.map(\.recipients))
                #expect(a.map(\.timelineEntry) == b.map(\.timelineEntry))
            case (.failure(let a), .failure(let b)):
                #expect(a == b, "step \(step): \(input)")
            default:
                Issue.record("step \(step): \(input): whole \(fromWhole), partial \(fromPartial)")
            }
        }
    }
}
