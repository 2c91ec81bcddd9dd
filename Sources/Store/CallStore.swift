public import Foundation
public import SwitchboardCore

/// Where calls, their timelines and the events to deliver live: the one source of truth of the signaling plane.
///
/// A transition (``apply(_:now:)``) loads what its input needs, decides in the pure ``CallRegistry``, and commits
/// the changed calls, their timeline lines and the events' envelopes in one transaction; after the commit, and in
/// commit order, the stored events go out on the store's ``EventBus``. Every failure of the database itself is a
/// ``CallError`` with code ``CallError/Code/storeUnavailable``, and changes nothing.
public protocol CallStore: Sendable {
    /// The bus this store publishes committed events on.
    var bus: any EventBus { get }

    /// `memory`, `sqlite` or `postgres`, for `/healthz`.
    var kind: String { get }

    /// Whether several nodes may share this store (PostgreSQL): then only a node's own secure-relay calls are its
    /// to end when it starts, since the others' media sessions still run elsewhere.
    var isShared: Bool { get }

    /// Runs one input as a transaction.
    func apply(_ input: CallInput, now: Date) async throws(CallError) -> Applied

    /// The call `id` with its timeline, if it exists.
    func call(_ id: String) async throws(CallError) -> Call?

    /// Calls of `user` (every call when nil), newest first: only `states` if given, only older than `before`,
    /// at most `limit`. Without timelines.
    func calls(of user: String?, states: Set<CallState>?, before: HistoryCursor?, limit: Int) async throws(CallError)
        -> [Call]

    /// Pending calls to `callee`, oldest first.
    func pendingInvites(to callee: String) async throws(CallError) -> [Call]

    /// The earliest ring deadline of a pending call.
    func nextDeadline() async throws(CallError) -> Date?

    /// How many calls are in each state.
    func countsByState() async throws(CallError) -> [CallState: Int]

    /// Stored events of `user` after event `id`, oldest first, at most `limit`.
    func events(for user: String, after id: Int64, limit: Int) async throws(CallError) -> EventPage

    /// Stores events that no transition made (the pending invites a device gets when it connects) and publishes
    /// them.
    func append(_ envelopes: [Envelope], now: Date) async throws(CallError) -> [StoredEvent]

    /// Keeps a stream ticket (by the hash of its secret) until `expires`: any node of a cluster can redeem it.
    func storeTicket(_ hash: String, _ payload: [UInt8], expires: Date) async throws(CallError)

    /// Takes a ticket: the payload once, before it expires; nil afterwards.
    func redeemTicket(_ hash: String, now: Date) async throws(CallError) -> [UInt8]?

    /// Forgets events older than `eventsBefore`, calls that ended before `callsEndedBefore`, and tickets that
    /// expired before `ticketsExpiredBefore`.
    func prune(eventsBefore: Date, callsEndedBefore: Date, ticketsExpiredBefore: Date) async throws(CallError)

    /// Succeeds when the store can serve requests.
    func check() async throws(CallError)
}

/// What a transition did: the call it was about (nil for a timer's input), its events, and the stored events
/// made from them.
public struct Applied: Sendable {
    public var call: Call?
    public var events: [CallEvent]
    public var stored: [StoredEvent]

    public init(call: Call?, events: [CallEvent], stored: [StoredEvent]) {
        self.call = call
        self.events = events
        self.stored = stored
    }
}

/// One event as a store keeps it for delivery: an encoded SSE payload for some devices of one user, or for the
/// admins watching every call (``watchers``).
public struct Envelope: Sendable, Hashable {
    /// The user name of the envelopes for admin watchers; no user id can be `*`.
    public static let watchers = "*"

    public let user: String
    public let devices: Delivery.Devices
    /// The SSE event name.
    public let name: String
    public let callID: String
    /// The SSE `data:` payload (JSON, one line).
    public let data: [UInt8]

    public init(user: String, devices: Delivery.Devices, name: String, callID: String, data: [UInt8]) {
        self.user = user
        self.devices = devices
        self.name = name
        self.callID = callID
        self.data = data
    }
}

/// An envelope with its durable id: ids grow in commit order and are never reused.
public struct StoredEvent: Sendable, Hashable {
    public let id: Int64
    public let at: Date
    public let envelope: Envelope

    public init(id: Int64, at: Date, envelope: Envelope) {
        self.id = id
        self.at = at
        self.envelope = envelope
    }
}

/// A user's stored events after some id, with what the store can vouch for.
public struct EventPage: Sendable, Hashable {
    /// Oldest first.
    public var events: [StoredEvent]
    /// The highest event id the store has handed out.
    public var head: Int64
    /// Events of this user after this id are all still stored: a resume from before it has lost some.
    public var completeAfter: Int64

    public init(events: [StoredEvent], head: Int64, completeAfter: Int64) {
        self.events = events
        self.head = head
        self.completeAfter = completeAfter
    }
}

/// Turns a transition's events into envelopes; the server knows the wire format, the store does not.
public typealias EnvelopeEncoder = @Sendable (CallEvent) -> [Envelope]

extension Delivery.Devices {
    /// The text form a store keeps: `all`, `only:DEVICE`, `except:DEVICE`.
    public var storedForm: String {
        switch self {
        case .all: "all"
        case .only(let device): "only:" + device
        case .allExcept(let device): "except:" + device
        }
    }

    public init?(storedForm: String) {
        if storedForm == "all" {
            self = .all
        } else if storedForm.hasPrefix("only:") {
            self = .only(String(storedForm.dropFirst(5)))
        } else if storedForm.hasPrefix("except:") {
            self = .allExcept(String(storedForm.dropFirst(7)))
        } else {
            return nil
        }
    }
}

extension CallError {
    /// The store's database failed (what failed is for the log, never for clients).
    public static let storeUnavailable = CallError(.storeUnavailable, "the call store is unavailable; try again")
}
