import STUN
import Testing

@Suite("Malformed input ends in typed errors")
struct MalformedInputTests {
    let id = TransactionID(high: 1, low: 2)

    /// A message header followed by `body`, with the length field set to `length` (default: the body's size).
    func message(_ body: [UInt8], type: UInt16 = 0x0001, length: Int? = nil) -> [UInt8] {
        let length = length ?? body.count
        return [UInt8(type >> 8), UInt8(type & 0xFF), UInt8(length >> 8), UInt8(length & 0xFF)]
            + [0x21, 0x12, 0xA4, 0x42] + id.bytes + body
    }

    func attribute(_ type: UInt16, _ value: [UInt8], padTo4: Bool = true) -> [UInt8] {
        var out = [UInt8(type >> 8), UInt8(type & 0xFF), UInt8(value.count >> 8), UInt8(value.count & 0xFF)] + value
        if padTo4 {
            while out.count % 4 != 0 { out.append(0) }
        }
        return out
    }

    func decoded(_ attributes: [UInt8]...) throws -> STUNMessage {
        try STUNMessage(decoding: message(attributes.flatMap { $0 }))
    }

    @Test("truncated headers", arguments: [0, 1, 4, 19])
    func truncatedHeader(count: Int) {
        expectSTUNError(.truncatedHeader) { try STUNMessage(decoding: Array(RFC5769.request.prefix(count))) }
    }

    @Test("header checks")
    func header() {
        var badCookie = RFC5769.request
        badCookie[5] ^= 0xFF
        expectSTUNError(.invalidMagicCookie) { try STUNMessage(decoding: badCookie) }
        var topBits = RFC5769.request
        topBits[0] |= 0x80
        expectSTUNError(.notSTUN) { try STUNMessage(decoding: topBits) }
        topBits[0] = 0x40
        expectSTUNError(.notSTUN) { try STUNMessage(decoding: topBits) }
        expectSTUNError(.invalidMessageLength) { try STUNMessage(decoding: message([0, 0], length: 2)) }
        expectSTUNError(.lengthMismatch) { try STUNMessage(decoding: message([], length: 4)) }
        expectSTUNError(.lengthMismatch) { try STUNMessage(decoding: message([0, 0, 0, 0], length: 0)) }
        expectSTUNError(.lengthMismatch) { try STUNMessage(decoding: Array(RFC5769.request.dropLast(4))) }
        expectSTUNError(.lengthMismatch) { try STUNMessage(decoding: RFC5769.request + [0, 0, 0, 0]) }
        // ChannelData and DTLS first bytes are not STUN.
        expectSTUNError(.notSTUN) { try STUNMessage(decoding: [0x40] + [UInt8](repeating: 0, count: 23)) }
        #expect(throws: Never.self) { try STUNMessage(decoding: message([])) }
    }

    @Test("attribute bounds")
    func attributeBounds() {
        // Length 8 but only 4 value bytes.
        expectSTUNError(.truncatedAttribute) {
            try STUNMessage(decoding: message([0x80, 0x22, 0x00, 0x08, 1, 2, 3, 4]))
        }
        // A 5-byte value whose padded size (8) overruns the 4 bytes that remain.
        expectSTUNError(.truncatedAttribute) {
            try STUNMessage(decoding: message([0x80, 0x22, 0x00, 0x05, 1, 2, 3, 4]))
        }
        expectSTUNError(.truncatedAttribute) {
            try STUNMessage(decoding: message([0x80, 0x22, 0xFF, 0xFF] + [UInt8](repeating: 0, count: 64)))
        }
        // Something after FINGERPRINT.
        expectSTUNError(.attributeAfterFingerprint) {
            try STUNMessage(decoding: message(attribute(0x8028, [0, 0, 0, 0]) + attribute(0x8022, [0x41])))
        }
    }

    @Test("address attributes: unknown family, wrong lengths")
    func addresses() throws {
        expectSTUNError(.unknownAddressFamily) {
            try decoded(attribute(0x0020, [0, 3, 0, 1, 1, 2, 3, 4])).xorMappedAddress
        }
        expectSTUNError(.unknownAddressFamily) {
            try decoded(attribute(0x0001, [0, 0, 0, 1, 1, 2, 3, 4])).mappedAddress
        }
        expectSTUNError(.invalidAttributeLength) {
            try decoded(attribute(0x0020, [0, 1, 0, 1, 1, 2, 3])).xorMappedAddress
        }
        expectSTUNError(.invalidAttributeLength) {
            try decoded(attribute(0x0020, [0, 2, 0, 1, 1, 2, 3, 4])).xorMappedAddress
        }
        expectSTUNError(.invalidAttributeLength) {
            try decoded(attribute(0x0016, [0, 1, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8])).xorRelayedAddress
        }
        expectSTUNError(.invalidAttributeLength) { try decoded(attribute(0x0012, [0, 1])).xorPeerAddresses }
        expectSTUNError(.invalidAttributeLength) { try decoded(attribute(0x0012, [])).xorPeerAddress }
        // One good peer and one bad: the list throws.
        let good = STUNAttribute.xorPeerAddress(TransportAddress("10.0.0.1:1")!, transactionID: id)
        let message = try decoded(attribute(0x0012, good.value), attribute(0x0012, [0, 9, 0, 0, 0, 0, 0, 0]))
        expectSTUNError(.unknownAddressFamily) { try message.xorPeerAddresses }
        #expect(try message.xorPeerAddress == TransportAddress("10.0.0.1:1"))
        // The reserved first byte is ignored.
        var reserved = good.value
        reserved[0] = 0xFF
        #expect(try decoded(attribute(0x0012, reserved)).xorPeerAddress == TransportAddress("10.0.0.1:1"))
    }

    @Test("error code out of range or malformed")
    func errorCodes() throws {
        expectSTUNError(.invalidErrorCode) { try decoded(attribute(0x0009, [0, 0, 2, 0])).errorCode }
        expectSTUNError(.invalidErrorCode) { try decoded(attribute(0x0009, [0, 0, 7, 0])).errorCode }
        expectSTUNError(.invalidErrorCode) { try decoded(attribute(0x0009, [0, 0, 4, 100])).errorCode }
        expectSTUNError(.invalidAttributeLength) { try decoded(attribute(0x0009, [0, 0, 4])).errorCode }
        expectSTUNError(.invalidUTF8) { try decoded(attribute(0x0009, [0, 0, 4, 1, 0xFF])).errorCode }
        expectSTUNError(.invalidErrorCode) { try decoded(attribute(0x8001, [1, 0, 1, 0])).addressErrorCode }
        // Reserved bits above the class are ignored.
        let lenient = try #require(try decoded(attribute(0x0009, [0xFF, 0xFF, 0xFC, 38])).errorCode)
        #expect(lenient.code == 438)
        #expect(lenient.reason == "")
    }

    @Test("bad UTF-8 in text attributes", arguments: [0x0006, 0x0014, 0x0015, 0x8022, 0x8003] as [UInt16])
    func badUTF8(type: UInt16) throws {
        for bytes in [[0xFF], [0xC3], [0xE3, 0x83], [0xED, 0xA0, 0x80], [0x41, 0x80, 0x41]] as [[UInt8]] {
            let message = try decoded(attribute(type, bytes))
            expectSTUNError(.invalidUTF8) {
                switch type {
                case 0x0006: try message.username
                case 0x0014: try message.realm
                case 0x0015: try message.nonce
                case 0x8022: try message.software
                default: try message.alternateDomain
                }
            }
        }
    }

    @Test("fixed-size attributes with the wrong size")
    func fixedSizes() throws {
        expectSTUNError(.invalidAttributeLength) { try decoded(attribute(0x000D, [0, 0, 1])).lifetime }
        expectSTUNError(.invalidAttributeLength) { try decoded(attribute(0x000D, [0, 0, 0, 0, 1])).lifetime }
        expectSTUNError(.invalidAttributeLength) { try decoded(attribute(0x0019, [17])).requestedTransport }
        expectSTUNError(.invalidAttributeLength) { try decoded(attribute(0x000C, [0x40, 0])).channelNumber }
        expectSTUNError(.invalidAttributeLength) { try decoded(attribute(0x0018, [])).evenPort }
        expectSTUNError(.invalidAttributeLength) { try decoded(attribute(0x0018, [0x80, 0, 0, 0])).evenPort }
        expectSTUNError(.invalidAttributeLength) { try decoded(attribute(0x0022, [1, 2, 3, 4])).reservationToken }
        expectSTUNError(.invalidAttributeLength) { try decoded(attribute(0x0017, [1])).requestedAddressFamily }
        expectSTUNError(.invalidAttributeLength) { try decoded(attribute(0x001E, [1])).userHash }
        expectSTUNError(.invalidAttributeLength) { try decoded(attribute(0x0024, [1])).priority }
        expectSTUNError(.invalidAttributeLength) { try decoded(attribute(0x802A, [1])).iceControlling }
        expectSTUNError(.invalidAttributeLength) { try decoded(attribute(0x000A, [0, 1, 0])).unknownAttributes }
        expectSTUNError(.invalidAttributeLength) { try decoded(attribute(0x001D, [0, 1])).passwordAlgorithm }
        expectSTUNError(.invalidAttributeLength) {
            try decoded(attribute(0x001D, [0, 1, 0, 8, 0, 0])).passwordAlgorithm
        }
        expectSTUNError(.invalidAttributeLength) {
            try decoded(attribute(0x001D, [0, 1, 0, 0, 0, 2, 0, 0])).passwordAlgorithm
        }
        expectSTUNError(.invalidAttributeLength) { try decoded(attribute(0x8002, [0, 1, 0, 0, 0])).passwordAlgorithms }
        // Values these readers accept though a server refuses them: an unknown family, an invalid channel.
        #expect(try decoded(attribute(0x0017, [9, 0, 0, 0])).requestedAddressFamily == AddressFamily(rawValue: 9))
        #expect(try decoded(attribute(0x000C, [0x30, 0, 0, 0])).channelNumber == 0x3000)
        #expect(try decoded(attribute(0x0019, [6, 1, 2, 3])).requestedTransport == 6)
    }
}
