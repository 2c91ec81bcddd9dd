import CertificateFingerprint
import DTLSSRTP
import Foundation
import MediaCore
import NIOCore
import NIOPosix
import STUN
import Synchronization

/// One party of a secure-relay call in a test: a real UDP socket on loopback, a full-agent ICE check sender
/// (controlling, USE-CANDIDATE), a `DTLSEngine` client and SRTP sessions from its keys.
final class MediaPeer: @unchecked Sendable {
    let channel: any Channel
    let identity: DTLSIdentity
    /// This peer's ICE credentials (new ones after ``restartICE()``).
    private(set) var ice = ICECredentials.random()
    private let incoming: DatagramQueue
    // The DTLS and SRTP state: a test drives one peer from one task at a time.
    private var engine: DTLSEngine?
    private var outbound: SRTPSession?
    private var inbound: SRTPSession?

    var port: Int { channel.localAddress?.port ?? 0 }

    static func make() async throws -> MediaPeer {
        let queue = DatagramQueue()
        let channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Collector(queue: queue))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return try MediaPeer(channel: channel, incoming: queue)
    }

    private init(channel: any Channel, incoming: DatagramQueue) throws {
        self.channel = channel
        self.incoming = incoming
        self.identity = try DTLSIdentity.generate()
    }

    func close() { channel.close(promise: nil) }

    /// New ICE credentials, as a browser's `restartIce()` makes for its next offer.
    func restartICE() { ice = ICECredentials.random() }

    /// An audio-only offer or answer from this peer, with its own ICE credentials, certificate and a host
    /// candidate, as a browser would send it (`fingerprint` overrides the certificate's to forge a mismatch).
    func sdp(setup: String, fingerprint: DTLSFingerprint? = nil, dataChannel: Bool = true) -> String {
        let mids = dataChannel ? "0 1" : "0"
        var lines = [
            "v=0", "o=- 4611731400430051336 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE \(mids)",
            "a=msid-semantic: WMS", "m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 0.0.0.0",
            "a=candidate:1 1 udp 2122260223 127.0.0.1 \(port) typ host", "a=ice-ufrag:\(ice.ufrag)",
            "a=ice-pwd:\(ice.password)", "a=ice-options:trickle",
            "a=fingerprint:\((fingerprint ?? identity.fingerprint()).sdpValue)", "a=setup:\(setup)", "a=mid:0",
            "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level", "a=sendrecv", "a=rtcp-mux",
            "a=rtpmap:111 opus/48000/2", "a=ssrc:1001 cname:peer",
        ]
        if dataChannel {
            lines += [
                "m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "c=IN IP4 0.0.0.0", "a=ice-ufrag:\(ice.ufrag)",
                "a=ice-pwd:\(ice.password)", "a=fingerprint:\((fingerprint ?? identity.fingerprint()).sdpValue)",
                "a=setup:\(setup)", "a=mid:1", "a=sctp-port:5000", "a=max-message-size:262144",
            ]
        }
        return lines.map { $0 + "\r\n" }.joined()
    }

    /// Switchboard's transport in the SDP this peer was given, and the media endpoint's address.
    struct ServerTransport {
        let remote: RemoteTransport
        let address: SocketAddress
        let fingerprint: DTLSFingerprint
    }

    static func serverTransport(in sdp: String, setup: String) throws -> ServerTransport {
        let remote = try SDPRewriter.remoteTransport(of: sdp, setups: [setup])
        let parsed = try SDPLines(parsing: sdp)
        guard let candidate = SDPLines.attribute("candidate", in: parsed.media[0]) else {
            throw TestFailure("no candidate in Switchboard's SDP")
        }
        let fields = candidate.split(separator: " ")
        guard fields.count >= 8, let port = Int(fields[5]) else { throw TestFailure("bad candidate \(candidate)") }
        return ServerTransport(
            remote: remote, address: try SocketAddress(ipAddress: String(fields[4]), port: port),
            fingerprint: try DTLSFingerprint.parse(remote.fingerprint))
    }

    func send(_ bytes: [UInt8], to address: SocketAddress) {
        channel.writeAndFlush(AddressedEnvelope(remoteAddress: address, data: ByteBuffer(bytes: bytes)), promise: nil)
    }

    /// The next datagram that arrives, or nil within `timeout` seconds.
    func receive(timeout: Double = 5) async -> [UInt8]? {
        await incoming.next(timeout: timeout)
    }

    /// Sends connectivity checks (ICE-CONTROLLING, USE-CANDIDATE) until one is answered with success.
    @discardableResult
    func connectICE(
        _ server: ServerTransport, password: String? = nil, attempts: Int = 5, ufrag: String? = nil
    ) async throws -> STUNMessage {
        let username = "\(server.remote.credentials.ufrag):\(ufrag ?? ice.ufrag)"
        for _ in 0..<attempts {
            let request = STUNMessage(
                type: .bindingRequest, transactionID: .random(),
                attributes: [.username(username), .iceControlling(7), .priority(1_845_501_695), .useCandidate])
            send(
                try request.encode(
                    integrity: Array((password ?? server.remote.credentials.password).utf8), fingerprint: true),
                to: server.address)
            while let datagram = await receive(timeout: 1) {
                guard PacketClass.classify(datagram) == .stun, let response = try? STUNMessage(decoding: datagram),
                    response.transactionID == request.transactionID
                else { continue }
                return response
            }
        }
        throw TestFailure("no answer to connectivity checks")
    }

    /// A DTLS client handshake with Switchboard, expecting its certificate.
    func handshake(_ server: ServerTransport, timeout: Int64 = 10) async throws {
        let engine = try DTLSEngine(
            .init(role: .client, identity: identity, remoteFingerprint: server.fingerprint))
        for datagram in try engine.start() { send(datagram, to: server.address) }
        let deadline = ContinuousClock.now + .seconds(timeout)
        while !engine.isEstablished, ContinuousClock.now < deadline {
            guard let datagram = await receive(timeout: 1) else {
                for datagram in try engine.handleTimeout() { send(datagram, to: server.address) }
                continue
            }
            guard PacketClass.classify(datagram) == .dtls else { continue }
            for reply in try engine.receive(datagram) { send(reply, to: server.address) }
        }
        guard case .established(let material) = engine.state else { throw TestFailure("DTLS did not complete") }
        let (outbound, inbound) = try material.makeSessions()
        self.engine = engine
        self.outbound = outbound
        self.inbound = inbound
    }

    static func rtp(sequence: UInt16, ssrc: UInt32 = 1001, payload: [UInt8]) -> [UInt8] {
        var packet: [UInt8] = [0x80, 111]
        packet += [UInt8(sequence >> 8), UInt8(sequence & 0xFF)]
        packet += [0, 0, UInt8(sequence >> 8), UInt8(sequence & 0xFF)]
        packet += [UInt8(ssrc >> 24), UInt8((ssrc >> 16) & 0xFF), UInt8((ssrc >> 8) & 0xFF), UInt8(ssrc & 0xFF)]
        return packet + payload
    }

    /// `packet` protected with this peer's outbound SRTP session.
    func protect(_ packet: [UInt8], rtcp: Bool = false) throws -> [UInt8] {
        guard let outbound else { throw TestFailure("no SRTP yet") }
        var buffer = ByteBuffer(bytes: packet)
        if rtcp { try outbound.protectRTCP(&buffer) } else { try outbound.protectRTP(&buffer) }
        return Array(buffer.readableBytesView)
    }

    /// The next SRTP/SRTCP packet that arrives, unprotected; nil when none authenticates within `timeout`.
    func receiveMedia(timeout: Double = 3) async throws -> [UInt8]? {
        let deadline = ContinuousClock.now + .milliseconds(Int64(timeout * 1000))
        while ContinuousClock.now < deadline {
            guard let datagram = await receive(timeout: timeout) else { return nil }
            guard PacketClass.classify(datagram) == .rtpOrRTCP else { continue }
            guard let inbound else { throw TestFailure("no SRTP yet") }
            var buffer = ByteBuffer(bytes: datagram)
            if PacketClass.isRTCP(datagram) {
                try inbound.unprotectRTCP(&buffer)
            } else {
                try inbound.unprotectRTP(&buffer)
            }
            return Array(buffer.readableBytesView)
        }
        return nil
    }

    /// DTLS application data (what SCTP would send) as datagrams for Switchboard.
    func applicationData(_ bytes: [UInt8]) throws -> [[UInt8]] {
        guard let engine else { throw TestFailure("no DTLS yet") }
        return try engine.write(bytes)
    }

    /// The next DTLS application data record that arrives.
    func receiveApplicationData(timeout: Double = 3) async throws -> [UInt8]? {
        while let datagram = await receive(timeout: timeout) {
            guard PacketClass.classify(datagram) == .dtls else { continue }
            guard let engine else { throw TestFailure("no DTLS yet") }
            let records = try engine.process(datagram).applicationData
            if let first = records.first { return first }
        }
        return nil
    }
}

private final class Collector: ChannelInboundHandler, Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    let queue: DatagramQueue

    init(queue: DatagramQueue) { self.queue = queue }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        queue.push(Array(unwrapInboundIn(data).data.readableBytesView))
    }
}

/// Received datagrams in order, with a wait that may time out without ending the queue (unlike a cancelled
/// `AsyncStream` iterator): one reader at a time.
final class DatagramQueue: Sendable {
    private struct State {
        var items: [[UInt8]] = []
        var waiter: (id: Int, continuation: CheckedContinuation<[UInt8]?, Never>)?
        var nextID = 0
    }
    private let state = Mutex(State())

    func push(_ item: [UInt8]) {
        let waiter = state.withLock { state -> CheckedContinuation<[UInt8]?, Never>? in
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter.continuation
            }
            state.items.append(item)
            return nil
        }
        waiter?.resume(returning: item)
    }

    func next(timeout: Double) async -> [UInt8]? {
        await withCheckedContinuation { continuation in
            let id = state.withLock { state -> Int? in
                if !state.items.isEmpty {
                    continuation.resume(returning: state.items.removeFirst())
                    return nil
                }
                state.nextID += 1
                state.waiter = (state.nextID, continuation)
                return state.nextID
            }
            guard let id else { return }
            Task {
                try? await Task.sleep(for: .milliseconds(Int64(timeout * 1000)))
                let expired = state.withLock { state -> CheckedContinuation<[UInt8]?, Never>? in
                    guard let waiter = state.waiter, waiter.id == id else { return nil }
                    state.waiter = nil
                    return waiter.continuation
                }
                expired?.resume(returning: nil)
            }
        }
    }
}
