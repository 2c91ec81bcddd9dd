import STUN
import Testing

@testable import RelayCore

/// The table on its own: whatever path an allocation takes (pending, live, reserved, claimed, ended by its call or
/// its connection or the clock), the indexes and the per-user counts stay in step, and each removal names exactly
/// the relay sockets to close.
@Suite struct AllocationTableTests {
    static func tuple(_ port: UInt16) -> FiveTuple {
        FiveTuple(client: TransportAddress(ip: IPAddress("203.0.113.5")!, port: port), server: serverAddress)
    }

    static func identity(_ user: String, call: String? = nil) -> Identity {
        Identity(
            username: user, user: user, key: [], algorithm: .hmacSHA1, credentialExpiry: nil, call: call)
    }

    /// A pending allocation of `user` on client port `port`, optionally making a reservation.
    static func pending(
        _ table: inout AllocationTable, _ user: String, port: UInt16, reserve: Bool = false, call: String? = nil,
        dual: Bool = false
    ) -> PendingAllocation {
        let id = table.newID()
        let request = PendingAllocation(
            id: id, fiveTuple: tuple(port), relayAddress: relayIP, evenPort: reserve,
            reservation: reserve ? table.newID() : nil, reservedPort: nil,
            additional: dual ? AdditionalRelay(id: table.newID(), relayAddress: IPAddress("2001:db8::10")!) : nil,
            additionalRefusal: nil, transactionID: .random(), identity: identity(user, call: call),
            lifetime: .seconds(600))
        table.addPending(request, countInQuota: true)
        return request
    }

    /// Holds port `port` for alice under `id` (30 s), as ``TURNServer/relayOpened(_:at:reserved:now:)`` does.
    static func reserve(
        _ table: inout AllocationTable, _ id: AllocationID, port: UInt16, call: String? = nil, token: UInt64
    ) {
        table.addReservation(
            Reservation(
                id: id, address: TransportAddress(ip: relayIP, port: port), user: "alice", call: call,
                expiresAt: start + .seconds(30)),
            token: token)
    }

    /// Makes `request` live, as ``TURNServer/relayOpened(_:at:reserved:now:)`` does.
    static func open(_ table: inout AllocationTable, _ request: PendingAllocation, now: RelayTime = start) {
        let taken = table.takePending(request.id)!
        let second = taken.additional.map {
            RelayedAddress(socket: $0.id, address: TransportAddress(ip: $0.relayAddress, port: 50_001))
        }
        table.promote(
            taken,
            to: Allocation(
                id: taken.id, fiveTuple: taken.fiveTuple, identity: taken.identity,
                relayed: [RelayedAddress(socket: taken.id, address: TransportAddress(ip: relayIP, port: 50_000))]
                    + (second.map { [$0] } ?? []),
                createdAt: now, expiresAt: now + taken.lifetime, allocateTransaction: taken.transactionID))
    }

    @Test func aDualAllocationHoldsTwoPortsUnderOnePlaceAndClosesBothSockets() throws {
        var table = AllocationTable()
        let request = Self.pending(&table, "alice", port: 1, dual: true)
        let second = try #require(request.additional?.id)
        #expect(table.held(by: "alice") == 1 && table.portsHeld == 2)
        #expect(table.removePending(request.id) == [request.id, second])
        #expect(table.held(by: "alice") == 0 && table.portsHeld == 0)

        let live = Self.pending(&table, "alice", port: 2, dual: true)
        let liveSecond = try #require(live.additional?.id)
        Self.open(&table, live)
        #expect(table.held(by: "alice") == 1 && table.portsHeld == 2)
        #expect(table.id(forSocket: liveSecond) == live.id && table.id(forSocket: live.id) == live.id)
        #expect(Set(table.removeAll()) == [live.id, liveSecond])

        // Deleting one family keeps the allocation on the other; deleting the last ends it.
        let third = Self.pending(&table, "alice", port: 3, dual: true)
        let thirdSecond = try #require(third.additional?.id)
        Self.open(&table, third)
        #expect(table.remove(third.id, family: .ipv4) == [third.id])
        #expect(table[third.id]?.relayed.map(\.socket) == [thirdSecond])
        #expect(table.id(forSocket: thirdSecond) == third.id && table.portsHeld == 1)
        #expect(table.remove(third.id, family: .ipv6) == [thirdSecond])
        #expect(table[third.id] == nil && table.held(by: "alice") == 0 && table.portsHeld == 0)
    }

    @Test func anAllocationIsCountedOnceFromPendingToLiveAndReleasedWhenItEnds() {
        var table = AllocationTable()
        let request = Self.pending(&table, "alice", port: 1)
        #expect(table.pendingID(for: Self.tuple(1)) == request.id)
        #expect(table.id(for: Self.tuple(1)) == nil)
        #expect(table.held(by: "alice") == 1)
        #expect(table.portsHeld == 1)
        Self.open(&table, request)
        #expect(table.pendingID(for: Self.tuple(1)) == nil)
        #expect(table.id(for: Self.tuple(1)) == request.id)
        #expect(table.held(by: "alice") == 1)
        #expect(table.count == 1)
        #expect(table.remove(request.id) == [request.id])
        #expect(table.id(for: Self.tuple(1)) == nil)
        #expect(table.held(by: "alice") == 0)
        #expect(table.portsHeld == 0)
        #expect(table.remove(request.id) == [])
    }

    @Test func aPendingPairIsTwoPortsAndForgettingItClosesBoth() {
        var table = AllocationTable()
        let request = Self.pending(&table, "alice", port: 1, reserve: true)
        #expect(table.portsHeld == 2)
        #expect(table.remove(fiveTuple: Self.tuple(1)) == [request.id, request.reservation!])
        #expect(table.held(by: "alice") == 0)
        #expect(table.portsHeld == 0)
        #expect(table.pendingID(for: Self.tuple(1)) == nil)
    }

    @Test func aReservationIsClaimedOnlyByItsUserAndOnlyOnceWithoutCountingTwice() throws {
        var table = AllocationTable()
        let request = Self.pending(&table, "alice", port: 1, reserve: true)
        Self.open(&table, request)
        let reserved = request.reservation!
        Self.reserve(&table, reserved, port: 50_001, token: 7)
        #expect(table.held(by: "alice") == 2)
        #expect(table.claimReservation(7, by: "bob", now: start) == nil)
        #expect(table.claimReservation(8, by: "alice", now: start) == nil)
        #expect(table.claimReservation(7, by: "alice", now: start + .seconds(30)) == nil)
        let claim7 = table.claimReservation(7, by: "alice", now: start + .seconds(1))
        let claimed = try #require(claim7)
        #expect(claimed.id == reserved)
        #expect(table.claimReservation(7, by: "alice", now: start + .seconds(1)) == nil)
        // The count moves to the Allocate that claims it (not counted again), and leaves with it.
        let claim = PendingAllocation(
            id: claimed.id, fiveTuple: Self.tuple(2), relayAddress: relayIP, evenPort: false, reservation: nil,
            reservedPort: claimed.address.port, additional: nil, additionalRefusal: nil, transactionID: .random(),
            identity: Self.identity("alice"),
            lifetime: .seconds(600))
        table.addPending(claim, countInQuota: false)
        #expect(table.held(by: "alice") == 2)
        Self.open(&table, claim)
        #expect(table.held(by: "alice") == 2)
        #expect(table.remove(fiveTuple: Self.tuple(2)) == [reserved])
        #expect(table.held(by: "alice") == 1)
    }

    @Test func anUnclaimedReservationIsReleasedAtItsExpiry() {
        var table = AllocationTable()
        let reserved = table.newID()
        Self.reserve(&table, reserved, port: 50_001, token: 7)
        #expect(table.expire(now: start + .seconds(29), channelReuseDelay: .seconds(300)) == [])
        #expect(table.held(by: "alice") == 1)
        #expect(table.expire(now: start + .seconds(30), channelReuseDelay: .seconds(300)) == [reserved])
        #expect(table.held(by: "alice") == 0)
        #expect(table.portsHeld == 0)
    }

    @Test func aCallsEndRemovesItsLiveAndPendingAllocationsAndReservationsAndNothingElse() {
        var table = AllocationTable()
        let live = Self.pending(&table, "alice", port: 1, call: "c1")
        Self.open(&table, live)
        let waiting = Self.pending(&table, "alice", port: 2, reserve: true, call: "c1")
        let other = Self.pending(&table, "alice", port: 3, call: "c2")
        Self.open(&table, other)
        let plain = Self.pending(&table, "bob", port: 4)
        Self.open(&table, plain)
        let reservation = table.newID()
        Self.reserve(&table, reservation, port: 50_003, call: "c1", token: 9)
        let closed = Set(table.remove(call: "c1"))
        #expect(closed == [live.id, waiting.id, waiting.reservation!, reservation])
        #expect(table.id(for: Self.tuple(3)) == other.id)
        #expect(table.id(for: Self.tuple(4)) == plain.id)
        #expect(table.held(by: "alice") == 1)
        #expect(table.held(by: "bob") == 1)
        #expect(table.portsHeld == 2)
    }

    @Test func inPlaceChangesStickAndAnEndedAllocationStaysEnded() {
        var table = AllocationTable()
        let request = Self.pending(&table, "alice", port: 1)
        Self.open(&table, request)
        #expect(table.modify(request.id) { $0.packetsToPeers += 3 } != nil)
        #expect(table[request.id]?.packetsToPeers == 3)
        var copy = table[request.id]!
        copy.expiresAt = start + .seconds(1200)
        table.remove(request.id)
        table.update(copy)
        #expect(table.modify(request.id) { $0.packetsToPeers += 1 } == nil)
        #expect(table[request.id] == nil)
        #expect(table.count == 0)
    }

    @Test func removingEverythingNamesEverySocketAndIdsAreNeverReused() {
        var table = AllocationTable()
        let live = Self.pending(&table, "alice", port: 1)
        Self.open(&table, live)
        let waiting = Self.pending(&table, "bob", port: 2, reserve: true)
        let reserved = table.newID()
        Self.reserve(&table, reserved, port: 50_003, token: 9)
        #expect(Set(table.removeAll()) == [live.id, waiting.id, waiting.reservation!, reserved])
        #expect(table.held(by: "alice") == 0)
        #expect(table.held(by: "bob") == 0)
        #expect(table.portsHeld == 0)
        #expect(table.newID().rawValue > reserved.rawValue)
    }
}
