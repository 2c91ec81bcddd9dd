import STUN
import Testing

@Suite("RFC 5769 test vectors")
struct RFC5769Tests {
    let shortTermKey = ShortTermCredential.key(password: RFC5769.shortTermPassword)

    /// Flips one bit of the byte at `offset` and decodes again.
    func tampered(_ bytes: [UInt8], at offset: Int) throws -> STUNMessage {
        var copy = bytes
        copy[offset] ^= 0x01
        return try STUNMessage(decoding: copy)
    }

    /// The attributes before MESSAGE-INTEGRITY, to rebuild a vector from parsed fields.
    func unauthenticated(_ message: STUNMessage) -> [STUNAttribute] {
        message.attributes.filter {
            $0.type != .messageIntegrity && $0.type != .messageIntegritySHA256 && $0.type != .fingerprint
        }
    }

    @Test("§2.1 sample request")
    func sampleRequest() throws {
        let message = try STUNMessage(decoding: RFC5769.request)
        #expect(message.type == .bindingRequest)
        #expect(message.transactionID == TransactionID(bytes: RFC5769.transactionID))
        #expect(try message.software == "STUN test client")
        #expect(try message.priority == 0x6e00_01ff)
        #expect(try message.iceControlled == 0x932f_f9b1_5126_3b36)
        #expect(try message.username == "evtj:h6vY")
        #expect(
            message.attributes.map(\.type) == [
                .software, .priority, .iceControlled, .username, .messageIntegrity, .fingerprint,
            ])
        #expect(message.unknownComprehensionRequired.isEmpty)
        #expect(message.verifyIntegrity(key: shortTermKey) == .valid)
        #expect(message.verifyIntegrity(key: Array("VOkJxbRl1RmTxUk/WvJxBT".utf8)) == .invalid)
        #expect(message.verifyIntegrity(key: shortTermKey, algorithm: .hmacSHA256) == .missing)
        #expect(message.verifyFingerprint() == true)

        // Re-encode from the parsed fields with the RFC's 0x20 padding: byte for byte.
        let rebuilt = STUNMessage(
            type: message.type, transactionID: message.transactionID, attributes: unauthenticated(message))
        #expect(try rebuilt.encode(integrity: shortTermKey, fingerprint: true, padding: 0x20) == RFC5769.request)
        // With zero padding everything but padding, HMAC and CRC is the same, and it still verifies.
        let zeroPadded = try rebuilt.encode(integrity: shortTermKey, fingerprint: true)
        #expect(zeroPadded.count == RFC5769.request.count)
        #expect(zeroPadded[0..<73] == RFC5769.request[0..<73])
        let reparsed = try STUNMessage(decoding: zeroPadded)
        #expect(reparsed.verifyIntegrity(key: shortTermKey) == .valid)
        #expect(reparsed.verifyFingerprint() == true)
        #expect(try reparsed.username == "evtj:h6vY")
    }

    @Test("§2.1 tampering: a flipped byte breaks integrity or fingerprint")
    func sampleRequestTampered() throws {
        // A byte of SOFTWARE: both MESSAGE-INTEGRITY and FINGERPRINT fail.
        let software = try tampered(RFC5769.request, at: 25)
        #expect(software.verifyIntegrity(key: shortTermKey) == .invalid)
        #expect(software.verifyFingerprint() == false)
        // A byte of the HMAC itself.
        let mac = try tampered(RFC5769.request, at: 80)
        #expect(mac.verifyIntegrity(key: shortTermKey) == .invalid)
        #expect(mac.verifyFingerprint() == false)
        // The CRC: integrity still holds, the fingerprint does not.
        let crc = try tampered(RFC5769.request, at: RFC5769.request.count - 1)
        #expect(crc.verifyIntegrity(key: shortTermKey) == .valid)
        #expect(crc.verifyFingerprint() == false)
        // Padding is not covered by anything but the HMAC and CRC, which still cover it.
        let padding = try tampered(RFC5769.request, at: 74)
        #expect(try padding.username == "evtj:h6vY")
        #expect(padding.verifyIntegrity(key: shortTermKey) == .invalid)
    }

    @Test("§2.2 sample IPv4 response")
    func sampleIPv4Response() throws {
        let message = try STUNMessage(decoding: RFC5769.ipv4Response)
        #expect(message.type == .bindingSuccess)
        #expect(message.transactionID == TransactionID(bytes: RFC5769.transactionID))
        #expect(try message.software == "test vector")
        #expect(try message.xorMappedAddress == TransportAddress("192.0.2.1:32853"))
        #expect(try message.mappedAddress == nil)
        #expect(message.verifyIntegrity(key: shortTermKey) == .valid)
        #expect(message.verifyIntegrity(key: []) == .invalid)
        #expect(message.verifyFingerprint() == true)
        #expect(try tampered(RFC5769.ipv4Response, at: 42).verifyIntegrity(key: shortTermKey) == .invalid)

        let address = try #require(try message.xorMappedAddress)
        let rebuilt = STUNMessage(
            type: .bindingSuccess, transactionID: message.transactionID,
            attributes: [.software("test vector"), .xorMappedAddress(address, transactionID: message.transactionID)])
        #expect(try rebuilt.encode(integrity: shortTermKey, fingerprint: true, padding: 0x20) == RFC5769.ipv4Response)
    }

    @Test("§2.3 sample IPv6 response")
    func sampleIPv6Response() throws {
        let message = try STUNMessage(decoding: RFC5769.ipv6Response)
        #expect(message.type == .bindingSuccess)
        #expect(try message.software == "test vector")
        let address = try #require(try message.xorMappedAddress)
        #expect(address == TransportAddress("[2001:db8:1234:5678:11:2233:4455:6677]:32853"))
        #expect(address.description == "[2001:db8:1234:5678:11:2233:4455:6677]:32853")
        #expect(message.verifyIntegrity(key: shortTermKey) == .valid)
        #expect(message.verifyFingerprint() == true)
        #expect(try tampered(RFC5769.ipv6Response, at: 50).verifyIntegrity(key: shortTermKey) == .invalid)

        let rebuilt = STUNMessage(
            type: .bindingSuccess, transactionID: message.transactionID,
            attributes: [.software("test vector"), .xorMappedAddress(address, transactionID: message.transactionID)])
        #expect(try rebuilt.encode(integrity: shortTermKey, fingerprint: true, padding: 0x20) == RFC5769.ipv6Response)
    }

    @Test("§2.4 sample request with long-term authentication")
    func sampleLongTermRequest() throws {
        let message = try STUNMessage(decoding: RFC5769.longTermRequest)
        #expect(message.type == .bindingRequest)
        #expect(message.transactionID == TransactionID(bytes: RFC5769.longTermTransactionID))
        let username = try #require(try message.username)
        #expect(username == RFC5769.longTermUsername)
        #expect(Array(username.utf8) == hex("e3839ee38388e383aae38383e382afe382b9"))
        #expect(try message.nonce == RFC5769.longTermNonce)
        #expect(try message.realm == RFC5769.longTermRealm)
        #expect(message.verifyFingerprint() == nil)

        let key = LongTermCredential.key(
            username: RFC5769.longTermUsername, realm: RFC5769.longTermRealm, password: RFC5769.longTermPassword)
        #expect(key.count == 16)
        #expect(message.verifyIntegrity(key: key) == .valid)
        let wrongKey = LongTermCredential.key(
            username: RFC5769.longTermUsername, realm: RFC5769.longTermRealm, password: "TheMatrix")
        #expect(message.verifyIntegrity(key: wrongKey) == .invalid)
        #expect(try tampered(RFC5769.longTermRequest, at: 30).verifyIntegrity(key: key) == .invalid)

        let rebuilt = STUNMessage(
            type: .bindingRequest, transactionID: message.transactionID,
            attributes: [.username(username), .nonce(RFC5769.longTermNonce), .realm(RFC5769.longTermRealm)])
        #expect(try rebuilt.encode(integrity: key) == RFC5769.longTermRequest)
    }
}
