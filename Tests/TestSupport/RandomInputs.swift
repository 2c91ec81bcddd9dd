public import SwitchboardCore

/// Random registry inputs over a few users, so that busy, glare and multi-device races come up often.
public enum RandomInputs {
    public static let users = ["u0", "u1", "u2", "u3"]

    public static func next(_ generator: inout SplitMix64, _ registry: CallRegistry, nextID: inout Int) -> CallInput {
        let user = users[Int(generator.next() % 4)]
        let other = users[Int(generator.next() % 4)]
        let device = "d\(generator.next() % 2)"
        let existing = registry.calls.keys.sorted()
        let id = existing.isEmpty ? "none" : existing[Int(generator.next() % UInt64(existing.count))]
        switch generator.next() % 8 {
        case 0, 1:
            nextID += 1
            // Ids in a random order, so that glare's "lesser id" goes either way.
            return .invite(
                id: "c\(generator.next() % 1000)-\(nextID)", caller: user, device: device, callee: other,
                offer: nil, media: .direct)
        case 2: return .ring(id: id, user: user, device: device)
        case 3: return .accept(id: id, user: user, device: device, answer: nil)
        case 4: return .decline(id: id, user: user, device: device)
        case 5: return .hangup(id: id, user: user, device: device)
        case 6:
            return .signal(
                Signal(
                    callID: id, fromUser: user, fromDevice: device, kind: .candidate,
                    candidate: ICECandidate(
                        candidate: "candidate:1 1 udp 2122194687 192.0.2.1 9 typ host", sdpMid: "0",
                        sdpMLineIndex: 0)))
        default: return generator.next() % 2 == 0 ? .expire : .fail(id: id, failure: "ice_timeout")
        }
    }

    /// What a store loads for `input`: the call it names, and the pending and active calls of the input's users
    /// and (for invites and accepts) of the call's parties; for the timer, the pending calls.
    public static func needed(for input: CallInput, in registry: CallRegistry) -> [Call] {
        var users = Set(input.users)
        if let id = input.callID, let call = registry.calls[id], input.needsParties {
            users.formUnion([call.caller, call.callee])
        }
        if case .expire = input { return registry.calls.values.filter { $0.state.isPending } }
        return registry.calls.values.filter { call in
            call.id == input.callID
                || (call.state != .ended && (users.contains(call.caller) || users.contains(call.callee)))
        }
    }
}
