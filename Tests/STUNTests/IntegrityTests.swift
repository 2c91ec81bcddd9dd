import STUN
import TestSupport
import Testing

/// Bitwise CRC-32 (IEEE, reflected), independent of the module's table-driven one.
func referenceCRC32(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
        crc ^= UInt32(byte)
        for _ in 0..<8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (0 &- (crc & 1)))
        }
    }
    return ~crc
}

@Suite("MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256, FINGERPRINT")
struct IntegrityTests {
    let id = TransactionID(high: 0xDEAD_BEEF, low: 42)
    let key: [UInt8] = Array("key".utf8)

    @Test("the reference CRC matches the check value, and FINGERPRINT is CRC XOR 0x5354554E")
    func fingerprint() throws {
        #expect(referenceCRC32(Array("123456789".utf8)) == 0xCBF4_3926)
        var generator = SplitMix64(seed: 1)
        for length in [0, 1, 3, 4, 100, 1000] {
            let payload = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let bytes = try STUNMessage(
                type: .init(method: .send, class: .indication), transactionID: id, attributes: [.data(payload)]
            ).encode(fingerprint: true)
            let crc =
                UInt32(bytes[bytes.count - 4]) << 24 | UInt32(bytes[bytes.count - 3]) << 16
                | UInt32(bytes[bytes.count - 2]) << 8 | UInt32(bytes[bytes.count - 1])
            #expect(crc == referenceCRC32(Array(bytes.dropLast(8))) ^ 0x5354_554E)
            #expect(try STUNMessage(decoding: bytes).verifyFingerprint() == true)
        }
    }

    @Test("MESSAGE-INTEGRITY-SHA256 truncated to 16...32 bytes in steps of 4", arguments: [16, 20, 24, 28, 32])
    func truncation(length: Int) throws {
        let message = STUNMessage(type: .bindingRequest, transactionID: id, attributes: [.username("u")])
        let bytes = try message.encode(integritySHA256: key, integritySHA256Length: length, fingerprint: true)
        let decoded = try STUNMessage(decoding: bytes)
        #expect(decoded.attribute(.messageIntegritySHA256)?.value.count == length)
        #expect(decoded.verifyIntegrity(key: key, algorithm: .hmacSHA256) == .valid)
        #expect(decoded.verifyIntegrity(key: key + [1], algorithm: .hmacSHA256) == .invalid)
        // HMAC pads short keys with zeros, so a key with a trailing zero byte is the same key (RFC 2104 §2).
        #expect(decoded.verifyIntegrity(key: key + [0], algorithm: .hmacSHA256) == .valid)
        #expect(decoded.verifyIntegrity(key: key, algorithm: .hmacSHA1) == .missing)
        #expect(decoded.verifyFingerprint() == true)
        // A shorter value is a prefix of the full HMAC computed with its own length; it is not the full one cut.
        let full = try STUNMessage(decoding: message.encode(integritySHA256: key))
        if length < 32 {
            let fullValue = try #require(full.attribute(.messageIntegritySHA256)?.value)
            let shortValue = try #require(decoded.attribute(.messageIntegritySHA256)?.value)
            #expect(Array(fullValue.prefix(length)) != shortValue)
        }
        var flipped = bytes
        flipped[bytes.count - 9] ^= 0x80  // last byte of the HMAC
        #expect(try STUNMessage(decoding: flipped).verifyIntegrity(key: key, algorithm: .hmacSHA256) == .invalid)
    }

    @Test("integrity attributes of a size the RFC does not allow are invalid", arguments: [0, 4, 12, 19, 21, 36])
    func badSizes(size: Int) throws {
        let mac = [UInt8](repeating: 0, count: size)
        for (type, algorithm) in [
            (STUNAttributeType.messageIntegrity, IntegrityAlgorithm.hmacSHA1), (.messageIntegritySHA256, .hmacSHA256),
        ] {
            let bytes = try STUNMessage(
                type: .bindingRequest, transactionID: id, attributes: [STUNAttribute(type: type, value: mac)]
            ).encode()
            #expect(try STUNMessage(decoding: bytes).verifyIntegrity(key: key, algorithm: algorithm) == .invalid)
        }
        let fingerprint = try STUNMessage(
            type: .bindingRequest, transactionID: id, attributes: [STUNAttribute(type: .fingerprint, value: mac)]
        ).encode()
        if size != 4 {
            #expect(try STUNMessage(decoding: fingerprint).verifyFingerprint() == false)
        }
    }

    @Test("both integrity attributes, then FINGERPRINT")
    func both() throws {
        let sha1Key: [UInt8] = [1, 2, 3]
        let bytes = try STUNMessage(type: .bindingRequest, transactionID: id, attributes: [.software("s")])
            .encode(integrity: sha1Key, integritySHA256: key, fingerprint: true)
        let decoded = try STUNMessage(decoding: bytes)
        #expect(
            decoded.attributes.map(\.type) == [.software, .messageIntegrity, .messageIntegritySHA256, .fingerprint])
        #expect(decoded.verifyIntegrity(key: sha1Key) == .valid)
        #expect(decoded.verifyIntegrity(key: key, algorithm: .hmacSHA256) == .valid)
        #expect(decoded.verifyIntegrity(key: key) == .invalid)
        #expect(decoded.verifyFingerprint() == true)
    }

    @Test("attributes after MESSAGE-INTEGRITY are ignored, but still covered by FINGERPRINT")
    func afterIntegrity() throws {
        let base = STUNMessage(type: .bindingRequest, transactionID: id, attributes: [.username("alice")])
        let signed = try STUNMessage(decoding: base.encode(integrity: key))
        let mi = try #require(signed.attribute(.messageIntegrity))
        // USERNAME, MESSAGE-INTEGRITY, then a REALM and a LIFETIME an attacker appended, then FINGERPRINT.
        let smuggled = STUNMessage(
            type: .bindingRequest, transactionID: id,
            attributes: [.username("alice"), mi, .realm("evil"), .lifetime(1)])
        let decoded = try STUNMessage(decoding: smuggled.encode(fingerprint: true))
        #expect(decoded.attributes.map(\.type) == [.username, .messageIntegrity, .fingerprint])
        #expect(decoded.ignoredAttributeCount == 2)
        #expect(try decoded.realm == nil)
        #expect(try decoded.lifetime == nil)
        #expect(decoded.verifyIntegrity(key: key) == .valid)
        #expect(decoded.verifyFingerprint() == true)

        // After MESSAGE-INTEGRITY-SHA256 even MESSAGE-INTEGRITY is ignored.
        let sha = try STUNMessage(decoding: base.encode(integritySHA256: key))
        let mi256 = try #require(sha.attribute(.messageIntegritySHA256))
        let reordered = try STUNMessage(
            decoding: STUNMessage(
                type: .bindingRequest, transactionID: id, attributes: [.username("alice"), mi256, mi]
            )
            .encode())
        #expect(reordered.attributes.map(\.type) == [.username, .messageIntegritySHA256])
        #expect(reordered.verifyIntegrity(key: key, algorithm: .hmacSHA256) == .valid)
        #expect(reordered.verifyIntegrity(key: key) == .missing)
        // A second MESSAGE-INTEGRITY is ignored too.
        let twice = try STUNMessage(
            decoding: STUNMessage(type: .bindingRequest, transactionID: id, attributes: [.username("alice"), mi, mi])
                .encode())
        #expect(twice.attributes(.messageIntegrity).count == 1)
        #expect(twice.verifyIntegrity(key: key) == .valid)
    }

    @Test("verification covers the header: changing the type or transaction ID breaks it")
    func header() throws {
        let bytes = try STUNMessage(type: .bindingRequest, transactionID: id, attributes: [.software("s")])
            .encode(integrity: key)
        for offset in [1, 8, 19] {
            var copy = bytes
            copy[offset] ^= 0x04
            #expect(try STUNMessage(decoding: copy).verifyIntegrity(key: key) == .invalid, "offset \(offset)")
        }
    }
}
