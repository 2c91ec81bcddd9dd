import Foundation
import Store
import SwitchboardAPI
import Synchronization

/// What one node asks of the node whose media endpoint holds a secure-relay call's legs: an answer or a
/// renegotiation that reached it, or the legs' state. It travels through the store's event bus as an envelope
/// addressed to that node (``MediaForwarding/address(of:)``), and so does the reply.
struct MediaRequest: Codable, Sendable {
    enum Operation: String, Codable, Sendable {
        /// The callee accepts with its answer.
        case accept
        /// A party's mid-call offer or answer.
        case offer, answer
        /// The legs' state, for `GET /v1/calls/{id}`.
        case legs
    }

    let id: String
    /// The node that waits for the reply.
    let from: String
    let operation: Operation
    let callID: String
    /// Who acts, as the asking node authenticated them.
    let user: String
    let device: String
    let sdp: String?
}

struct MediaReply: Codable, Sendable {
    struct Failure: Codable, Sendable {
        let code: String
        let message: String
    }

    let id: String
    var failure: Failure?
    var legs: [MediaLegJSON]?
}

/// The requests this node sent and waits on, by id: a reply may arrive before the sender starts waiting (the bus
/// delivers as soon as the store commits), and a node that never answers (it died) leaves its requester after a
/// timeout.
final class MediaForwarding: Sendable {
    private enum Slot {
        case sent
        case answered(MediaReply)
        case waiting(CheckedContinuation<MediaReply?, Never>)
    }

    private let slots = Mutex<[String: Slot]>([:])

    /// The envelope user of a node's messages: no user id can contain `@`.
    static func address(of node: String) -> String { "@node:" + node }

    static let requestName = "media.request"
    static let replyName = "media.reply"

    /// Call before the request goes out.
    func sent(_ id: String) {
        slots.withLock { $0[id] = .sent }
    }

    /// A reply arrived: it wakes its requester, or waits for it.
    func answered(_ reply: MediaReply) {
        let waiting = slots.withLock { slots -> CheckedContinuation<MediaReply?, Never>? in
            switch slots[reply.id] {
            case .sent:
                slots[reply.id] = .answered(reply)
                return nil
            case .waiting(let continuation):
                slots[reply.id] = nil
                return continuation
            case .answered, nil:
                return nil
            }
        }
        waiting?.resume(returning: reply)
    }

    /// The reply to request `id`, or nil when none came within `timeout` (or the request was given up).
    func reply(to id: String, timeout: Duration) async -> MediaReply? {
        await withCheckedContinuation { continuation in
            let ready = slots.withLock { slots -> MediaReply?? in
                switch slots[id] {
                case .answered(let reply):
                    slots[id] = nil
                    return .some(reply)
                case .sent:
                    slots[id] = .waiting(continuation)
                    return .none
                case .waiting, nil:
                    return .some(nil)
                }
            }
            if let ready {
                continuation.resume(returning: ready)
                return
            }
            Task { [weak self] in
                try? await Task.sleep(for: timeout)
                self?.giveUp(id)
            }
        }
    }

    /// Forgets request `id`; its requester, if waiting, gets nil.
    func giveUp(_ id: String) {
        let waiting = slots.withLock { slots -> CheckedContinuation<MediaReply?, Never>? in
            guard case .waiting(let continuation) = slots.removeValue(forKey: id) else { return nil }
            return continuation
        }
        waiting?.resume(returning: nil)
    }
}
