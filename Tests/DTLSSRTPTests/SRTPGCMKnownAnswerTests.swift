import Crypto
import DTLSSRTP
import Foundation
import Testing

/// Known answers for the two ciphers under SRTPSession, each checked against an independent computation:
///
/// - RFC 3711 Appendix B.2: the AES-CM keystream of the `openssl`-command reference that
///   ``SRTPKnownAnswerTests`` uses for AES_CM_128_HMAC_SHA1_80.
/// - RFC 7714 §16/§17: an AEAD_AES_128_GCM transform written here over swift-crypto (IV of §8.1/§9.1, AAD of
///   §8.2/§9.2, 16-byte tag), first shown to reproduce the RFC's session-key vectors, then compared with what
///   libsrtp emits for a master key after the RFC 3711 key derivation (with RFC 7714 errata 4938: the 96-bit
///   master salt is multiplied by 2^16 before the AES-CM PRF).
@Suite struct SRTPGCMKnownAnswerTests {
    typealias Reference = SRTPKnownAnswerTests

    // MARK: RFC 3711 Appendix B.2

    static let b2SessionKey = hex("2B7E151628AED2A6ABF7158809CF4F3C")
    static let b2SessionSalt = hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD")
    static let b2FirstBlocks = hex(
        """
        E03EAD0935C95E80E166B16DD92B4EB4
        D23513162B02D0F72A43A2FE4A5F97AB
        41E95B3BB0A2E8DD477901E4FCA894C0
        """)
    static let b2LastBlocks = hex(
        """
        EC8CDF7398607CB0F2D21675EA9EA1E4
        362B7C3C6773516318A077D7FC5073AE
        6A2CC3787889374FBEB4C81B17BA6C44
        """)
    /// "Keystream segment length: 1044512 octets (65282 AES blocks)".
    static let b2SegmentLength = 1_044_512

    /// The IV of RFC 3711 §4.1.1 with SSRC 0 and index 0 is the salt times 2^16, the table's first counter; the
    /// reference AES-CTR gives the table's first three keystream blocks from it, and its last three from the
    /// counters the table prints for them.
    @Test func aesCMKeystreamMatchesAppendixB2() throws {
        let iv = Self.b2SessionSalt + [0, 0]
        #expect(iv == Self.hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000"))
        #expect(try Reference.aesCTR(key: Self.b2SessionKey, iv: iv, length: 48) == Self.b2FirstBlocks)
        let lastCounter = Self.hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFDFEFF")
        #expect(try Reference.aesCTR(key: Self.b2SessionKey, iv: lastCounter, length: 48) == Self.b2LastBlocks)
    }

    /// The whole 65282-block segment in one run from the first counter: it starts and ends with the table's rows,
    /// so the counter carries from ...FEFF to ...FF00 inside one packet's keystream.
    @Test func aesCMKeystreamSegmentEndsAsInAppendixB2() throws {
        let segment = try Self.zeroesThroughAESCTR(
            key: Self.b2SessionKey, iv: Self.b2SessionSalt + [0, 0], length: Self.b2SegmentLength)
        #expect(segment.count == Self.b2SegmentLength)
        #expect(Array(segment.prefix(48)) == Self.b2FirstBlocks)
        #expect(Array(segment.suffix(48)) == Self.b2LastBlocks)
    }

    /// `Reference.aesCTR` writes all its input before reading any output, which stalls on a pipe past 64 KiB:
    /// this feeds the zeroes from a file instead, through the same `openssl enc -aes-128-ctr`.
    static func zeroesThroughAESCTR(key: [UInt8], iv: [UInt8], length: Int) throws -> [UInt8] {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("srtp-b2-\(UUID().uuidString)")
        try Data(count: length).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        return try Reference.openssl(
            [
                "enc", "-aes-128-ctr", "-nosalt", "-K", Reference.hexString(key), "-iv", Reference.hexString(iv),
                "-in", file.path,
            ],
            input: [])
    }

    // MARK: RFC 7714 §16 (SRTP) and §17 (SRTCP), session keys given directly

    static let rfcKey = hex("000102030405060708090a0b0c0d0e0f")
    /// "Quid pro quo".
    static let rfcSalt = hex("517569642070726f2071756f")
    /// §16: header 8040f17b 8041f8d3 5501a0b2 (sequence f17b, SSRC 5501a0b2, ROC 0) and 38 bytes of payload.
    static let rfcRTP = hex(
        """
        8040f17b 8041f8d3 5501a0b2 47616c6c
        69612065 7374206f 6d6e6973 20646976
        69736120 696e2070 61727465 73207472
        6573
        """)
    static let rfcRTPIV = hex("51753c6580c2726f20718414")
    /// §16.1.1: header, ciphertext, 16-byte tag.
    static let rfcSRTP = hex(
        """
        8040f17b 8041f8d3 5501a0b2 f24de3a3
        fb34de6c acba861c 9d7e4bca be633bd5
        0d294e6f 42a5f47a 51c7d19b 36de3adf
        8833899d 7f27beb1 6a9152cf 765ee439
        0cce
        """)
    /// The RTCP packet §17.1–§17.4 transform (SSRC "Mars"); the preamble of §17 prints a slightly different one
    /// (81c8000e…), which the subsections' outputs do not belong to.
    static let rfcRTCP = hex(
        """
        81c8000d 4d617273 4e545031 4e545032
        52545020 0000042a 0000e930 4c756e61
        deadbeef deadbeef deadbeef deadbeef
        deadbeef
        """)
    static let rfcSRTCPIndex: UInt32 = 0x5d4
    static let rfcRTCPIV = hex("517524055203726f207170bb")
    /// §17.1: header, ciphertext, tag, E=1 || SRTCP index.
    static let rfcSRTCP = hex(
        """
        81c8000d 4d617273 63e94885 dcdab67c
        a727d766 2f6b7e99 7ff5c0f7 6c06f32d
        c676a5f1 730d6fda 4ce09b46 86303ded
        0bb9275b c84aa458 96cf4d2f c5abf872
        45d9eade 800005d4
        """)
    /// §17.3: authenticated only (E=0): the packet, tag, index.
    static let rfcSRTCPTagOnly =
        rfcRTCP + hex("841dd968 3dd78ec9 2ae58790 125f62b3 000005d4")

    @Test func rtpTransformReproducesRFC7714Section16Point1() throws {
        #expect(Self.rtpIV(salt: Self.rfcSalt, ssrc: 0x5501_a0b2, roc: 0, sequence: 0xf17b) == Self.rfcRTPIV)
        #expect(try Self.protectRTP(Self.rfcRTP, key: Self.rfcKey, salt: Self.rfcSalt, roc: 0) == Self.rfcSRTP)
    }

    /// §16.1.2: the tag verifies and the payload decrypts; one flipped bit anywhere (header as AAD, ciphertext,
    /// tag) makes AES.GCM.open refuse the packet.
    @Test func rtpTagCheckOfRFC7714Section16Point1() throws {
        #expect(try Self.openRTP(Self.rfcSRTP, key: Self.rfcKey, salt: Self.rfcSalt, roc: 0) == Self.rfcRTP)
        // The marker bit (header, AAD only: SSRC and SEQ would change the IV too), the first ciphertext byte, the
        // last tag byte.
        for bit in [1 * 8 + 7, 12 * 8, (Self.rfcSRTP.count - 1) * 8 + 3] {
            var tampered = Self.rfcSRTP
            tampered[bit / 8] ^= 1 << UInt8(bit % 8)
            #expect(throws: CryptoKitError.self, "bit \(bit)") {
                try Self.openRTP(tampered, key: Self.rfcKey, salt: Self.rfcSalt, roc: 0)
            }
        }
        #expect(throws: CryptoKitError.self, "wrong ROC") {
            try Self.openRTP(Self.rfcSRTP, key: Self.rfcKey, salt: Self.rfcSalt, roc: 1)
        }
    }

    @Test func rtcpTransformReproducesRFC7714Section17() throws {
        #expect(Self.rtcpIV(salt: Self.rfcSalt, ssrc: 0x4d61_7273, index: Self.rfcSRTCPIndex) == Self.rfcRTCPIV)
        #expect(
            try Self.protectRTCP(Self.rfcRTCP, key: Self.rfcKey, salt: Self.rfcSalt, index: Self.rfcSRTCPIndex)
                == Self.rfcSRTCP)
        #expect(
            try Self.protectRTCP(
                Self.rfcRTCP, key: Self.rfcKey, salt: Self.rfcSalt, index: Self.rfcSRTCPIndex, encrypt: false)
                == Self.rfcSRTCPTagOnly)
        // §17.2-style check of the tag: the E-flag and index are authenticated too.
        var tampered = Self.rfcSRTCP
        tampered[tampered.count - 1] ^= 0x01
        #expect(throws: CryptoKitError.self) {
            try Self.openRTCP(tampered, key: Self.rfcKey, salt: Self.rfcSalt)
        }
        #expect(try Self.openRTCP(Self.rfcSRTCP, key: Self.rfcKey, salt: Self.rfcSalt) == Self.rfcRTCP)
    }

    // MARK: libsrtp, from a master key, against the transform above

    /// Session keys of RFC 3711 §4.3.1 for a 12-byte AEAD master salt, padded to 14 bytes (errata 4938).
    static func sessionKeys(masterKey: [UInt8], masterSalt: [UInt8], rtcp: Bool) throws -> (
        key: [UInt8], salt: [UInt8]
    ) {
        let padded = masterSalt + [0, 0]
        let key = try Reference.derive(
            label: rtcp ? 0x03 : 0x00, length: 16, masterKey: masterKey, masterSalt: padded)
        let salt = try Reference.derive(
            label: rtcp ? 0x05 : 0x02, length: 12, masterKey: masterKey, masterSalt: padded)
        return (key, salt)
    }

    /// The RFC 7714 packet first, then a few more of the stream, across a sequence-number wrap (ROC 0 to 1).
    @Test func libsrtpProtectsRTPAsTheIndependentTransform() throws {
        // Master key and salt used by no other test: an outbound master key protects one session only.
        let masterKey = Array("Switchboard KAT1".utf8)
        let masterSalt = Array("GCM RTP salt".utf8)
        let keys = try Self.sessionKeys(masterKey: masterKey, masterSalt: masterSalt, rtcp: false)
        let outbound = try SRTPSession(
            profile: .aeadAES128GCM, masterKey: masterKey, masterSalt: masterSalt, direction: .outbound)
        let inbound = try SRTPSession(
            profile: .aeadAES128GCM, masterKey: masterKey, masterSalt: masterSalt, direction: .inbound)

        let stream: [(sequence: UInt16, roc: UInt32)] = [(0xf17b, 0), (0xf17c, 0), (0xffff, 0), (0x0000, 1), (5, 1)]
        for (sequence, roc) in stream {
            var packet = Self.rfcRTP
            packet[2] = UInt8(sequence >> 8)
            packet[3] = UInt8(sequence & 0xff)
            let expected = try Self.protectRTP(packet, key: keys.key, salt: keys.salt, roc: roc)
            let protected = try Self.protect(packet) { try outbound.protectRTP($0, length: $1) }
            #expect(protected == expected, "sequence \(sequence), ROC \(roc)")
            #expect(try Self.unprotect(expected) { try inbound.unprotectRTP($0, length: $1) } == packet)
        }
        // A fresh packet (sequence 6, ROC 1) with one tag bit flipped: refused as inauthentic, not as a replay.
        var fresh = Self.rfcRTP
        fresh[2] = 0
        fresh[3] = 6
        var tampered = try Self.protectRTP(fresh, key: keys.key, salt: keys.salt, roc: 1)
        tampered[tampered.count - 1] ^= 0x80
        let error = #expect(throws: SRTPError.self) {
            try Self.unprotect(tampered) { try inbound.unprotectRTP($0, length: $1) }
        }
        #expect(error?.code == .authenticationFailed)
    }

    /// libsrtp numbers SRTCP packets itself; the index it writes (with E=1) is what the transform is run with.
    @Test func libsrtpProtectsRTCPAsTheIndependentTransform() throws {
        let masterKey = Array("Switchboard KAT2".utf8)
        let masterSalt = Array("GCM RTCPsalt".utf8)
        let keys = try Self.sessionKeys(masterKey: masterKey, masterSalt: masterSalt, rtcp: true)
        let outbound = try SRTPSession(
            profile: .aeadAES128GCM, masterKey: masterKey, masterSalt: masterSalt, direction: .outbound)
        let inbound = try SRTPSession(
            profile: .aeadAES128GCM, masterKey: masterKey, masterSalt: masterSalt, direction: .inbound)

        var indices: [UInt32] = []
        for _ in 0..<3 {
            let protected = try Self.protect(Self.rfcRTCP) { try outbound.protectRTCP($0, length: $1) }
            try #require(protected.count == Self.rfcRTCP.count + 16 + 4)
            let word = protected.suffix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            #expect(word & 0x8000_0000 != 0, "E-flag: encrypted")
            let index = word & 0x7fff_ffff
            indices.append(index)
            let expected = try Self.protectRTCP(Self.rfcRTCP, key: keys.key, salt: keys.salt, index: index)
            #expect(protected == expected, "SRTCP index \(index)")
            #expect(try Self.unprotect(expected) { try inbound.unprotectRTCP($0, length: $1) } == Self.rfcRTCP)
        }
        #expect(indices == [1, 2, 3])
    }

    static func protect(
        _ packet: [UInt8], _ call: (UnsafeMutableRawBufferPointer, Int) throws -> Int
    ) throws -> [UInt8] {
        var buffer = packet + [UInt8](repeating: 0, count: SRTPSession.maximumTrailerLength)
        let length = try buffer.withUnsafeMutableBytes { try call($0, packet.count) }
        return Array(buffer.prefix(length))
    }

    static func unprotect(
        _ packet: [UInt8], _ call: (UnsafeMutableRawBufferPointer, Int) throws -> Int
    ) throws -> [UInt8] {
        var buffer = packet
        let length = try buffer.withUnsafeMutableBytes { try call($0, packet.count) }
        return Array(buffer.prefix(length))
    }

    // MARK: The independent RFC 7714 transform, over swift-crypto

    /// §8.1: IV = (00 00 || SSRC || ROC || SEQ) XOR salt.
    static func rtpIV(salt: [UInt8], ssrc: UInt32, roc: UInt32, sequence: UInt16) -> [UInt8] {
        let block = [0, 0] + bigEndian(ssrc) + bigEndian(roc) + bigEndian(sequence)
        return zip(block, salt).map { $0 ^ $1 }
    }

    /// §9.1: IV = (00 00 || SSRC || 00 00 || 0 || SRTCP index) XOR salt.
    static func rtcpIV(salt: [UInt8], ssrc: UInt32, index: UInt32) -> [UInt8] {
        let block = [0, 0] + bigEndian(ssrc) + [0, 0] + bigEndian(index & 0x7fff_ffff)
        return zip(block, salt).map { $0 ^ $1 }
    }

    /// RFC 3550 §5.1: 12 bytes, the CSRC list, and the header extension if X is set.
    static func rtpHeaderLength(_ packet: [UInt8]) -> Int {
        var length = 12 + 4 * Int(packet[0] & 0x0f)
        if packet[0] & 0x10 != 0 {
            length += 4 + 4 * (Int(packet[length + 2]) << 8 | Int(packet[length + 3]))
        }
        return length
    }

    /// §8.2: the header (the AAD) in the clear, then the encrypted payload and the 16-byte tag.
    static func protectRTP(_ packet: [UInt8], key: [UInt8], salt: [UInt8], roc: UInt32) throws -> [UInt8] {
        let header = Array(packet.prefix(rtpHeaderLength(packet)))
        let iv = rtpIV(salt: salt, ssrc: uint32(packet, at: 8), roc: roc, sequence: uint16(packet, at: 2))
        let box = try AES.GCM.seal(
            packet.dropFirst(header.count), using: SymmetricKey(data: key), nonce: AES.GCM.Nonce(data: iv),
            authenticating: header)
        return header + box.ciphertext + box.tag
    }

    static func openRTP(_ packet: [UInt8], key: [UInt8], salt: [UInt8], roc: UInt32) throws -> [UInt8] {
        let headerLength = rtpHeaderLength(packet)
        let iv = rtpIV(salt: salt, ssrc: uint32(packet, at: 8), roc: roc, sequence: uint16(packet, at: 2))
        let box = try AES.GCM.SealedBox(
            nonce: AES.GCM.Nonce(data: iv), ciphertext: packet[headerLength..<(packet.count - 16)],
            tag: packet.suffix(16))
        let header = packet.prefix(headerLength)
        return Array(header) + (try AES.GCM.open(box, using: SymmetricKey(data: key), authenticating: header))
    }

    /// §9.2 with E=1: AAD = the first 8 bytes || E || index; out: header, ciphertext, tag, E || index. With E=0
    /// (§9.3) the whole packet is AAD and only the tag is added.
    static func protectRTCP(
        _ packet: [UInt8], key: [UInt8], salt: [UInt8], index: UInt32, encrypt: Bool = true
    ) throws -> [UInt8] {
        let word = bigEndian(index | (encrypt ? 0x8000_0000 : 0))
        let iv = rtcpIV(salt: salt, ssrc: uint32(packet, at: 4), index: index)
        let clear = encrypt ? Array(packet.prefix(8)) : packet
        let box = try AES.GCM.seal(
            packet.dropFirst(clear.count), using: SymmetricKey(data: key), nonce: AES.GCM.Nonce(data: iv),
            authenticating: clear + word)
        return clear + box.ciphertext + box.tag + word
    }

    /// The inverse of ``protectRTCP`` for E=1.
    static func openRTCP(_ packet: [UInt8], key: [UInt8], salt: [UInt8]) throws -> [UInt8] {
        let word = Array(packet.suffix(4))
        let index = uint32(word, at: 0) & 0x7fff_ffff
        let iv = rtcpIV(salt: salt, ssrc: uint32(packet, at: 4), index: index)
        let box = try AES.GCM.SealedBox(
            nonce: AES.GCM.Nonce(data: iv), ciphertext: packet[8..<(packet.count - 20)],
            tag: packet[(packet.count - 20)..<(packet.count - 4)])
        let header = Array(packet.prefix(8))
        return header + (try AES.GCM.open(box, using: SymmetricKey(data: key), authenticating: header + word))
    }

    static func bigEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        withUnsafeBytes(of: value.bigEndian, Array.init)
    }

    static func uint32(_ bytes: [UInt8], at offset: Int) -> UInt32 {
        bytes[offset..<offset + 4].reduce(0) { $0 << 8 | UInt32($1) }
    }

    static func uint16(_ bytes: [UInt8], at offset: Int) -> UInt16 {
        UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    /// Hex with any whitespace between the digits, as the RFCs print it.
    static func hex(_ text: String) -> [UInt8] {
        Reference.hex(String(text.filter { !$0.isWhitespace }))
    }
}
