import DTLSSRTP
import NIOCore
import Testing

/// SRTP and SRTCP through libsrtp: round trips, tag sizes, tampering, replay, key handling.
@Suite struct SRTPSessionTests {
    struct Keys {
        let key: [UInt8]
        let salt: [UInt8]

        init(_ profile: SRTPProfile) {
            key = (0..<profile.keyLength).map { _ in UInt8.random(in: 0...255) }
            salt = (0..<profile.saltLength).map { _ in UInt8.random(in: 0...255) }
        }
    }

    static func pair(_ profile: SRTPProfile, replayWindow: Int = 1024) throws -> (SRTPSession, SRTPSession) {
        let keys = Keys(profile)
        let outbound = try SRTPSession(
            profile: profile, masterKey: keys.key, masterSalt: keys.salt, direction: .outbound,
            replayWindow: replayWindow)
        let inbound = try SRTPSession(
            profile: profile, masterKey: keys.key, masterSalt: keys.salt, direction: .inbound,
            replayWindow: replayWindow)
        return (outbound, inbound)
    }

    /// An RTP packet (RFC 3550 §5.1): V=2, PT 111, the given sequence number and SSRC, `payload` bytes.
    static func rtp(sequence: UInt16, ssrc: UInt32 = 0x1234_5678, payload: Int = 160) -> [UInt8] {
        var packet: [UInt8] = [0x80, 111, UInt8(sequence >> 8), UInt8(sequence & 0xff), 0, 0, 0x10, 0]
        packet += withUnsafeBytes(of: ssrc.bigEndian, Array.init)
        packet += (0..<payload).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ Int(sequence)) }
        return packet
    }

    /// An RTCP receiver report with no report blocks (RFC 3550 §6.4.2).
    static func rtcp(ssrc: UInt32 = 0x1234_5678) -> [UInt8] {
        [0x80, 201, 0, 1] + withUnsafeBytes(of: ssrc.bigEndian, Array.init)
    }

    static func protect(_ session: SRTPSession, _ packet: [UInt8], rtcp: Bool = false) throws -> [UInt8] {
        var buffer = packet + [UInt8](repeating: 0, count: SRTPSession.maximumTrailerLength)
        let length = try buffer.withUnsafeMutableBytes { raw in
            rtcp
                ? try session.protectRTCP(raw, length: packet.count) : try session.protectRTP(raw, length: packet.count)
        }
        return Array(buffer.prefix(length))
    }

    static func unprotect(_ session: SRTPSession, _ packet: [UInt8], rtcp: Bool = false) throws -> [UInt8] {
        var buffer = packet
        let length = try buffer.withUnsafeMutableBytes { raw in
            rtcp
                ? try session.unprotectRTCP(raw, length: packet.count)
                : try session.unprotectRTP(raw, length: packet.count)
        }
        return Array(buffer.prefix(length))
    }

    static func expectSRTPError(
        _ code: SRTPError.Code, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
    ) {
        do {
            try body()
            Issue.record("expected \(code.rawValue), nothing was thrown", sourceLocation: sourceLocation)
        } catch let error as SRTPError {
            #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test(arguments: SRTPProfile.allCases)
    func rtpRoundTripsWithTheProfilesTag(profile: SRTPProfile) throws {
        let (outbound, inbound) = try Self.pair(profile)
        let packet = Self.rtp(sequence: 1)
        let protected = try Self.protect(outbound, packet)
        let tag = profile == .aeadAES128GCM ? 16 : 10
        #expect(protected.count == packet.count + tag)
        #expect(protected.prefix(12) == packet.prefix(12), "the RTP header stays in the clear")
        #expect(protected[12..<packet.count] != packet[12...], "the payload is encrypted")
        #expect(try Self.unprotect(inbound, protected) == packet)
    }

    @Test(arguments: SRTPProfile.allCases)
    func rtcpRoundTripsAndIsReplayProtected(profile: SRTPProfile) throws {
        let (outbound, inbound) = try Self.pair(profile)
        let packet = Self.rtcp()
        let protected = try Self.protect(outbound, packet, rtcp: true)
        #expect(protected.count > packet.count + 4)
        #expect(try Self.unprotect(inbound, protected, rtcp: true) == packet)
        Self.expectSRTPError(.replayed) { _ = try Self.unprotect(inbound, protected, rtcp: true) }
    }

    /// libsrtp checks replay before authentication, so the order matters: the forgery first, then the genuine
    /// packet (accepted: the forgery did not poison the window), then the genuine one again (a replay).
    @Test(arguments: SRTPProfile.allCases)
    func tamperingAndReplayAreDistinctErrors(profile: SRTPProfile) throws {
        let (outbound, inbound) = try Self.pair(profile)
        let protected = try Self.protect(outbound, Self.rtp(sequence: 7))
        var forged = protected
        forged[20] ^= 0x01
        Self.expectSRTPError(.authenticationFailed) { _ = try Self.unprotect(inbound, forged) }
        var truncatedTag = protected
        truncatedTag[truncatedTag.count - 1] ^= 0x80
        Self.expectSRTPError(.authenticationFailed) { _ = try Self.unprotect(inbound, truncatedTag) }
        #expect(try Self.unprotect(inbound, protected) == Self.rtp(sequence: 7))
        Self.expectSRTPError(.replayed) { _ = try Self.unprotect(inbound, protected) }
    }

    @Test(arguments: SRTPProfile.allCases)
    func reorderingInsideTheWindowIsAcceptedAndOlderPacketsAreNot(profile: SRTPProfile) throws {
        let (outbound, inbound) = try Self.pair(profile, replayWindow: 128)
        let packets = try (1...300).map { try Self.protect(outbound, Self.rtp(sequence: UInt16($0))) }
        _ = try Self.unprotect(inbound, packets[299])
        // 128 packets of reordering are tolerated...
        _ = try Self.unprotect(inbound, packets[299 - 127])
        _ = try Self.unprotect(inbound, packets[250])
        // ...anything older is refused like a replay.
        Self.expectSRTPError(.replayed) { _ = try Self.unprotect(inbound, packets[10]) }
    }

    @Test(arguments: SRTPProfile.allCases)
    func aWrongKeyFailsAuthentication(profile: SRTPProfile) throws {
        let (outbound, _) = try Self.pair(profile)
        let other = Keys(profile)
        let stranger = try SRTPSession(
            profile: profile, masterKey: other.key, masterSalt: other.salt, direction: .inbound)
        let protected = try Self.protect(outbound, Self.rtp(sequence: 1))
        Self.expectSRTPError(.authenticationFailed) { _ = try Self.unprotect(stranger, protected) }
    }

    @Test func byteBuffersAreTransformedInPlace() throws {
        let (outbound, inbound) = try Self.pair(.aeadAES128GCM)
        let packet = Self.rtp(sequence: 42, payload: 1200)
        var buffer = ByteBuffer(bytes: packet)
        try outbound.protectRTP(&buffer)
        #expect(buffer.readableBytes == packet.count + 16)
        try inbound.unprotectRTP(&buffer)
        #expect(Array(buffer.readableBytesView) == packet)

        var report = ByteBuffer(bytes: Self.rtcp())
        try outbound.protectRTCP(&report)
        try inbound.unprotectRTCP(&report)
        #expect(Array(report.readableBytesView) == Self.rtcp())

        var garbage = ByteBuffer(bytes: [0x80, 111, 0, 1])
        Self.expectSRTPError(.malformedPacket) { try inbound.unprotectRTP(&garbage) }
        #expect(garbage.readableBytes == 4, "a refused packet is left as it was")
    }

    @Test func keysAreCheckedAndNeverReusedForTwoOutboundSessions() throws {
        let keys = Keys(.aes128CMHMACSHA1_80)
        Self.expectSRTPError(.badKey) {
            _ = try SRTPSession(
                profile: .aes128CMHMACSHA1_80, masterKey: keys.key, masterSalt: [1, 2, 3], direction: .outbound)
        }
        Self.expectSRTPError(.badKey) {
            _ = try SRTPSession(
                profile: .aeadAES128GCM, masterKey: keys.key, masterSalt: keys.salt, direction: .outbound)
        }
        let first = try SRTPSession(
            profile: .aes128CMHMACSHA1_80, masterKey: keys.key, masterSalt: keys.salt, direction: .outbound)
        Self.expectSRTPError(.badKey) {
            _ = try SRTPSession(
                profile: .aes128CMHMACSHA1_80, masterKey: keys.key, masterSalt: keys.salt, direction: .outbound)
        }
        // The receiving side of the same key is fine.
        let inbound = try SRTPSession(
            profile: .aes128CMHMACSHA1_80, masterKey: keys.key, masterSalt: keys.salt, direction: .inbound)
        #expect(try Self.unprotect(inbound, try Self.protect(first, Self.rtp(sequence: 3))) == Self.rtp(sequence: 3))
    }

    @Test func protectNeedsRoomForTheTag() throws {
        let (outbound, _) = try Self.pair(.aeadAES128GCM)
        var exact = Self.rtp(sequence: 1)
        let count = exact.count
        Self.expectSRTPError(.malformedPacket) {
            _ = try exact.withUnsafeMutableBytes { try outbound.protectRTP($0, length: count) }
        }
        #expect(SRTPSession.maximumTrailerLength >= 16)
    }
}
