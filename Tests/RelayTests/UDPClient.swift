import DatagramPump
import Foundation
import STUN

#if canImport(Glibc)
    import Glibc
#endif

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A non-blocking UDP socket on a loopback address (127.0.0.1 unless told) with a receive that waits (with `poll`)
/// up to a deadline for a datagram.
final class UDPTestSocket {
    let fd: Int32
    let address: TransportAddress

    init(on ip: IPAddress = IPAddress("127.0.0.1")!) throws {
        let fd = socket(
            ip.isIPv4 ? AF_INET : AF_INET6, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        self.fd = fd
        guard fd >= 0 else { throw TestFailure("socket: \(errno)") }
        var storage = sockaddr_storage()
        let length = SocketAddressBytes.write(TransportAddress(ip: ip, port: 0), into: &storage)
        let bound = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0 else { throw TestFailure("bind: \(errno)") }
        var local = sockaddr_storage()
        var localLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &localLength) }
        }
        guard let address = SocketAddressBytes.read(&local) else { throw TestFailure("getsockname") }
        self.address = address
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8], to destination: TransportAddress) throws {
        var storage = sockaddr_storage()
        let length = SocketAddressBytes.write(destination, into: &storage)
        let sent = bytes.withUnsafeBytes { buffer in
            withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, buffer.baseAddress, buffer.count, 0, $0, length)
                }
            }
        }
        guard sent == bytes.count else { throw TestFailure("sendto: \(errno)") }
    }

    /// The next datagram and its source, or nil when none came within `timeout` seconds.
    func receive(timeout: Double = 5) throws -> (bytes: [UInt8], from: TransportAddress)? {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var source = sockaddr_storage()
        let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
        while true {
            var sourceLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let got = buffer.withUnsafeMutableBytes { bytes in
                withUnsafeMutablePointer(to: &source) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        recvfrom(fd, bytes.baseAddress, bytes.count, 0, $0, &sourceLength)
                    }
                }
            }
            if got >= 0 {
                guard let from = SocketAddressBytes.read(&source) else { throw TestFailure("source family") }
                return (Array(buffer[0..<got]), from)
            }
            guard errno == EAGAIN || errno == EWOULDBLOCK else { throw TestFailure("recvfrom: \(errno)") }
            let left = deadline - ContinuousClock.now
            guard left > .zero else { return nil }
            var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(
                &ready, 1,
                Int32(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1))
        }
    }
}

/// A TURN client over UDP, one request at a time (it waits for each answer), long-term credentials.
final class TURNTestClient {
    let socket: UDPTestSocket
    let server: TransportAddress
    private var credential: (key: [UInt8], attributes: [STUNAttribute])?

    init(server: TransportAddress) throws {
        socket = try UDPTestSocket()
        self.server = server
    }

    /// Sends `request` (signed once the Allocate has given a nonce) and returns the answer to it.
    func request(_ type: STUNMessageType, _ attributes: [STUNAttribute], transaction: TransactionID = .random())
        throws -> STUNMessage
    {
        let message: [UInt8]
        if let credential {
            message = try STUNMessage(
                type: type, transactionID: transaction, attributes: attributes + credential.attributes
            )
            .encode(integrity: credential.key, fingerprint: true)
        } else {
            message = try STUNMessage(type: type, transactionID: transaction, attributes: attributes).encode(
                fingerprint: true)
        }
        try socket.send(message, to: server)
        while let (bytes, _) = try socket.receive() {
            // Relayed data that arrives while waiting is not the answer.
            guard let reply = try? STUNMessage(decoding: bytes), reply.transactionID == transaction else { continue }
            return reply
        }
        throw TestFailure("no answer to \(type)")
    }

    /// Allocates (401 first, then with credentials) and returns the relayed address.
    func allocate(username: String = "alice", password: String = "secret", lifetime: UInt32? = nil) throws
        -> TransportAddress
    {
        let answer = try allocateAnswer(username: username, password: password, lifetime: lifetime)
        guard let relayed = try answer.xorRelayedAddress else { throw TestFailure("no XOR-RELAYED-ADDRESS") }
        return relayed
    }

    /// Allocates (401 first, then with credentials, and `attributes`) and returns the success response.
    func allocateAnswer(
        username: String = "alice", password: String = "secret", lifetime: UInt32? = nil,
        attributes: [STUNAttribute] = []
    ) throws -> STUNMessage {
        let type = STUNMessageType(method: .allocate, class: .request)
        credential = nil
        let challenge = try request(type, [.requestedTransport(17)])
        guard let realm = try challenge.realm, let nonce = try challenge.nonce else {
            throw TestFailure("no 401 challenge: \(challenge.type)")
        }
        credential = (
            LongTermCredential.key(username: username, realm: realm, password: password),
            [.username(username), .realm(realm), .nonce(nonce)]
        )
        let answer = try request(
            type, [.requestedTransport(17)] + (lifetime.map { [.lifetime($0)] } ?? []) + attributes)
        guard answer.type.messageClass == .successResponse else {
            throw TestFailure("Allocate failed: \(String(describing: try? answer.errorCode))")
        }
        return answer
    }

    func refresh(lifetime: UInt32) throws -> Bool {
        try request(STUNMessageType(method: .refresh, class: .request), [.lifetime(lifetime)]).type.messageClass
            == .successResponse
    }

    func createPermission(_ peer: TransportAddress) throws -> Bool {
        let transaction = TransactionID.random()
        return try request(
            STUNMessageType(method: .createPermission, class: .request),
            [.xorPeerAddress(peer, transactionID: transaction)], transaction: transaction
        ).type.messageClass == .successResponse
    }

    func channelBind(_ channel: UInt16, to peer: TransportAddress) throws -> Bool {
        let transaction = TransactionID.random()
        return try request(
            STUNMessageType(method: .channelBind, class: .request),
            [.channelNumber(channel), .xorPeerAddress(peer, transactionID: transaction)], transaction: transaction
        ).type.messageClass == .successResponse
    }

    func sendChannelData(_ channel: UInt16, _ payload: [UInt8]) throws {
        let header = [
            UInt8(channel >> 8), UInt8(channel & 0xFF), UInt8(payload.count >> 8), UInt8(payload.count & 0xFF),
        ]
        try socket.send(header + payload, to: server)
    }

    /// The next ChannelData message: its channel and payload.
    func receiveChannelData(timeout: Double = 5) throws -> (channel: UInt16, payload: [UInt8])? {
        while let (bytes, _) = try socket.receive(timeout: timeout) {
            guard bytes.count >= 4, bytes[0] & 0xC0 == 0x40 else { continue }
            let length = Int(bytes[2]) << 8 | Int(bytes[3])
            guard bytes.count >= 4 + length else { throw TestFailure("short ChannelData") }
            return (UInt16(bytes[0]) << 8 | UInt16(bytes[1]), Array(bytes[4..<(4 + length)]))
        }
        return nil
    }
}
