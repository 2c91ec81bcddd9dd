import SwitchboardCore

/// What a PostgreSQL node knows of the live calls without asking the database, and up to which event id that is
/// exact: a value, tested on its own.
///
/// Every committed change to a call comes with events, and event ids are handed out in commit order under one lock,
/// so "no event id was handed out after ``epoch``" means "no call changed since". The cache holds live (pending or
/// active) calls, and the users all of whose live calls it holds. A batch whose inputs need only those is decided
/// from here and committed in one round trip, by `switchboard_commit_cached`, which takes the same user locks as a
/// load and commits only if no event id was handed out after the epoch the decision was made on (nor exists a call
/// one of its invites creates); otherwise nothing is written and the batch loads as usual. A node that has the
/// database to itself thus saves the load's round trip on most batches; in a busy cluster, where other nodes'
/// events keep arriving, the cache mostly stands aside.
struct CallCache: Sendable {
    /// Every change up to this event id is reflected here; nil when unknown.
    private(set) var epoch: Int64?
    /// Live calls by id (without their timelines).
    private(set) var calls: [String: Call] = [:]
    /// Users all of whose live calls are in ``calls``.
    private(set) var users: Set<String> = []
    /// Users and calls kept at most: past it, the cache starts again from what later batches load. A live call
    /// keeps its offer (a browser's is several KiB), so 10,000 calls stay within tens of MiB.
    let capacity: Int

    init(capacity: Int = 10_000) {
        self.capacity = capacity
    }

    /// What a batch is decided on and locks when it comes from the cache.
    struct Plan: Sendable, Equatable {
        /// The event id the decision stands on.
        let epoch: Int64
        /// What a load would have returned: the calls the inputs name, and the live calls of their parties.
        let calls: [Call]
        /// The users whose locks a load would have taken, in no order.
        let keys: [String]
        /// The calls the batch's invites create: none may exist yet.
        let newIDs: [String]
    }

    /// `inputs` planned from the cache, or nil when it does not know all they need exactly: its epoch is unknown or
    /// behind `delivered` (another node committed since), an input expires calls (that reads every pending call),
    /// names a call that is not live here, or needs the live calls of a user it does not know.
    func plan(for inputs: [CallInput], delivered: Int64) -> Plan? {
        guard let epoch, delivered <= epoch else { return nil }
        var keys: Set<String> = []
        var partyKeys: Set<String> = []
        var named: [String: Call] = [:]
        var newIDs: [String] = []
        for input in inputs {
            if case .expire = input { return nil }
            if case .invite(let id, _, _, _, _, _, _) = input, calls[id] == nil {
                newIDs.append(id)
            } else if let id = input.callID {
                guard let call = calls[id] else { return nil }
                named[id] = call
                keys.formUnion([call.caller, call.callee])
                if input.needsParties { partyKeys.formUnion([call.caller, call.callee]) }
            }
            keys.formUnion(input.users)
            if input.needsParties { partyKeys.formUnion(input.users) }
        }
        guard partyKeys.isSubset(of: users) else { return nil }
        for call in calls.values where partyKeys.contains(call.caller) || partyKeys.contains(call.callee) {
            named[call.id] = call
        }
        return Plan(
            epoch: epoch, calls: named.values.sorted { $0.id < $1.id }, keys: keys.sorted(), newIDs: newIDs)
    }

    /// A batch of this node committed event ids `first...last`, having changed `changed`. A batch that loaded (and
    /// read `loadHead`, the last event id handed out, once it held its locks) passes what it loaded and the users
    /// all of whose live calls that was.
    ///
    /// The cache stays exact when no id was handed out between its epoch and `first`; when one was, what the batch
    /// loaded is still exact if no id was handed out between its load and its commit (`first == loadHead + 1`),
    /// and the cache starts again from that; otherwise it knows nothing.
    mutating func committed(
        first: Int64, last: Int64, changed: [Call], loaded: [Call] = [], complete: Set<String> = [],
        loadHead: Int64? = nil
    ) {
        if epoch != first - 1 {
            guard let loadHead, first == loadHead + 1 else {
                forget()
                return
            }
            calls = [:]
            users = []
        }
        for call in loaded + changed {
            calls[call.id] = call.state.isLive ? call.withoutTimeline : nil
        }
        users.formUnion(complete)
        epoch = last
        if users.count > capacity || calls.count > capacity {
            calls = [:]
            users = []
        }
    }

    /// Knows nothing: a commit failed, or other event ids came between.
    mutating func forget() {
        epoch = nil
        calls = [:]
        users = []
    }
}

extension CallState {
    /// Pending or active.
    var isLive: Bool { self != .ended }
}
