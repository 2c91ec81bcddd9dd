import STUN

/// The allocation table (RFC 8656 §2.2) and the indexes that must stay in step with it: live allocations by id
/// and by 5-tuple, allocations whose relay socket is being bound, reserved ports (EVEN-PORT R = 1), and how many of
/// those each user holds. Every change goes through a method here, so no caller can update one index and forget
/// another; each removal says which relay sockets the adapter must close.
///
/// A user's count (the per-user quota) covers their live and pending allocations and their reservations: a
/// reservation is counted from the moment it is made until it is claimed (then as the allocation it becomes) or
/// released.
struct AllocationTable: Sendable {
    private(set) var allocations: [AllocationID: Allocation] = [:]
    private var byFiveTuple: [FiveTuple: AllocationID] = [:]
    /// The allocation of each second relay socket of a dual allocation (a first socket has its allocation's id).
    private var bySocket: [AllocationID: AllocationID] = [:]
    /// Relayed addresses of live allocations (two for a dual one until one family is deleted).
    private var liveRelayedAddresses = 0
    private(set) var pending: [AllocationID: PendingAllocation] = [:]
    private var pendingByFiveTuple: [FiveTuple: AllocationID] = [:]
    private(set) var reservations: [UInt64: Reservation] = [:]
    private var perUser: [String: Int] = [:]
    private var nextID: UInt64 = 1

    // MARK: Looking up

    var count: Int { allocations.count }
    var permissionCount: Int { allocations.values.reduce(0) { $0 + $1.permissions.count } }
    var channelCount: Int { allocations.values.reduce(0) { $0 + $1.channels.count } }

    /// The live allocation of a 5-tuple.
    func id(for fiveTuple: FiveTuple) -> AllocationID? { byFiveTuple[fiveTuple] }

    /// The live allocation whose relay socket is `socket`.
    func id(forSocket socket: AllocationID) -> AllocationID { bySocket[socket] ?? socket }

    /// The allocation of a 5-tuple whose relay socket is being bound.
    func pendingID(for fiveTuple: FiveTuple) -> AllocationID? { pendingByFiveTuple[fiveTuple] }

    /// A live allocation, to read. One is added by ``promote(_:to:)``, changed by ``modify(_:_:)`` or
    /// ``update(_:)`` and removed by ``remove(_:)``, which keep the indexes.
    subscript(id: AllocationID) -> Allocation? { allocations[id] }

    /// Changes a live allocation in place (through the dictionary's own accessor: a copy out and back would
    /// retain all of the allocation, once per relayed packet); nil when there is none. `body` cannot add or remove
    /// one, and its id and 5-tuple are constants.
    @discardableResult
    mutating func modify<Result>(_ id: AllocationID, _ body: (inout Allocation) -> Result) -> Result? {
        allocations[id]?.apply(body)
    }

    /// Replaces a live allocation with a changed copy of it (its id and 5-tuple are constant); one that ended in
    /// the meantime stays ended.
    mutating func update(_ allocation: Allocation) {
        guard allocations[allocation.id] != nil else { return }
        allocations[allocation.id] = allocation
    }

    /// How many allocations, pending allocations and reservations `user` holds.
    func held(by user: String) -> Int { perUser[user, default: 0] }

    /// Relayed ports held in all: live allocations' relayed addresses (two for a dual one), pending allocations
    /// and the second sockets and reservations they will make, and reservations.
    var portsHeld: Int {
        let pendingExtra = pending.values.reduce(0) {
            $0 + ($1.reservation == nil ? 0 : 1) + ($1.additional == nil ? 0 : 1)
        }
        return liveRelayedAddresses + pending.count + pendingExtra + reservations.count
    }

    /// A fresh id, never given out before in this table.
    mutating func newID() -> AllocationID {
        defer { nextID += 1 }
        return AllocationID(rawValue: nextID)
    }

    // MARK: Adding

    /// An Allocate waits for its relay socket. `countInQuota` is false when it claims a reservation, which the
    /// user's count holds already.
    mutating func addPending(_ request: PendingAllocation, countInQuota: Bool) {
        pending[request.id] = request
        pendingByFiveTuple[request.fiveTuple] = request.id
        if countInQuota { perUser[request.identity.user, default: 0] += 1 }
    }

    /// The relay socket of a pending allocation is bound: it leaves the pending index (its count stays) so that
    /// the caller can make it live with ``promote(_:to:)``.
    mutating func takePending(_ id: AllocationID) -> PendingAllocation? {
        guard let request = pending.removeValue(forKey: id) else { return nil }
        pendingByFiveTuple[request.fiveTuple] = nil
        return request
    }

    /// A taken pending allocation becomes live.
    mutating func promote(_ request: PendingAllocation, to allocation: Allocation) {
        allocations[allocation.id] = allocation
        byFiveTuple[request.fiveTuple] = allocation.id
        for relayed in allocation.relayed where relayed.socket != allocation.id {
            bySocket[relayed.socket] = allocation.id
        }
        liveRelayedAddresses += allocation.relayed.count
    }

    /// Holds a reserved port under `token`, counted for its user.
    mutating func addReservation(_ reservation: Reservation, token: UInt64) {
        reservations[token] = reservation
        perUser[reservation.user, default: 0] += 1
    }

    /// The reservation `token` names, claimed by `user`: it leaves the table with its count, which the Allocate
    /// claiming it takes over. Nil for an unknown or expired token, or another user's.
    mutating func claimReservation(_ token: UInt64, by user: String, now: RelayTime) -> Reservation? {
        guard let reservation = reservations[token], reservation.expiresAt > now, reservation.user == user else {
            return nil
        }
        reservations[token] = nil
        return reservation
    }

    // MARK: Removing (each returns the relay sockets to close)

    /// Ends a live allocation.
    @discardableResult
    mutating func remove(_ id: AllocationID) -> [AllocationID] {
        guard let allocation = allocations.removeValue(forKey: id) else { return [] }
        byFiveTuple[allocation.fiveTuple] = nil
        for relayed in allocation.relayed { bySocket[relayed.socket] = nil }
        liveRelayedAddresses -= allocation.relayed.count
        releaseQuota(allocation.identity.user)
        return allocation.relayed.map(\.socket)
    }

    /// Deletes the relayed address of `family` from a dual allocation (RFC 8656 §7.3), or the allocation if that
    /// was its only one.
    mutating func remove(_ id: AllocationID, family: AddressFamily) -> [AllocationID] {
        guard let allocation = allocations[id] else { return [] }
        guard allocation.relayed.count > 1 else { return remove(id) }
        guard let socket = allocation.socket(for: family) else { return [] }
        allocations[id]?.relayed.removeAll { $0.socket == socket }
        // Its peers are gone with it: their permissions and channels would only hold places and numbers.
        allocations[id]?.permissions = allocation.permissions.filter { $0.key.family != family }
        allocations[id]?.channels = allocation.channels.filter { $0.value.peer.ip.family != family }
        allocations[id]?.channelByPeer = allocation.channelByPeer.filter { $0.key.ip.family != family }
        bySocket[socket] = nil
        liveRelayedAddresses -= 1
        return [socket]
    }

    /// Forgets an allocation still being made: its socket closes, and so does the one of the reservation it makes.
    mutating func removePending(_ id: AllocationID) -> [AllocationID] {
        guard let request = takePending(id) else { return [] }
        releaseQuota(request.identity.user)
        return [id] + (request.reservation.map { [$0] } ?? []) + (request.additional.map { [$0.id] } ?? [])
    }

    /// Releases the port a reservation holds.
    private mutating func removeReservation(_ token: UInt64) -> [AllocationID] {
        guard let reservation = reservations.removeValue(forKey: token) else { return [] }
        releaseQuota(reservation.user)
        return [reservation.id]
    }

    /// The allocation of a 5-tuple ends, live or being made (its client's connection closed).
    mutating func remove(fiveTuple: FiveTuple) -> [AllocationID] {
        if let id = byFiveTuple[fiveTuple] { return remove(id) }
        if let id = pendingByFiveTuple[fiveTuple] { return removePending(id) }
        return []
    }

    /// Everything made with credentials scoped to `call`.
    mutating func remove(call: String) -> [AllocationID] {
        var closed: [AllocationID] = []
        for (id, allocation) in allocations where allocation.identity.call == call { closed += remove(id) }
        for (id, request) in pending where request.identity.call == call { closed += removePending(id) }
        for (token, reservation) in reservations where reservation.call == call { closed += removeReservation(token) }
        return closed
    }

    /// Ends allocations and reservations past their lifetime, forgets expired permissions, and releases channels
    /// whose reuse delay (after their expiry) has run.
    mutating func expire(now: RelayTime, channelReuseDelay delay: Duration) -> [AllocationID] {
        var closed: [AllocationID] = []
        for (id, allocation) in allocations {
            if allocation.expiresAt <= now {
                closed += remove(id)
                continue
            }
            // Most ticks expire nothing: look before rebuilding anything.
            let stalePermissions = allocation.permissions.values.contains { $0.expiresAt <= now }
            let staleChannels = allocation.channels.values.contains { $0.expiresAt + delay <= now }
            guard stalePermissions || staleChannels else { continue }
            var pruned = allocation
            if stalePermissions { pruned.permissions = pruned.permissions.filter { $0.value.expiresAt > now } }
            for (channel, bound) in pruned.channels where bound.expiresAt + delay <= now {
                pruned.channels[channel] = nil
                pruned.channelByPeer[bound.peer] = nil
            }
            allocations[id] = pruned
        }
        for (token, reservation) in reservations where reservation.expiresAt <= now {
            closed += removeReservation(token)
        }
        return closed
    }

    /// Empties the table (shutdown).
    mutating func removeAll() -> [AllocationID] {
        let ids =
            allocations.values.flatMap { $0.relayed.map(\.socket) } + Array(pending.keys)
            + pending.values.compactMap(\.reservation) + pending.values.compactMap(\.additional?.id)
            + reservations.values.map(\.id)
        let next = nextID
        self = AllocationTable()
        nextID = next
        return ids
    }

    private mutating func releaseQuota(_ user: String) {
        let remaining = perUser[user, default: 1] - 1
        perUser[user] = remaining > 0 ? remaining : nil
    }
}

extension Allocation {
    /// `body` on this allocation where it is (for ``AllocationTable/modify(_:_:)``'s optional chaining).
    fileprivate mutating func apply<Result>(_ body: (inout Allocation) -> Result) -> Result { body(&self) }
}
