import CertificateFingerprint
import DTLSSRTP
import Testing

/// Two in-memory engines, pumped back to back until neither has anything to send.
@Suite struct DTLSEngineTests {
    struct Pair {
        let client: DTLSEngine
        let server: DTLSEngine

        init(
            clientIdentity: DTLSIdentity, serverIdentity: DTLSIdentity,
            clientExpects: DTLSFingerprint? = nil, serverExpects: DTLSFingerprint? = nil,
            clientProfiles: [SRTPProfile] = [.aeadAES128GCM, .aes128CMHMACSHA1_80],
            serverProfiles: [SRTPProfile] = [.aeadAES128GCM, .aes128CMHMACSHA1_80]
        ) throws {
            client = try DTLSEngine(
                .init(
                    role: .client, identity: clientIdentity,
                    remoteFingerprint: clientExpects ?? serverIdentity.fingerprint(), profiles: clientProfiles))
            server = try DTLSEngine(
                .init(
                    role: .server, identity: serverIdentity,
                    remoteFingerprint: serverExpects ?? clientIdentity.fingerprint(), profiles: serverProfiles))
        }

        /// Runs the handshake; returns how many datagrams crossed and the largest one.
        @discardableResult
        func handshake() throws -> (datagrams: Int, largest: Int) {
            var toServer = try client.start()
            var count = 0
            var largest = 0
            for _ in 0..<10 where !(toServer.isEmpty && client.isEstablished && server.isEstablished) {
                var toClient: [[UInt8]] = []
                for datagram in toServer {
                    count += 1
                    largest = max(largest, datagram.count)
                    toClient += try server.receive(datagram)
                }
                toServer = []
                for datagram in toClient {
                    count += 1
                    largest = max(largest, datagram.count)
                    toServer += try client.receive(datagram)
                }
            }
            return (count, largest)
        }
    }

    static func keys(_ engine: DTLSEngine) throws -> SRTPKeyingMaterial {
        guard case .established(let keys) = engine.state else { throw DTLSError(.handshakeFailed, "not established") }
        return keys
    }

    @Test(arguments: [SRTPProfile.aeadAES128GCM, .aes128CMHMACSHA1_80])
    func handshakeAgreesOnAProfileAndMatchingKeys(profile: SRTPProfile) throws {
        let pair = try Pair(
            clientIdentity: try DTLSIdentity.generate(), serverIdentity: try DTLSIdentity.generate(),
            clientProfiles: [profile], serverProfiles: SRTPProfile.allCases)
        let traffic = try pair.handshake()
        #expect(traffic.largest <= 1200)
        let client = try Self.keys(pair.client)
        let server = try Self.keys(pair.server)
        #expect(client.profile == profile && server.profile == profile)
        #expect(client.localKey == server.remoteKey && client.localSalt == server.remoteSalt)
        #expect(client.remoteKey == server.localKey && client.remoteSalt == server.localSalt)
        #expect(client.localKey != client.remoteKey)
        #expect(client.localKey.count == profile.keyLength && client.localSalt.count == profile.saltLength)

        // The exported keys protect media end to end.
        let (clientOut, _) = try client.makeSessions()
        let (_, serverIn) = try server.makeSessions()
        var packet: [UInt8] = [0x80, 111, 0, 1, 0, 0, 0, 1, 0xCA, 0xFE, 0xBA, 0xBE] + (0..<100).map { UInt8($0) }
        let original = packet
        packet += [UInt8](repeating: 0, count: SRTPSession.maximumTrailerLength)
        let count = original.count
        let protected = try packet.withUnsafeMutableBytes { try clientOut.protectRTP($0, length: count) }
        let opened = try packet.withUnsafeMutableBytes { try serverIn.unprotectRTP($0, length: protected) }
        #expect(Array(packet.prefix(opened)) == original)
    }

    /// OpenSSL's server picks the first of its own profiles that the client offered (RFC 5764 §4.1.1 leaves the
    /// choice to the server); the configured order is what decides.
    @Test(arguments: [[SRTPProfile.aeadAES128GCM, .aes128CMHMACSHA1_80], [.aes128CMHMACSHA1_80, .aeadAES128GCM]])
    func theServersOrderPicksAmongTheClientsOffers(serverOrder: [SRTPProfile]) throws {
        let pair = try Pair(
            clientIdentity: try DTLSIdentity.generate(.rsa2048), serverIdentity: try DTLSIdentity.generate(),
            clientProfiles: [.aes128CMHMACSHA1_80, .aeadAES128GCM], serverProfiles: serverOrder)
        try pair.handshake()
        #expect(try Self.keys(pair.server).profile == serverOrder[0])
        #expect(try Self.keys(pair.client).profile == serverOrder[0])
    }

    @Test(arguments: [DTLSFingerprint.Algorithm.sha256, .sha384, .sha512])
    func aThirdPartysCertificateIsRefused(algorithm: DTLSFingerprint.Algorithm) throws {
        let impostor = try DTLSIdentity.generate()
        let real = try DTLSIdentity.generate()
        // The client expects `real`'s fingerprint but talks to `impostor`.
        let pair = try Pair(
            clientIdentity: try DTLSIdentity.generate(), serverIdentity: impostor,
            clientExpects: real.fingerprint(algorithm))
        do {
            try pair.handshake()
            Issue.record("the handshake with the wrong certificate succeeded")
        } catch let error as DTLSError {
            #expect(error.code == .fingerprintMismatch)
        }
        #expect(!pair.client.isEstablished)
        guard case .failed(let failure) = pair.client.state else {
            Issue.record("client not failed")
            return
        }
        #expect(failure.code == .fingerprintMismatch)
    }

    @Test func noCommonProfileFailsTheHandshake() throws {
        let pair = try Pair(
            clientIdentity: try DTLSIdentity.generate(), serverIdentity: try DTLSIdentity.generate(),
            clientProfiles: [.aeadAES128GCM], serverProfiles: [.aes128CMHMACSHA1_80])
        #expect(throws: DTLSError.self) { try pair.handshake() }
        #expect(!pair.client.isEstablished)
    }

    @Test func theEngineRunsOnTheSystemOpenSSL() {
        #expect(DTLSEngine.libraryVersion.hasPrefix("OpenSSL 3."), "\(DTLSEngine.libraryVersion)")
    }

    @Test func garbageAndTruncatedDatagramsFailCleanly() throws {
        let server = try DTLSEngine(
            .init(
                role: .server, identity: try DTLSIdentity.generate(),
                remoteFingerprint: try DTLSIdentity.generate().fingerprint()))
        // DTLS drops records it cannot parse: no reply, no crash, still waiting.
        #expect(try server.receive([UInt8](repeating: 0x42, count: 50)).isEmpty)
        #expect(try server.receive([22, 0xFE, 0xFD, 0, 0]).isEmpty)
        #expect(try server.receive([]).isEmpty)
        #expect(!server.isEstablished)
    }

    @Test func fingerprintsParseAndFormatAsSDPWritesThem() throws {
        let identity = try DTLSIdentity.generate()
        for algorithm in DTLSFingerprint.Algorithm.allCases {
            let fingerprint = identity.fingerprint(algorithm)
            #expect(fingerprint.bytes.count == algorithm.digestLength)
            #expect(try DTLSFingerprint.parse("a=fingerprint:" + fingerprint.sdpValue).matches(fingerprint))
            #expect(try DTLSFingerprint.parse(fingerprint.sdpValue.lowercased()).matches(fingerprint))
        }
        #expect(!identity.fingerprint(.sha256).matches(try DTLSIdentity.generate().fingerprint(.sha256)))
        for weak in [
            "sha-1 AB:CD", "md5 00:11", "sha-256 AB:CD", "sha-256", "sha-256 +B" + String(repeating: ":00", count: 31),
        ] {
            #expect(throws: FingerprintError.self) { try DTLSFingerprint.parse(weak) }
        }
        let reloaded = try DTLSIdentity.fromPEM(
            certificate: identity.certificatePEM, privateKey: identity.privateKeyPEM)
        #expect(reloaded.fingerprint().matches(identity.fingerprint()))
        #expect(throws: DTLSError.self) {
            try DTLSIdentity.fromPEM(
                certificate: identity.certificatePEM, privateKey: try DTLSIdentity.generate().privateKeyPEM)
        }
    }
}
