import Crypto
public import STUN

/// What the adapter must do after the core took an input.
public enum RelayAction: Sendable {
    /// Send `bytes` from the server socket `to.server` to the client `to.client`.
    case sendToClient([UInt8], to: FiveTuple)
    /// Bind a relay socket for this allocation, then call ``TURNServer/relayOpened(_:at:now:)`` or
    /// ``TURNServer/relayFailed(_:)``.
    case openRelay(PendingAllocation)
    /// The allocation ended: close its relay socket.
    case closeRelay(AllocationID)
    /// Send `payload` from the allocation's relay socket to `peer` (a Send indication).
    case sendToPeer(AllocationID, payload: [UInt8], peer: TransportAddress)
    /// A datagram was dropped; count it.
    case dropped(RelayDropReason)
}

/// Why the relay dropped a datagram (a metrics label).
public enum RelayDropReason: String, Sendable, Hashable, CaseIterable {
    /// Not a STUN message or ChannelData, or a STUN message that does not parse.
    case malformed
    /// A source over the unauthenticated request rate.
    case rateLimited = "rate_limited"
    /// Data for a 5-tuple or relay socket with no allocation.
    case noAllocation = "no_allocation"
    /// Data to or from a peer without a permission.
    case noPermission = "no_permission"
    /// ChannelData on a channel that is not bound.
    case noChannel = "no_channel"
    /// A STUN indication or response the server does not act on.
    case unexpectedMessage = "unexpected_message"
    /// An Allocate retransmitted while its relay socket is being bound.
    case allocationInProgress = "allocation_in_progress"
    /// Data to a port of the relay's own address that is not a relayed address.
    case forbiddenPeer = "forbidden_peer"
    /// A datagram that filled its whole receive slot and may have been cut short.
    case truncated
    /// The socket's send buffer is full.
    case congested
    /// The allocation's relay socket is gone.
    case noRelaySocket = "no_relay_socket"
}

/// Where the payload of a client's ChannelData goes.
public enum ClientForward: Sendable, Equatable {
    case toPeer(AllocationID, TransportAddress)
    case drop(RelayDropReason)
}

/// How a datagram from a peer reaches the client.
public enum PeerForward: Sendable, Equatable {
    /// Wrap it as ChannelData on this channel.
    case channelData(UInt16, to: FiveTuple)
    /// Wrap it as a Data indication (no channel bound to the peer).
    case dataIndication(to: FiveTuple)
    case drop(RelayDropReason)
}

/// A TURN server's state (RFC 8656 over UDP) as a pure state machine: datagrams and time go in, actions come out.
///
/// It answers Binding (RFC 8489) and the TURN methods Allocate, Refresh, CreatePermission and ChannelBind with
/// long-term credentials (static users, or TURN REST API credentials verified statelessly with the shared secret),
/// keeps the 5-tuple allocation table with permissions and channel bindings, decides where relayed data goes, and
/// expires everything on the clock passed in. No sockets, no timers: the adapter binds relay sockets when asked,
/// calls ``expire(now:)`` periodically, and carries out every ``RelayAction``.
///
/// NONCEs are stateless: `hex(expiry) ‖ hex(HMAC-SHA256(nonceKey, expiry ‖ client address))[0..<24]`, so a flood
/// of unauthenticated requests allocates nothing (and is rate limited per source IP).
public struct TURNServer: Sendable {
    public var configuration: RelayConfiguration
    private let nonceKey: [UInt8]
    private var allocations: [AllocationID: Allocation] = [:]
    private var byFiveTuple: [FiveTuple: AllocationID] = [:]
    private var pending: [AllocationID: PendingAllocation] = [:]
    private var pendingByFiveTuple: [FiveTuple: AllocationID] = [:]
    private var reservations: [UInt64: Reservation] = [:]
    /// Calls that ended, and until when their call-scoped credentials are refused.
    private var endedCalls: [String: RelayTime] = [:]
    private var perUser: [String: Int] = [:]
    private var nextID: UInt64 = 1
    private var limiter: SourceRateLimiter

    public init(configuration: RelayConfiguration, nonceKey: [UInt8]? = nil) {
        self.configuration = configuration
        self.nonceKey = nonceKey ?? SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
        limiter = SourceRateLimiter(rate: configuration.unauthenticatedRate, burst: configuration.unauthenticatedBurst)
    }

    /// Live allocations (pending ones not counted).
    public var allocationCount: Int { allocations.count }
    public var permissionCount: Int { allocations.values.reduce(0) { $0 + $1.permissions.count } }
    public var channelCount: Int { allocations.values.reduce(0) { $0 + $1.channels.count } }

    /// The allocation a 5-tuple has, if any.
    public func allocation(for fiveTuple: FiveTuple) -> AllocationID? { byFiveTuple[fiveTuple] }

    /// Whether a 5-tuple has an allocation, or one being made.
    public func hasAllocation(for fiveTuple: FiveTuple) -> Bool {
        byFiveTuple[fiveTuple] != nil || pendingByFiveTuple[fiveTuple] != nil
    }

    // MARK: STUN on the server port

    /// Takes one STUN datagram a client sent to the server socket `fiveTuple.server`.
    public mutating func receive(_ datagram: [UInt8], from fiveTuple: FiveTuple, now: RelayTime) -> [RelayAction] {
        guard let message = try? STUNMessage(decoding: datagram) else { return [.dropped(.malformed)] }
        switch message.type.messageClass {
        case .request:
            return handleRequest(message, from: fiveTuple, now: now)
        case .indication where message.type.method == .send:
            return [handleSend(message, from: fiveTuple, now: now)]
        default:
            return [.dropped(.unexpectedMessage)]
        }
    }

    private mutating func handleRequest(_ request: STUNMessage, from fiveTuple: FiveTuple, now: RelayTime)
        -> [RelayAction]
    {
        let unknown = request.unknownComprehensionRequired + request.unsupportedAttributes
        if request.type.method == .binding {
            if !unknown.isEmpty {
                return unauthenticatedReply(
                    error(request, .unknownAttribute, extra: [.unknownAttributes(unknown)]), fiveTuple, now)
            }
            return unauthenticatedReply(
                response(
                    request, attributes: [.xorMappedAddress(fiveTuple.client, transactionID: request.transactionID)]),
                fiveTuple, now)
        }
        guard [.allocate, .refresh, .createPermission, .channelBind].contains(request.type.method) else {
            return unauthenticatedReply(error(request, .badRequest), fiveTuple, now)
        }
        let identity: Identity
        switch authenticate(request, from: fiveTuple, now: now) {
        case .authenticated(let authenticated): identity = authenticated
        case .rejected(let reply): return unauthenticatedReply(reply, fiveTuple, now)
        }
        // RFC 8489 §6.3: unknown comprehension-required attributes are answered after authentication.
        if !unknown.isEmpty {
            return reply(error(request, .unknownAttribute, extra: [.unknownAttributes(unknown)]), identity, fiveTuple)
        }
        // An allocation past its lifetime is gone even before the next expiry tick removes it.
        var swept: [RelayAction] = []
        if let id = byFiveTuple[fiveTuple], let allocation = allocations[id], allocation.expiresAt <= now {
            remove(id)
            swept.append(.closeRelay(id))
        }
        return swept + dispatch(request, identity, fiveTuple, now)
    }

    private mutating func dispatch(
        _ request: STUNMessage, _ identity: Identity, _ fiveTuple: FiveTuple, _ now: RelayTime
    ) -> [RelayAction] {
        switch request.type.method {
        case .allocate: return handleAllocate(request, identity, fiveTuple, now)
        case .refresh: return handleRefresh(request, identity, fiveTuple, now)
        case .createPermission: return handleCreatePermission(request, identity, fiveTuple, now)
        default: return handleChannelBind(request, identity, fiveTuple, now)
        }
    }

    /// A reply to a request that has not (yet) authenticated: sent only while the source is under its rate.
    private mutating func unauthenticatedReply(_ message: STUNMessage, _ fiveTuple: FiveTuple, _ now: RelayTime)
        -> [RelayAction]
    {
        guard limiter.admit(fiveTuple.client.ip, now: now) else { return [.dropped(.rateLimited)] }
        return [.sendToClient(encode(message, key: nil), to: fiveTuple)]
    }

    // MARK: Authentication (RFC 8489 §9.2, RFC 8656 §5)

    private enum Authentication {
        case authenticated(Identity)
        case rejected(STUNMessage)
    }

    private func authenticate(_ request: STUNMessage, from fiveTuple: FiveTuple, now: RelayTime) -> Authentication {
        let algorithm: IntegrityAlgorithm
        if request.attribute(.messageIntegritySHA256) != nil {
            algorithm = .hmacSHA256
        } else if request.attribute(.messageIntegrity) != nil {
            algorithm = .hmacSHA1
        } else {
            return .rejected(challenge(request, .unauthorized, fiveTuple, now))
        }
        guard let username = try? request.username, let realm = try? request.realm, let nonce = try? request.nonce
        else {
            return .rejected(error(request, .badRequest))
        }
        guard realm == configuration.realm else {
            return .rejected(challenge(request, .unauthorized, fiveTuple, now))
        }
        guard nonceIsValid(nonce, for: fiveTuple, now: now) else {
            return .rejected(challenge(request, .staleNonce, fiveTuple, now))
        }
        // MD5 unless PASSWORD-ALGORITHM negotiated otherwise (RFC 8489 §9.2.2), which this server never offers; the
        // same key serves MESSAGE-INTEGRITY and MESSAGE-INTEGRITY-SHA256. With several shared secrets (rotation),
        // the credential is whichever one verifies.
        for (password, user, expiry) in passwords(for: username, now: now) {
            let key = LongTermCredential.key(username: username, realm: configuration.realm, password: password)
            if request.verifyIntegrity(key: key, algorithm: algorithm) == .valid {
                // Call-scoped credentials (REST ones only: a static user's name is just a name).
                let scope = expiry == nil ? (user: user, call: nil) : EphemeralCredential.scope(of: user)
                if let call = scope.call {
                    // A call that ended takes its credentials with it; one that outlives the retention is refused.
                    guard endedCalls[call] == nil, let expiry, expiry <= now + configuration.endedCallRetention else {
                        break
                    }
                }
                return .authenticated(
                    Identity(
                        username: username, user: scope.user, key: key, algorithm: algorithm, credentialExpiry: expiry,
                        call: scope.call))
            }
        }
        return .rejected(challenge(request, .unauthorized, fiveTuple, now))
    }

    /// The passwords `username` may have: a static user's, or one per shared secret for a TURN REST credential
    /// that has not expired.
    private func passwords(for username: String, now: RelayTime) -> [(String, user: String, expiry: RelayTime?)] {
        if let password = configuration.staticUsers[username] { return [(password, username, nil)] }
        guard let (expiry, user) = EphemeralCredential.parse(username: username) else { return [] }
        let expiresAt = RelayTime(seconds: expiry)
        // Expired, or further ahead than any issuer would sign (a year): not a credential of ours.
        guard expiresAt > now, expiresAt < now + .seconds(366 * 86_400) else { return [] }
        return configuration.sharedSecrets.map {
            (EphemeralCredential.password(secret: $0, username: username), user, expiresAt)
        }
    }

    private func challenge(
        _ request: STUNMessage, _ code: STUNErrorCode, _ fiveTuple: FiveTuple, _ now: RelayTime
    ) -> STUNMessage {
        error(
            request, code,
            extra: [.realm(configuration.realm), .nonce(makeNonce(for: fiveTuple, now: now))])
    }

    func makeNonce(for fiveTuple: FiveTuple, now: RelayTime) -> String {
        let expiry = (now + configuration.nonceLifetime).milliseconds
        return hex(expiry, width: 12) + nonceMAC(expiry: expiry, fiveTuple: fiveTuple)
    }

    private func nonceIsValid(_ nonce: String, for fiveTuple: FiveTuple, now: RelayTime) -> Bool {
        let utf8 = Array(nonce.utf8)
        guard utf8.count == 36, let expiry = Int64(String(decoding: utf8[0..<12], as: UTF8.self), radix: 16),
            expiry > now.milliseconds
        else { return false }
        let expected = Array(nonceMAC(expiry: expiry, fiveTuple: fiveTuple).utf8)
        return constantTimeEqual(Array(utf8[12...]), expected)
    }

    private func nonceMAC(expiry: Int64, fiveTuple: FiveTuple) -> String {
        var data = withUnsafeBytes(of: expiry.bigEndian, Array.init)
        data += fiveTuple.client.ip.bytes
        data += withUnsafeBytes(of: fiveTuple.client.port.bigEndian, Array.init)
        let mac = HMAC<SHA256>.authenticationCode(for: data, using: SymmetricKey(data: nonceKey))
        return Array(mac).prefix(12).map { hex(Int64($0), width: 2) }.joined()
    }

    // MARK: Allocate (RFC 8656 §7.2)

    private mutating func handleAllocate(
        _ request: STUNMessage, _ identity: Identity, _ fiveTuple: FiveTuple, _ now: RelayTime
    ) -> [RelayAction] {
        if let id = byFiveTuple[fiveTuple], let existing = allocations[id] {
            if existing.allocateTransaction == request.transactionID {
                return [.sendToClient(existing.allocateResponse, to: fiveTuple)]
            }
            return reply(error(request, .allocationMismatch), identity, fiveTuple)
        }
        if let id = pendingByFiveTuple[fiveTuple] {
            if pending[id]?.transactionID == request.transactionID { return [.dropped(.allocationInProgress)] }
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
        // A reservation names its port and family already (RFC 8656 §7.2 step 4).
        if token != nil && (evenPort != nil || request.attribute(.requestedAddressFamily) != nil) {
            return reply(error(request, .badRequest), identity, fiveTuple)
        }
        if let token { return claimReservation(token, request, identity, fiveTuple, now) }
        var family = AddressFamily.ipv4
        if request.attribute(.requestedAddressFamily) != nil {
            guard let requested = try? request.requestedAddressFamily else {
                return reply(error(request, .badRequest), identity, fiveTuple)
            }
            family = requested
        }
        guard let relayAddress = configuration.relayAddresses[family] else {
            return reply(error(request, .addressFamilyNotSupported), identity, fiveTuple)
        }
        // A reservation holds a port as an allocation does, so it counts against the user's quota and the total,
        // from the request that makes it until it is claimed (then as the allocation) or released.
        let reserve = evenPort == true
        guard perUser[identity.user, default: 0] + (reserve ? 2 : 1) <= configuration.maximumAllocationsPerUser else {
            return reply(error(request, .allocationQuotaReached), identity, fiveTuple)
        }
        let pendingReservations = pending.values.reduce(0) { $0 + ($1.reservation == nil ? 0 : 1) }
        guard
            allocations.count + pending.count + pendingReservations + reservations.count + (reserve ? 1 : 0)
                < configuration.maximumAllocations
        else {
            return reply(error(request, .insufficientCapacity), identity, fiveTuple)
        }
        let id = AllocationID(rawValue: nextID)
        nextID += 1
        var reservation: AllocationID?
        if reserve {
            reservation = AllocationID(rawValue: nextID)
            nextID += 1
        }
        let allocation = PendingAllocation(
            id: id, fiveTuple: fiveTuple, relayAddress: relayAddress, evenPort: evenPort != nil,
            reservation: reservation, reservedPort: nil, transactionID: request.transactionID, identity: identity,
            lifetime: grantedLifetime(requested: try? request.lifetime, identity, now))
        pending[id] = allocation
        pendingByFiveTuple[fiveTuple] = id
        perUser[identity.user, default: 0] += 1
        return [.openRelay(allocation)]
    }

    /// An Allocate with a RESERVATION-TOKEN: the reserved port becomes the allocation's relayed address, under the
    /// reservation's id (its socket is bound already). An unknown or expired token, or another user's, gets 508.
    private mutating func claimReservation(
        _ token: UInt64, _ request: STUNMessage, _ identity: Identity, _ fiveTuple: FiveTuple, _ now: RelayTime
    ) -> [RelayAction] {
        guard let reservation = reservations[token], reservation.expiresAt > now, reservation.user == identity.user
        else {
            return reply(error(request, .insufficientCapacity), identity, fiveTuple)
        }
        // The reservation was counted in the user's quota already: the allocation takes its place.
        reservations[token] = nil
        let allocation = PendingAllocation(
            id: reservation.id, fiveTuple: fiveTuple, relayAddress: reservation.address.ip, evenPort: false,
            reservation: nil, reservedPort: reservation.address.port, transactionID: request.transactionID,
            identity: identity, lifetime: grantedLifetime(requested: try? request.lifetime, identity, now))
        pending[reservation.id] = allocation
        pendingByFiveTuple[fiveTuple] = reservation.id
        return [.openRelay(allocation)]
    }

    /// The adapter bound the relay socket of a pending allocation at `relayedAddress` (and, for EVEN-PORT R = 1,
    /// the socket of its reservation at `reserved`, the next-higher port).
    public mutating func relayOpened(
        _ id: AllocationID, at relayedAddress: TransportAddress, reserved: TransportAddress? = nil, now: RelayTime
    ) -> [RelayAction] {
        guard let request = pending.removeValue(forKey: id) else { return [.closeRelay(id)] }
        pendingByFiveTuple[request.fiveTuple] = nil
        var allocation = Allocation(
            id: id, fiveTuple: request.fiveTuple, identity: request.identity, relayedAddress: relayedAddress,
            createdAt: now, expiresAt: now + request.lifetime, allocateTransaction: request.transactionID)
        var attributes: [STUNAttribute] = [
            .xorRelayedAddress(relayedAddress, transactionID: request.transactionID),
            .lifetime(UInt32(request.lifetime.relayMilliseconds / 1000)),
            .xorMappedAddress(request.fiveTuple.client, transactionID: request.transactionID),
        ]
        if let reservation = request.reservation, let reserved {
            let token = reservationToken(for: reservation)
            reservations[token] = Reservation(
                id: reservation, address: reserved, user: request.identity.user, call: request.identity.call,
                expiresAt: now + configuration.reservationLifetime)
            perUser[request.identity.user, default: 0] += 1
            attributes.append(.reservationToken(token))
        }
        if let software = configuration.software { attributes.append(.software(software)) }
        let success = STUNMessage(
            type: STUNMessageType(method: .allocate, class: .successResponse),
            transactionID: request.transactionID, attributes: attributes)
        allocation.allocateResponse = encode(success, key: request.identity)
        allocations[id] = allocation
        byFiveTuple[request.fiveTuple] = id
        return [.sendToClient(allocation.allocateResponse, to: request.fiveTuple)]
    }

    /// The adapter could not bind a relay socket (the port range is exhausted).
    public mutating func relayFailed(_ id: AllocationID) -> [RelayAction] {
        guard let request = pending.removeValue(forKey: id) else { return [] }
        pendingByFiveTuple[request.fiveTuple] = nil
        releaseQuota(request.identity.user)
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

    private mutating func handleRefresh(
        _ request: STUNMessage, _ identity: Identity, _ fiveTuple: FiveTuple, _ now: RelayTime
    ) -> [RelayAction] {
        var allocation: Allocation
        switch ownAllocation(request, identity, fiveTuple) {
        case .found(let found): allocation = found
        case .refused(let code): return reply(error(request, code), identity, fiveTuple)
        }
        let id = allocation.id
        if request.attribute(.requestedAddressFamily) != nil {
            guard let family = try? request.requestedAddressFamily else {
                return reply(error(request, .badRequest), identity, fiveTuple)
            }
            if family != allocation.relayedAddress.ip.family {
                return reply(error(request, .peerAddressFamilyMismatch), identity, fiveTuple)
            }
        }
        let requested = try? request.lifetime
        if requested == 0 {
            remove(id)
            return reply(response(request, attributes: [.lifetime(0)]), identity, fiveTuple) + [.closeRelay(id)]
        }
        let lifetime = grantedLifetime(requested: requested, identity, now)
        allocation.expiresAt = now + lifetime
        allocations[id] = allocation
        return reply(
            response(request, attributes: [.lifetime(UInt32(lifetime.relayMilliseconds / 1000))]), identity,
            fiveTuple)
    }

    // MARK: CreatePermission (RFC 8656 §9) and ChannelBind (§11)

    /// The allocation of an authenticated request by the user who made it, or the error to answer with.
    private func ownAllocation(_ request: STUNMessage, _ identity: Identity, _ fiveTuple: FiveTuple)
        -> Lookup
    {
        guard let id = byFiveTuple[fiveTuple], let allocation = allocations[id] else {
            return .refused(.allocationMismatch)
        }
        guard allocation.identity.username == identity.username else {
            return .refused(.wrongCredentials)
        }
        return .found(allocation)
    }

    private enum Lookup {
        case found(Allocation)
        case refused(STUNErrorCode)
    }

    /// Refuses peers the policy forbids (403) or of the wrong family (443). `port` also checks the port: a peer on
    /// the relay's own address must be a relayed address (ChannelBind; CreatePermission is per IP and Send checks
    /// each datagram).
    private func checkPeer(_ peer: TransportAddress, for allocation: Allocation, port: Bool) -> STUNErrorCode? {
        if !configuration.peerPolicy.permits(peer.ip) { return .forbidden }
        if port && !reachableOnRelay(peer) { return .forbidden }
        if peer.ip.family != allocation.relayedAddress.ip.family {
            return .peerAddressFamilyMismatch
        }
        return nil
    }

    /// False for a port of the relay's own address that is not a relayed address (DNS, SNMP or the TURN port of
    /// the relay host itself must stay out of reach), unless the operator allowed that address explicitly
    /// (`--allow-peer`, as tests on loopback do).
    func reachableOnRelay(_ peer: TransportAddress) -> Bool {
        guard !configuration.relayPorts.contains(peer.port) else { return true }
        let own = PeerPolicy.canonicalForms(of: peer.ip).filter { configuration.relayAddresses.values.contains($0) }
        return own.allSatisfy { form in configuration.peerPolicy.allowed.contains { $0.contains(form) } }
    }

    private mutating func handleCreatePermission(
        _ request: STUNMessage, _ identity: Identity, _ fiveTuple: FiveTuple, _ now: RelayTime
    ) -> [RelayAction] {
        var allocation: Allocation
        switch ownAllocation(request, identity, fiveTuple) {
        case .found(let found): allocation = found
        case .refused(let code): return reply(error(request, code), identity, fiveTuple)
        }
        guard let peers = try? request.xorPeerAddresses, !peers.isEmpty else {
            return reply(error(request, .badRequest), identity, fiveTuple)
        }
        for peer in peers {
            if let failure = checkPeer(peer, for: allocation, port: false) {
                return reply(error(request, failure), identity, fiveTuple)
            }
        }
        let added = Set(peers.map(\.ip)).subtracting(allocation.permissions.keys).count
        guard allocation.permissions.count + added <= configuration.maximumPermissionsPerAllocation else {
            return reply(error(request, .insufficientCapacity), identity, fiveTuple)
        }
        for peer in peers {
            allocation.permissions[peer.ip] = Permission(expiresAt: now + configuration.permissionLifetime)
        }
        allocations[allocation.id] = allocation
        return reply(response(request, attributes: []), identity, fiveTuple)
    }

    private mutating func handleChannelBind(
        _ request: STUNMessage, _ identity: Identity, _ fiveTuple: FiveTuple, _ now: RelayTime
    ) -> [RelayAction] {
        var allocation: Allocation
        switch ownAllocation(request, identity, fiveTuple) {
        case .found(let found): allocation = found
        case .refused(let code): return reply(error(request, code), identity, fiveTuple)
        }
        guard let channel = try? request.channelNumber, configuration.channelNumbers.contains(channel),
            let peers = try? request.xorPeerAddresses, peers.count == 1
        else {
            return reply(error(request, .badRequest), identity, fiveTuple)
        }
        let peer = peers[0]
        if let failure = checkPeer(peer, for: allocation, port: true) {
            return reply(error(request, failure), identity, fiveTuple)
        }
        // A channel stays with one peer and a peer with one channel (RFC 8656 §11.2), and so for the reuse delay
        // after the binding expired (§12); binding the same pair again renews it.
        if let bound = allocation.channels[channel], bound.peer != peer {
            return reply(error(request, .badRequest), identity, fiveTuple)
        }
        if let other = allocation.channelByPeer[peer], other != channel {
            return reply(error(request, .badRequest), identity, fiveTuple)
        }
        let newChannel = allocation.channels[channel] == nil
        let newPermission = allocation.permissions[peer.ip] == nil
        guard !newChannel || allocation.channels.count < configuration.maximumChannelsPerAllocation,
            !newPermission || allocation.permissions.count < configuration.maximumPermissionsPerAllocation
        else {
            return reply(error(request, .insufficientCapacity), identity, fiveTuple)
        }
        allocation.channels[channel] = Channel(peer: peer, expiresAt: now + configuration.channelLifetime)
        allocation.channelByPeer[peer] = channel
        allocation.permissions[peer.ip] = Permission(expiresAt: now + configuration.permissionLifetime)
        allocations[allocation.id] = allocation
        return reply(response(request, attributes: []), identity, fiveTuple)
    }

    // MARK: Data (RFC 8656 §10–12)

    private mutating func handleSend(_ indication: STUNMessage, from fiveTuple: FiveTuple, now: RelayTime)
        -> RelayAction
    {
        guard let id = byFiveTuple[fiveTuple], let expiresAt = allocations[id]?.expiresAt, expiresAt > now else {
            return .dropped(.noAllocation)
        }
        guard let peers = try? indication.xorPeerAddresses, peers.count == 1, let payload = indication.data,
            indication.unknownComprehensionRequired.isEmpty, indication.unsupportedAttributes.isEmpty
        else { return .dropped(.malformed) }
        let peer = peers[0]
        guard allocations[id]?.hasPermission(for: peer.ip, at: now) == true else { return .dropped(.noPermission) }
        guard reachableOnRelay(peer) else { return .dropped(.forbiddenPeer) }
        allocations[id]?.packetsToPeers += 1
        allocations[id]?.bytesToPeers += UInt64(payload.count)
        return .sendToPeer(id, payload: payload, peer: peer)
    }

    /// ChannelData a client sent to the server socket: where its `length`-byte payload goes.
    public mutating func channelData(_ channel: UInt16, length: Int, from fiveTuple: FiveTuple, now: RelayTime)
        -> ClientForward
    {
        // In place through the dictionary's modify accessor: reading an Allocation out would copy (and retain) all of
        // it, once per packet.
        guard let id = byFiveTuple[fiveTuple] else { return .drop(.noAllocation) }
        return allocations[id]?.forwardFromClient(channel: channel, length: length, now: now) ?? .drop(.noAllocation)
    }

    /// A datagram of `length` bytes from `peer` arrived on the relay socket of `allocation`.
    public mutating func fromPeer(_ peer: TransportAddress, length: Int, allocation id: AllocationID, now: RelayTime)
        -> PeerForward
    {
        allocations[id]?.forwardFromPeer(peer, length: length, now: now) ?? .drop(.noAllocation)
    }

    /// A Data indication carrying `payload` from `peer` (RFC 8656 §11.4).
    public static func dataIndication(from peer: TransportAddress, payload: [UInt8]) -> [UInt8] {
        let transaction = TransactionID.random()
        let message = STUNMessage(
            type: STUNMessageType(method: .data, class: .indication), transactionID: transaction,
            attributes: [.xorPeerAddress(peer, transactionID: transaction), .data(payload)])
        return (try? message.encode()) ?? []
    }

    // MARK: Time

    /// Ends allocations past their lifetime and forgets expired permissions and channels.
    public mutating func expire(now: RelayTime) -> [RelayAction] {
        var actions: [RelayAction] = []
        for (id, allocation) in allocations {
            if allocation.expiresAt <= now {
                remove(id)
                actions.append(.closeRelay(id))
                continue
            }
            // Most ticks expire nothing: look before rebuilding anything.
            let stalePermissions = allocation.permissions.values.contains { $0.expiresAt <= now }
            // An expired channel relays nothing at once; its number and peer are released after the reuse delay.
            let delay = configuration.channelReuseDelay
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
            reservations[token] = nil
            releaseQuota(reservation.user)
            actions.append(.closeRelay(reservation.id))
        }
        endedCalls = endedCalls.filter { $0.value > now }
        limiter.prune(now: now)
        return actions
    }

    /// A call ended: every allocation made with credentials scoped to it ends now, with the ones being made and
    /// the ports reserved with them, and its credentials are refused from here on (for ``RelayConfiguration/endedCallRetention``).
    public mutating func endCall(_ call: String, now: RelayTime) -> [RelayAction] {
        endedCalls[call] = now + configuration.endedCallRetention
        var actions: [RelayAction] = []
        for (id, allocation) in allocations where allocation.identity.call == call {
            remove(id)
            actions.append(.closeRelay(id))
        }
        for (id, request) in pending where request.identity.call == call {
            actions += removePending(id, request)
        }
        for (token, reservation) in reservations where reservation.call == call {
            reservations[token] = nil
            releaseQuota(reservation.user)
            actions.append(.closeRelay(reservation.id))
        }
        return actions
    }

    /// A client's TCP or TLS connection closed: its allocation (or the one being made) ends with it (RFC 8656 §3.1).
    public mutating func connectionClosed(_ fiveTuple: FiveTuple) -> [RelayAction] {
        if let id = byFiveTuple[fiveTuple] {
            remove(id)
            return [.closeRelay(id)]
        }
        if let id = pendingByFiveTuple[fiveTuple], let request = pending[id] { return removePending(id, request) }
        return []
    }

    /// Forgets an allocation still being made (its quota with it): the adapter closes its socket and its pair's.
    private mutating func removePending(_ id: AllocationID, _ request: PendingAllocation) -> [RelayAction] {
        pending[id] = nil
        pendingByFiveTuple[request.fiveTuple] = nil
        releaseQuota(request.identity.user)
        return [.closeRelay(id)] + (request.reservation.map { [.closeRelay($0)] } ?? [])
    }

    /// Ends every allocation (shutdown).
    public mutating func removeAll() -> [RelayAction] {
        let ids =
            Array(allocations.keys) + Array(pending.keys) + pending.values.compactMap(\.reservation)
            + reservations.values.map(\.id)
        allocations = [:]
        reservations = [:]
        byFiveTuple = [:]
        pending = [:]
        pendingByFiveTuple = [:]
        perUser = [:]
        return ids.map { .closeRelay($0) }
    }

    private mutating func remove(_ id: AllocationID) {
        guard let allocation = allocations.removeValue(forKey: id) else { return }
        byFiveTuple[allocation.fiveTuple] = nil
        releaseQuota(allocation.identity.user)
    }

    private mutating func releaseQuota(_ user: String) {
        let remaining = perUser[user, default: 1] - 1
        perUser[user] = remaining > 0 ? remaining : nil
    }

    /// Live allocations, oldest first.
    public func snapshot(now: RelayTime) -> [AllocationInfo] {
        allocations.values.sorted { $0.id < $1.id }.map { allocation in
            AllocationInfo(
                id: allocation.id, user: allocation.identity.user, username: allocation.identity.username,
                call: allocation.identity.call, fiveTuple: allocation.fiveTuple,
                relayedAddress: allocation.relayedAddress,
                permissions: allocation.permissions.filter { $0.value.expiresAt > now }.keys.sorted {
                    $0.description < $1.description
                },
                channels: allocation.channels.filter { $0.value.expiresAt > now }.mapValues(\.peer),
                createdAt: allocation.createdAt, expiresAt: allocation.expiresAt,
                packetsToPeers: allocation.packetsToPeers, bytesToPeers: allocation.bytesToPeers,
                packetsFromPeers: allocation.packetsFromPeers, bytesFromPeers: allocation.bytesFromPeers)
        }
    }

    // MARK: Building replies

    private func response(_ request: STUNMessage, attributes: [STUNAttribute]) -> STUNMessage {
        STUNMessage(
            type: STUNMessageType(method: request.type.method, class: .successResponse),
            transactionID: request.transactionID, attributes: attributes)
    }

    private func error(_ request: STUNMessage, _ code: STUNErrorCode, extra: [STUNAttribute] = []) -> STUNMessage {
        STUNMessage(
            type: STUNMessageType(method: request.type.method, class: .errorResponse),
            transactionID: request.transactionID, attributes: [.errorCode(code)] + extra)
    }

    /// A reply to an authenticated request, integrity-protected with the request's key.
    private func reply(_ message: STUNMessage, _ identity: Identity, _ fiveTuple: FiveTuple) -> [RelayAction] {
        [.sendToClient(encode(message, key: identity), to: fiveTuple)]
    }

    private func encode(_ message: STUNMessage, key identity: Identity?) -> [UInt8] {
        let encoded: [UInt8]?
        switch identity?.algorithm {
        case .hmacSHA1: encoded = try? message.encode(integrity: identity?.key, fingerprint: true)
        case .hmacSHA256: encoded = try? message.encode(integritySHA256: identity?.key, fingerprint: true)
        case nil: encoded = try? message.encode(fingerprint: true)
        }
        return encoded ?? []
    }
}

private func hex(_ value: Int64, width: Int) -> String {
    let digits = String(UInt64(bitPattern: value), radix: 16)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
}

extension STUNMessage {
    /// Comprehension-required attributes the codec knows but this server does not support in a request:
    /// DONT-FRAGMENT (the relay cannot set DF on relayed datagrams, RFC 8656 §7.2 step 3).
    var unsupportedAttributes: [UInt16] {
        attribute(.dontFragment) != nil ? [STUNAttributeType.dontFragment.rawValue] : []
    }
}
