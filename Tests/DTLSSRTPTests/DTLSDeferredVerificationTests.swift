import CertificateFingerprint
import DTLSSRTP
import Testing

/// A server that does not know the client's fingerprint yet (Chrome sends its ClientHello before its answer
/// reaches the server), and DTLS application data (SCTP of data channels) both ways.
@Suite struct DTLSDeferredVerificationTests {
    func handshake(_ client: DTLSEngine, _ server: DTLSEngine) throws {
        var toServer = try client.start()
        for _ in 0..<10 where !(toServer.isEmpty && client.isEstablished && server.isEstablished) {
            var toClient: [[UInt8]] = []
            for datagram in toServer { toClient += try server.receive(datagram) }
            toServer = []
            for datagram in toClient { toServer += try client.receive(datagram) }
        }
    }

    func pair(serverExpects: DTLSFingerprint?) throws -> (DTLSEngine, DTLSEngine, DTLSIdentity) {
        let clientIdentity = try DTLSIdentity.generate()
        let serverIdentity = try DTLSIdentity.generate()
        let client = try DTLSEngine(
            .init(role: .client, identity: clientIdentity, remoteFingerprint: serverIdentity.fingerprint()))
        let server = try DTLSEngine(.init(role: .server, identity: serverIdentity, remoteFingerprint: serverExpects))
        return (client, server, clientIdentity)
    }

    @Test func aServerWithoutTheFingerprintCompletesUnverifiedAndChecksItLater() throws {
        let (client, server, clientIdentity) = try pair(serverExpects: nil)
        try handshake(client, server)
        #expect(server.isEstablished)
        #expect(!server.isPeerVerified)
        let stranger = try DTLSIdentity.generate()
        #expect(!server.verifyPeer(stranger.fingerprint()))
        #expect(!server.isPeerVerified)
        #expect(server.verifyPeer(clientIdentity.fingerprint(.sha384)))
        #expect(server.isPeerVerified)
        #expect(server.peerFingerprints.contains(clientIdentity.fingerprint(.sha256)))
    }

    @Test func aKnownFingerprintIsVerifiedAtTheHandshake() throws {
        let clientIdentity = try DTLSIdentity.generate()
        let serverIdentity = try DTLSIdentity.generate()
        let client = try DTLSEngine(
            .init(role: .client, identity: clientIdentity, remoteFingerprint: serverIdentity.fingerprint()))
        let server = try DTLSEngine(
            .init(role: .server, identity: serverIdentity, remoteFingerprint: clientIdentity.fingerprint()))
        try handshake(client, server)
        #expect(server.isPeerVerified)
        #expect(client.isPeerVerified)
    }

    @Test func applicationDataCrossesBothWaysRecordByRecord() throws {
        let (client, server, _) = try pair(serverExpects: nil)
        try handshake(client, server)
        let first: [UInt8] = Array("sctp packet one".utf8)
        let second: [UInt8] = Array(repeating: 0xAB, count: 1100)
        var received: [[UInt8]] = []
        for datagram in try client.write(first) + client.write(second) {
            received += try server.process(datagram).applicationData
        }
        #expect(received == [first, second])
        let reply = try server.write(Array("reply".utf8))
        #expect(try reply.flatMap { try client.process($0).applicationData } == [Array("reply".utf8)])
    }

    @Test func writingBeforeTheHandshakeIsRefused() throws {
        let (client, _, _) = try pair(serverExpects: nil)
        #expect(throws: DTLSError.self) { try client.write([1, 2, 3]) }
    }
}
