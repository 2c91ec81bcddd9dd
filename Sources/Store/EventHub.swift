import DequeModule
public import Foundation
import SwitchboardCore

/// Event ids, per-user backlogs and resume decisions, as a value: time is passed in, nothing does I/O.
///
/// The memory store keeps its events here; every store's resume goes through ``resume(after:page:device:limit:)``,
/// so a `Last-Event-ID` means the same on every store: the events the device missed, in order, or a resync when
/// some of them are gone.
public struct EventHub: Sendable {
    /// Events kept per user (the per-user bound of ``CallStore/events(for:after:limit:)`` pages).
    public let backlogSize: Int
    /// The highest id handed out.
    public private(set) var head: Int64
    /// Every event up to this id of a user no longer kept at all is gone.
    public private(set) var prunedThrough: Int64 = 0
    private var backlogs: [String: Backlog] = [:]

    private struct Backlog: Sendable {
        var events = Deque<StoredEvent>()
        /// The highest id of this user's events no longer kept.
        var evictedThrough: Int64
    }

    public init(backlogSize: Int, head: Int64 = 0) {
        self.backlogSize = backlogSize
        self.head = head
    }

    /// Gives each envelope the next id and keeps it.
    public mutating func append(_ envelopes: [Envelope], at now: Date) -> [StoredEvent] {
        envelopes.map { envelope in
            head += 1
            let stored = StoredEvent(id: head, at: now, envelope: envelope)
            var backlog = backlogs[envelope.user] ?? Backlog(evictedThrough: prunedThrough)
            backlog.events.append(stored)
            while backlog.events.count > backlogSize, let evicted = backlog.events.popFirst() {
                backlog.evictedThrough = evicted.id
            }
            backlogs[envelope.user] = backlog
            return stored
        }
    }

    /// `user`'s events after `id`, at most `limit`.
    public func page(for user: String, after id: Int64, limit: Int) -> EventPage {
        guard let backlog = backlogs[user] else {
            return EventPage(events: [], head: head, completeAfter: prunedThrough)
        }
        let events = backlog.events.lazy.filter { $0.id > id }.prefix(limit)
        return EventPage(events: Array(events), head: head, completeAfter: backlog.evictedThrough)
    }

    /// Forgets events stored before `cutoff`.
    public mutating func prune(before cutoff: Date) {
        for (user, var backlog) in backlogs {
            while let first = backlog.events.first, first.at < cutoff {
                backlog.evictedThrough = first.id
                backlog.events.removeFirst()
            }
            if backlog.events.isEmpty {
                prunedThrough = max(prunedThrough, backlog.evictedThrough)
                backlogs[user] = nil
            } else {
                backlogs[user] = backlog
            }
        }
    }

    /// What a stream that saw event `lastID` gets: the events for `device` in `page` (a page of at most `limit`
    /// events after `lastID`), or a resync when any may be missing: an id this store never handed out, events
    /// already forgotten, or more than `limit` of them.
    public static func resume(after lastID: Int64, page: EventPage, device: String, limit: Int) -> Resume {
        guard lastID >= 0, lastID <= page.head, lastID >= page.completeAfter, page.events.count < limit else {
            return .resync
        }
        return .replay(page.events.filter { $0.envelope.devices.includes(device) })
    }

    public enum Resume: Sendable, Hashable {
        case replay([StoredEvent])
        case resync
    }
}
