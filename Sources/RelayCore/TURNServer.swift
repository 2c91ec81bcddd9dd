import Crypto
import STUN

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
///
/// By concern: this file takes requests in and builds replies and expires; authentication, Allocate and Refresh,
/// permissions and channels, and relayed data are extensions in `TURNServer+*.swift`, around the
/// ``AllocationTable`` that owns the allocations and their indexes.
public struct TURNServer: Sendable {
    public var configuration: RelayConfiguration
    let nonceKey: [UInt8]
    var table = AllocationTable()
    /// Calls that ended, and until when their call-scoped credentials are refused.
    var endedCalls: [String: RelayTime] = [:]
    private var limiter: SourceRateLimiter

    public init(configuration: RelayConfiguration, nonceKey: [UInt8]? = nil) {
        self.configuration = configuration
        self.nonceKey = nonceKey ?? SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
        limiter = SourceRateLimiter(rate: configuration.unauthenticatedRate, burst: configuration.unauthenticatedBurst)
    }

    /// Live allocations (pending ones not counted).
    public var allocationCount: Int { table.count }
    public var permissionCount: Int { table.permissionCount }
    public var channelCount: Int { table.channelCount }

    /// The allocation a 5-tuple has, if any.
    public func allocation(for fiveTuple: FiveTuple) -> AllocationID? { table.id(for: fiveTuple) }

    /// Whether a 5-tuple has an allocation, or one being made.
    public func hasAllocation(for fiveTuple: FiveTuple) -> Bool {
        table.id(for: fiveTuple) != nil || table.pendingID(for: fiveTuple) != nil
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
        if let id = table.id(for: fiveTuple), let allocation = table[id], allocation.expiresAt <= now {
            swept = table.remove(id).map { .closeRelay($0) }
        }
        return swept + dispatch(request, identity, fiveTuple, now)
    }

    private mutating func dispatch(
        _ request: STUNMessage, _ identity: Identity, _ fiveTuple: FiveTuple, _ now: RelayTime
    ) -> [RelayAction] {
        if request.type.method == .allocate { return handleAllocate(request, identity, fiveTuple, now) }
        // The other methods act on the 5-tuple's allocation, made by the same user.
        let allocation: Allocation
        switch ownAllocation(request, identity, fiveTuple) {
        case .found(let found): allocation = found
        case .refused(let code): return reply(error(request, code), identity, fiveTuple)
        }
        switch request.type.method {
        case .refresh: return handleRefresh(request, allocation, identity, fiveTuple, now)
        case .createPermission: return handleCreatePermission(request, allocation, identity, fiveTuple, now)
        default: return handleChannelBind(request, allocation, identity, fiveTuple, now)
        }
    }

    /// A reply to a request that has not (yet) authenticated: sent only while the source is under its rate.
    private mutating func unauthenticatedReply(_ message: STUNMessage, _ fiveTuple: FiveTuple, _ now: RelayTime)
        -> [RelayAction]
    {
        guard limiter.admit(fiveTuple.client.ip, now: now) else { return [.dropped(.rateLimited)] }
        return [.sendToClient(encode(message, key: nil), to: fiveTuple)]
    }

    // MARK: Time

    /// Ends allocations past their lifetime and forgets expired permissions and channels (an expired channel relays
    /// nothing at once; its number and peer are released after the reuse delay).
    public mutating func expire(now: RelayTime) -> [RelayAction] {
        let closed = table.expire(now: now, channelReuseDelay: configuration.channelReuseDelay)
        endedCalls = endedCalls.filter { $0.value > now }
        limiter.prune(now: now)
        return closed.map { .closeRelay($0) }
    }

    /// A call ended: every allocation made with credentials scoped to it ends now, with the ones being made and
    /// the ports reserved with them, and its credentials are refused from here on (for ``RelayConfiguration/endedCallRetention``).
    public mutating func endCall(_ call: String, now: RelayTime) -> [RelayAction] {
        endedCalls[call] = now + configuration.endedCallRetention
        return table.remove(call: call).map { .closeRelay($0) }
    }

    /// A client's TCP or TLS connection closed: its allocation (or the one being made) ends with it (RFC 8656 §3.1).
    public mutating func connectionClosed(_ fiveTuple: FiveTuple) -> [RelayAction] {
        table.remove(fiveTuple: fiveTuple).map { .closeRelay($0) }
    }

    /// Ends every allocation (shutdown).
    public mutating func removeAll() -> [RelayAction] {
        table.removeAll().map { .closeRelay($0) }
    }

    /// Live allocations, oldest first.
    public func snapshot(now: RelayTime) -> [AllocationInfo] {
        table.allocations.values.sorted { $0.id < $1.id }.map { allocation in
            AllocationInfo(
                id: allocation.id, user: allocation.identity.user, username: allocation.identity.username,
                call: allocation.identity.call, fiveTuple: allocation.fiveTuple,
                relayedAddress: allocation.relayedAddress, relayedAddresses: allocation.relayed.map(\.address),
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

    func response(_ request: STUNMessage, attributes: [STUNAttribute]) -> STUNMessage {
        STUNMessage(
            type: STUNMessageType(method: request.type.method, class: .successResponse),
            transactionID: request.transactionID, attributes: attributes)
    }

    func error(_ request: STUNMessage, _ code: STUNErrorCode, extra: [STUNAttribute] = []) -> STUNMessage {
        STUNMessage(
            type: STUNMessageType(method: request.type.method, class: .errorResponse),
            transactionID: request.transactionID, attributes: [.errorCode(code)] + extra)
    }

    /// A reply to an authenticated request, integrity-protected with the request's key.
    func reply(_ message: STUNMessage, _ identity: Identity, _ fiveTuple: FiveTuple) -> [RelayAction] {
        [.sendToClient(encode(message, key: identity), to: fiveTuple)]
    }

    func encode(_ message: STUNMessage, key identity: Identity?) -> [UInt8] {
        let encoded: [UInt8]?
        switch identity?.algorithm {
        case .hmacSHA1: encoded = try? message.encode(integrity: identity?.key, fingerprint: true)
        case .hmacSHA256: encoded = try? message.encode(integritySHA256: identity?.key, fingerprint: true)
        case nil: encoded = try? message.encode(fingerprint: true)
        }
        return encoded ?? []
    }
}

func hex(_ value: Int64, width: Int) -> String {
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
