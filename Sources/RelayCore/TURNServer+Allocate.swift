import Crypto
public import STUN

extension TURNServer {
    // MARK: Allocate (RFC 8656 §7.2)

    mutating func handleAllocate(
        _ request: STUNMessage, _ identity: Identity, _ fiveTuple: FiveTuple, _ now: RelayTime
    ) -> [RelayAction] {
        if let id = table.id(for: fiveTuple), let existing = table[id] {
            if existing.allocateTransaction == request.transactionID {
                return [.sendToClient(existing.allocateResponse, to: fiveTuple)]
            }
            return reply(error(request, .allocationMismatch), identity, fiveTuple)
        }
        if let id = table.pendingID(for: fiveTuple) {
            if table.pending[id]?.transactionID == request.transactionID { return [.dropped(.allocationInProgress)] }
            return reply(error(request, .allocationMismatch), identity, fiveTuple)
        }
        guard let transport = try? request.requestedTransport else {
            return reply(error(request, .badRequest), identity, fiveTuple)
        }
        guard transport == 17 else {
            return reply(error(request, .unsupportedTransportProtocol), identity, fiveTuple)
        }
        let token: UInt64?
        let evenPort: Bool?
        do throws(STUNError) {
            token = try request.reservationToken
            evenPort = try request.evenPort
        } catch {
            return reply(self.error(request, .badRequest), identity, fiveTuple)
        }
        let requestsFamily = request.attribute(.requestedAddressFamily) != nil
        let requestsAdditional = request.attribute(.additionalAddressFamily) != nil
        // A reservation names its port and family already (RFC 8656 §7.2 step 7); a family is either requested or
        // added, not both (step 4); a port pair is reserved in one family, so not for a dual allocation.
        if token != nil && (evenPort != nil || requestsFamily || requestsAdditional)
            || requestsFamily && requestsAdditional || evenPort == true && requestsAdditional
        {
            return reply(error(request, .badRequest), identity, fiveTuple)
        }
        if let token { return claimReservation(token, request, identity, fiveTuple, now) }
        var family = AddressFamily.ipv4
        if requestsFamily {
            guard let requested = try? request.requestedAddressFamily else {
                return reply(error(request, .badRequest), identity, fiveTuple)
            }
            family = requested
        }
        guard let relayAddress = configuration.relayAddresses[family] else {
            return reply(error(request, .addressFamilyNotSupported), identity, fiveTuple)
        }
        // ADDITIONAL-ADDRESS-FAMILY may only add IPv6 to the IPv4 address (§18.11). A relay without IPv6 still
        // allocates the IPv4 one and says why not the other in ADDRESS-ERROR-CODE (§7.2 step 8).
        var additional: AdditionalRelay?
        var additionalRefusal: (family: AddressFamily, code: STUNErrorCode)?
        if requestsAdditional {
            guard (try? request.additionalAddressFamily) == .ipv6 else {
                return reply(error(request, .badRequest), identity, fiveTuple)
            }
            if let address = configuration.relayAddresses[.ipv6] {
                additional = AdditionalRelay(id: AllocationID(rawValue: 0), relayAddress: address)
            } else {
                additionalRefusal = (.ipv6, .addressFamilyNotSupported)
            }
        }
        // A reservation holds a port as an allocation does, so it counts against the user's quota and the total,
        // from the request that makes it until it is claimed (then as the allocation) or released. A dual
        // allocation is one allocation of the user's, holding two ports.
        let reserve = evenPort == true
        guard table.held(by: identity.user) + (reserve ? 2 : 1) <= configuration.maximumAllocationsPerUser else {
            return reply(error(request, .allocationQuotaReached), identity, fiveTuple)
        }
        guard table.portsHeld + (reserve ? 1 : 0) < configuration.maximumAllocations else {
            return reply(error(request, .insufficientCapacity), identity, fiveTuple)
        }
        // Room for the first family but not the second: the allocation is made with the first (§7.2: 508 in
        // ADDRESS-ERROR-CODE), not refused.
        if additional != nil && table.portsHeld + 1 >= configuration.maximumAllocations {
            additional = nil
            additionalRefusal = (.ipv6, .insufficientCapacity)
        }
        let id = table.newID()
        let reservation = reserve ? table.newID() : nil
        if let address = additional?.relayAddress {
            additional = AdditionalRelay(id: table.newID(), relayAddress: address)
        }
        let allocation = PendingAllocation(
            id: id, fiveTuple: fiveTuple, relayAddress: relayAddress, evenPort: evenPort != nil,
            reservation: reservation, reservedPort: nil, additional: additional, additionalRefusal: additionalRefusal,
            transactionID: request.transactionID, identity: identity,
            lifetime: grantedLifetime(requested: try? request.lifetime, identity, now))
        table.addPending(allocation, countInQuota: true)
        return [.openRelay(allocation)]
    }

    /// An Allocate with a RESERVATION-TOKEN: the reserved port becomes the allocation's relayed address, under the
    /// reservation's id (its socket is bound already). An unknown or expired token, or another user's, gets 508.
    private mutating func claimReservation(
        _ token: UInt64, _ request: STUNMessage, _ identity: Identity, _ fiveTuple: FiveTuple, _ now: RelayTime
    ) -> [RelayAction] {
        guard let reservation = table.claimReservation(token, by: identity.user, now: now) else {
            return reply(error(request, .insufficientCapacity), identity, fiveTuple)
        }
        let allocation = PendingAllocation(
            id: reservation.id, fiveTuple: fiveTuple, relayAddress: reservation.address.ip, evenPort: false,
            reservation: nil, reservedPort: reservation.address.port, additional: nil, additionalRefusal: nil,
            transactionID: request.transactionID, identity: identity,
            lifetime: grantedLifetime(requested: try? request.lifetime, identity, now))
        // The reservation was counted in the user's quota already: the allocation takes its place.
        table.addPending(allocation, countInQuota: false)
        return [.openRelay(allocation)]
    }

    /// The adapter bound the relay socket of a pending allocation at `relayedAddress` (and, for EVEN-PORT R = 1,
    /// the socket of its reservation at `reserved`, the next-higher port; for a dual allocation, the socket of its
    /// other family at `additional`, or nil if that one could not be bound).
    public mutating func relayOpened(
        _ id: AllocationID, at relayedAddress: TransportAddress, reserved: TransportAddress? = nil,
        additional: TransportAddress? = nil, now: RelayTime
    ) -> [RelayAction] {
        // An allocation that ended while its socket was being bound (its call ended, its connection closed): the
        // adapter closes the socket, and the second one of a dual allocation, which it has not registered yet.
        guard let request = table.takePending(id) else { return [.closeRelay(id)] }
        var relayed = [RelayedAddress(socket: id, address: relayedAddress)]
        var refusal = request.additionalRefusal
        if let second = request.additional {
            if let additional {
                relayed.append(RelayedAddress(socket: second.id, address: additional))
            } else {
                refusal = (second.relayAddress.family, .insufficientCapacity)
            }
        }
        var allocation = Allocation(
            id: id, fiveTuple: request.fiveTuple, identity: request.identity, relayed: relayed,
            createdAt: now, expiresAt: now + request.lifetime, allocateTransaction: request.transactionID)
        var attributes: [STUNAttribute] =
            relayed.map { .xorRelayedAddress($0.address, transactionID: request.transactionID) } + [
                .lifetime(UInt32(request.lifetime.relayMilliseconds / 1000)),
                .xorMappedAddress(request.fiveTuple.client, transactionID: request.transactionID),
            ]
        if let refusal { attributes.append(.addressErrorCode(family: refusal.family, refusal.code)) }
        if let reservation = request.reservation, let reserved {
            let token = reservationToken(for: reservation)
            table.addReservation(
                Reservation(
                    id: reservation, address: reserved, user: request.identity.user, call: request.identity.call,
                    expiresAt: now + configuration.reservationLifetime),
                token: token)
            attributes.append(.reservationToken(token))
        }
        if let software = configuration.software { attributes.append(.software(software)) }
        let success = STUNMessage(
            type: STUNMessageType(method: .allocate, class: .successResponse),
            transactionID: request.transactionID, attributes: attributes)
        allocation.allocateResponse = encode(success, key: request.identity)
        table.promote(request, to: allocation)
        return [.sendToClient(allocation.allocateResponse, to: request.fiveTuple)]
    }

    /// The adapter could not bind a relay socket (the port range is exhausted).
    public mutating func relayFailed(_ id: AllocationID) -> [RelayAction] {
        guard let request = table.pending[id] else { return [] }
        _ = table.removePending(id)
        let failure = STUNMessage(
            type: STUNMessageType(method: .allocate, class: .errorResponse), transactionID: request.transactionID,
            attributes: [.errorCode(.insufficientCapacity)])
        return [.sendToClient(encode(failure, key: request.identity), to: request.fiveTuple)]
    }

    /// An unguessable token naming reservation `id`: 8 bytes of an HMAC under the server's secret key.
    private func reservationToken(for id: AllocationID) -> UInt64 {
        let data = Array("reservation".utf8) + withUnsafeBytes(of: id.rawValue.bigEndian, Array.init)
        let mac = HMAC<SHA256>.authenticationCode(for: data, using: SymmetricKey(data: nonceKey))
        return Array(mac).prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// RFC 8656 §7.2 step 7: the requested lifetime if longer than the default, up to the maximum; never past the
    /// expiry of REST credentials.
    private func grantedLifetime(requested: UInt32?, _ identity: Identity, _ now: RelayTime) -> Duration {
        var lifetime = configuration.defaultLifetime
        if let requested, Duration.seconds(Int64(requested)) > lifetime {
            lifetime = min(.seconds(Int64(requested)), configuration.maximumLifetime)
        }
        if let expiry = identity.credentialExpiry { lifetime = min(lifetime, expiry - now) }
        return max(lifetime, .zero)
    }

    // MARK: Refresh (RFC 8656 §7.3)

    mutating func handleRefresh(
        _ request: STUNMessage, _ allocation: Allocation, _ identity: Identity, _ fiveTuple: FiveTuple,
        _ now: RelayTime
    ) -> [RelayAction] {
        var allocation = allocation
        let id = allocation.id
        var family: AddressFamily?
        if request.attribute(.requestedAddressFamily) != nil {
            guard let requested = try? request.requestedAddressFamily else {
                return reply(error(request, .badRequest), identity, fiveTuple)
            }
            if allocation.socket(for: requested) == nil {
                return reply(error(request, .peerAddressFamilyMismatch), identity, fiveTuple)
            }
            family = requested
        }
        let requested = try? request.lifetime
        if requested == 0 {
            // With REQUESTED-ADDRESS-FAMILY, only that family's relayed address of a dual allocation is deleted.
            let closed = (family.map { table.remove(id, family: $0) } ?? table.remove(id)).map {
                RelayAction.closeRelay($0)
            }
            return reply(response(request, attributes: [.lifetime(0)]), identity, fiveTuple) + closed
        }
        let lifetime = grantedLifetime(requested: requested, identity, now)
        allocation.expiresAt = now + lifetime
        table.update(allocation)
        return reply(
            response(request, attributes: [.lifetime(UInt32(lifetime.relayMilliseconds / 1000))]), identity,
            fiveTuple)
    }
}
