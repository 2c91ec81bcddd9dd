import RelayCore
import STUN
import Testing

let relayIP = IPAddress("198.51.100.10")!
let serverAddress = TransportAddress(ip: relayIP, port: 3478)
let realm = "example.org"
let sharedSecret = Array("shared-secret-of-at-least-32-bytes!!".utf8)
let start = RelayTime(seconds: 1_800_000_000)

func configuration(
    allowed: [String] = [], perUser: Int = 10, total: Int = 100, burst: Int = 1000
) -> RelayConfiguration {
    RelayConfiguration(
        realm: realm, staticUsers: ["alice": "secret", "bob": "hunter2"], sharedSecrets: [sharedSecret],
        relayAddresses: [.ipv4: relayIP], maximumAllocationsPerUser: perUser, maximumAllocations: total,
        peerPolicy: PeerPolicy(allowed: allowed.map { CIDR($0)! }), unauthenticatedRate: burst,
        unauthenticatedBurst: burst)
}

/// A TURN client's view of one 5-tuple, talking to an in-memory ``TURNServer``.
struct Client {
    var fiveTuple: FiveTuple
    var username: String
    var password: String
    var nonce: String?
    var nextRelayPort: UInt16 = 50_000

    init(port: UInt16 = 40_000, username: String = "alice", password: String = "secret") {
        fiveTuple = FiveTuple(
            client: TransportAddress(ip: IPAddress("203.0.113.5")!, port: port), server: serverAddress)
        self.username = username
        self.password = password
    }

    var key: [UInt8] { LongTermCredential.key(username: username, realm: realm, password: password) }

    func request(_ method: STUNMethod, _ attributes: [STUNAttribute], transaction: TransactionID = .random())
        -> STUNMessage
    {
        STUNMessage(
            type: STUNMessageType(method: method, class: .request), transactionID: transaction, attributes: attributes)
    }

    /// Sends a request with long-term credentials (learning the nonce from a 401 first) and returns every action.
    mutating func send(
        _ method: STUNMethod, _ attributes: [STUNAttribute], peers: [TransportAddress] = [],
        to server: inout TURNServer, now: RelayTime = start, transaction: TransactionID = .random()
    ) -> [RelayAction] {
        if nonce == nil {
            let challenge = Self.reply(server.receive(try! request(method, []).encode(), from: fiveTuple, now: now))
            nonce = try? challenge?.nonce
        }
        let message = request(
            method,
            attributes + peers.map { .xorPeerAddress($0, transactionID: transaction) }
                + [.username(username), .realm(realm), .nonce(nonce ?? "")],
            transaction: transaction)
        return server.receive(try! message.encode(integrity: key, fingerprint: true), from: fiveTuple, now: now)
    }

    /// Sends and returns the one reply, completing an Allocate by "binding" a relay port.
    mutating func call(
        _ method: STUNMethod, _ attributes: [STUNAttribute] = [], peers: [TransportAddress] = [],
        on server: inout TURNServer, now: RelayTime = start, transaction: TransactionID = .random()
    ) -> STUNMessage? {
        var actions = send(method, attributes, peers: peers, to: &server, now: now, transaction: transaction)
        if case .openRelay(let pending) = actions.first {
            // A dual allocation's second socket takes the port above the first.
            let additional = pending.additional.map { TransportAddress(ip: $0.relayAddress, port: nextRelayPort + 1) }
            actions = server.relayOpened(
                pending.id, at: TransportAddress(ip: pending.relayAddress, port: nextRelayPort), additional: additional,
                now: now)
            nextRelayPort += 2
        }
        return Self.reply(actions)
    }

    /// An Allocate with EVEN-PORT R = 1 whose pair the adapter "binds" at `even` and `even + 1`: the reservation's
    /// id and RESERVATION-TOKEN, or nil (recorded) when the server did not ask for a pair or gave no token.
    mutating func reservePair(on server: inout TURNServer, even: UInt16) -> (AllocationID, UInt64)? {
        let actions = send(.allocate, [.requestedTransport(17), .evenPort(reserveNextHigherPort: true)], to: &server)
        guard case .openRelay(let pending) = actions.first, let reservation = pending.reservation else {
            Issue.record("no pair asked: \(actions)")
            return nil
        }
        let reply = Self.reply(
            server.relayOpened(
                pending.id, at: TransportAddress(ip: relayIP, port: even),
                reserved: TransportAddress(ip: relayIP, port: even + 1), now: start))
        guard let token = try? reply?.reservationToken else {
            Issue.record("no RESERVATION-TOKEN: \(String(describing: reply))")
            return nil
        }
        return (reservation, token)
    }

    static func reply(_ actions: [RelayAction]) -> STUNMessage? {
        for action in actions {
            if case .sendToClient(let bytes, _) = action { return try? STUNMessage(decoding: bytes) }
        }
        return nil
    }

    mutating func allocate(on server: inout TURNServer, now: RelayTime = start, lifetime: UInt32? = nil)
        -> STUNMessage?
    {
        call(.allocate, [.requestedTransport(17)] + (lifetime.map { [.lifetime($0)] } ?? []), on: &server, now: now)
    }
}

extension STUNMessage {
    var isSuccess: Bool { type.messageClass == .successResponse }
    var code: Int? { (try? errorCode)?.code }
}

func peer(_ text: String, port: UInt16 = 9000) -> TransportAddress {
    TransportAddress(ip: IPAddress(text)!, port: port)
}
