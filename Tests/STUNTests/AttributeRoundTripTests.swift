import STUN
import Testing

@Suite("Attribute constructors and readers round-trip")
struct AttributeRoundTripTests {
    let id = TransactionID(high: 0x0102_0304, low: 0x0506_0708_090A_0B0C)

    func roundTrip(_ attributes: [STUNAttribute], type: STUNMessageType = .bindingRequest) throws -> STUNMessage {
        let message = STUNMessage(type: type, transactionID: id, attributes: attributes)
        let bytes = try message.encode(integrity: [1, 2, 3], fingerprint: true)
        #expect(bytes.count % 4 == 0)
        let decoded = try STUNMessage(decoding: bytes)
        #expect(decoded.type == type)
        #expect(decoded.transactionID == id)
        #expect(Array(decoded.attributes.dropLast(2)) == attributes)
        #expect(decoded.verifyIntegrity(key: [1, 2, 3]) == .valid)
        #expect(decoded.verifyFingerprint() == true)
        return decoded
    }

    static let addresses = [
        "192.0.2.1:32853", "0.0.0.0:0", "255.255.255.255:65535", "[2001:db8::1]:3478", "[::]:1",
        "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", "[::ffff:10.0.0.1]:9",
    ].map { TransportAddress($0)! }

    @Test("XOR addresses, IPv4 and IPv6", arguments: addresses)
    func xorAddresses(address: TransportAddress) throws {
        let message = try roundTrip([
            .xorMappedAddress(address, transactionID: id), .xorRelayedAddress(address, transactionID: id),
            .xorPeerAddress(address, transactionID: id), .mappedAddress(address), .alternateServer(address),
        ])
        #expect(try message.xorMappedAddress == address)
        #expect(try message.xorRelayedAddress == address)
        #expect(try message.xorRelayedAddresses == [address])
        #expect(try message.xorPeerAddress == address)
        #expect(try message.mappedAddress == address)
        #expect(try message.alternateServer == address)
        // The XOR really happens: the wire value differs from the clear one (except where the pad is all zeros).
        let xor = STUNAttribute.xorMappedAddress(address, transactionID: id).value
        #expect(xor != STUNAttribute.mappedAddress(address).value)
        #expect(xor.count == (address.ip.isIPv4 ? 8 : 20))
    }

    @Test("several XOR-PEER-ADDRESS attributes keep their order")
    func peerAddresses() throws {
        let peers = Self.addresses
        let message = try roundTrip(
            peers.map { .xorPeerAddress($0, transactionID: id) },
            type: .init(method: .createPermission, class: .request))
        #expect(try message.xorPeerAddresses == peers)
        #expect(try message.xorPeerAddress == peers[0])
        #expect(message.attributes(.xorPeerAddress).count == peers.count)
    }

    @Test("XOR uses this message's transaction ID for IPv6")
    func xorUsesTransactionID() throws {
        let address = TransportAddress("[2001:db8::1]:3478")!
        let other = TransactionID(high: 9, low: 9)
        let attribute = STUNAttribute.xorPeerAddress(address, transactionID: other)
        let message = try STUNMessage(
            decoding: STUNMessage(type: .bindingRequest, transactionID: id, attributes: [attribute]).encode())
        #expect(try message.xorPeerAddress != address)
        let v4 = TransportAddress("10.0.0.1:80")!
        let v4Message = try STUNMessage(
            decoding: STUNMessage(
                type: .bindingRequest, transactionID: id, attributes: [.xorPeerAddress(v4, transactionID: other)]
            ).encode())
        #expect(try v4Message.xorPeerAddress == v4)  // IPv4 XORs the cookie only.
    }

    @Test("TURN attributes")
    func turnAttributes() throws {
        let payload: [UInt8] = [1, 2, 3, 4, 5]
        let message = try roundTrip(
            [
                .lifetime(600), .requestedTransport(17), .channelNumber(0x4001), .data(payload),
                .evenPort(reserveNextHigherPort: true), .reservationToken(0x0102_0304_0506_0708), .dontFragment,
                .requestedAddressFamily(.ipv6), .additionalAddressFamily(.ipv6),
                .addressErrorCode(family: .ipv6, .addressFamilyNotSupported),
            ], type: .init(method: .allocate, class: .request))
        #expect(try message.lifetime == 600)
        #expect(try message.requestedTransport == 17)
        #expect(try message.channelNumber == 0x4001)
        #expect(message.data == payload)
        #expect(try message.evenPort == true)
        #expect(try message.reservationToken == 0x0102_0304_0506_0708)
        #expect(message.dontFragment)
        #expect(try message.requestedAddressFamily == .ipv6)
        #expect(try message.additionalAddressFamily == .ipv6)
        let addressError = try #require(try message.addressErrorCode)
        #expect(addressError.family == .ipv6)
        #expect(addressError.code == 440)
        #expect(addressError.reason == "Address Family not Supported")

        let empty = try roundTrip([.evenPort(reserveNextHigherPort: false), .data([])])
        #expect(try empty.evenPort == false)
        #expect(empty.data == [])
        #expect(try empty.lifetime == nil)
        #expect(!empty.dontFragment)
        #expect(STUNAttribute.requestedTransportUDP == .requestedTransport(17))
    }

    @Test("error code class/number split and reason limits")
    func errorCode() throws {
        for code in [300, 399, 400, 401, 420, 438, 486, 508, 600, 699] {
            let errorCode = try #require(STUNErrorCode(rawValue: code))
            let message = try roundTrip([.errorCode(errorCode, "reason \(code)")])
            let decoded = try #require(try message.errorCode)
            #expect(decoded.code == code)
            #expect(decoded.reason == "reason \(code)")
        }
        #expect(STUNAttribute.errorCode(.unauthorized).value == [0, 0, 4, 1] + Array("Unauthorized".utf8))
        #expect(STUNErrorCode(rawValue: 299) == nil)
        #expect(STUNErrorCode(rawValue: 700) == nil)
        // A reason longer than 763 bytes is cut on a scalar boundary: 254 three-byte scalars fit, 255 do not.
        let long = String(repeating: "\u{30DE}", count: 300)
        let attribute = STUNAttribute.errorCode(.badRequest, long)
        #expect(attribute.value.count == 4 + 762)
        let decoded = try #require(try roundTrip([attribute]).errorCode)
        #expect(decoded.reason == String(repeating: "\u{30DE}", count: 254))
    }

    @Test("unknown attributes, text, ICE, password algorithms")
    func otherAttributes() throws {
        let message = try roundTrip([
            .unknownAttributes([0x0003, 0x7FFF, 0x0031]), .username("alice"), .realm("example.org"),
            .nonce("n0nce"), .software("Switchboard 1"), .alternateDomain("turn.example.org"),
            .priority(0x6e00_01ff), .useCandidate, .iceControlling(42), .iceControlled(43),
            .passwordAlgorithms([.md5, .sha256]), .passwordAlgorithm(.md5),
            .userHash(username: "alice", realm: "example.org"),
        ])
        #expect(try message.unknownAttributes == [0x0003, 0x7FFF, 0x0031])
        #expect(try message.username == "alice")
        #expect(try message.realm == "example.org")
        #expect(try message.nonce == "n0nce")
        #expect(try message.software == "Switchboard 1")
        #expect(try message.alternateDomain == "turn.example.org")
        #expect(try message.priority == 0x6e00_01ff)
        #expect(message.useCandidate)
        #expect(try message.iceControlling == 42)
        #expect(try message.iceControlled == 43)
        #expect(try message.passwordAlgorithms == [.md5, .sha256])
        #expect(try message.passwordAlgorithm == .md5)
        #expect(try message.userHash == LongTermCredential.userHash(username: "alice", realm: "example.org"))
        // An odd number of types pads to 4 bytes.
        #expect(try roundTrip([.unknownAttributes([0x0003])]).unknownAttributes == [0x0003])
        #expect(try roundTrip([.unknownAttributes([])]).unknownAttributes == [])
    }

    @Test("unknown comprehension-required attributes are reported once each, optional ones never")
    func unknownComprehensionRequired() throws {
        let message = try roundTrip([
            STUNAttribute(type: .init(rawValue: 0x0003), value: [0, 0, 0, 0]),
            STUNAttribute(type: .init(rawValue: 0x8FFF), value: [1]),
            STUNAttribute(type: .init(rawValue: 0x0031), value: []),
            STUNAttribute(type: .init(rawValue: 0x0003), value: []),
            .lifetime(1),
        ])
        #expect(message.unknownComprehensionRequired == [0x0003, 0x0031])
        #expect(try message.unknownAttributes == [])
    }

    @Test("duplicates: readers take the first, attributes keep all")
    func duplicates() throws {
        let message = try roundTrip([.lifetime(1), .lifetime(2), .software("a"), .software("b")])
        #expect(try message.lifetime == 1)
        #expect(try message.software == "a")
        #expect(message.attributes(.lifetime).map(\.value) == [[0, 0, 0, 1], [0, 0, 0, 2]])
    }

    @Test("built messages verify without a wire form; equality ignores wire bytes")
    func builtMessages() throws {
        let built = STUNMessage(type: .bindingRequest, transactionID: id, attributes: [.software("x")])
        #expect(built.verifyIntegrity(key: [1]) == .missing)
        #expect(built.verifyFingerprint() == nil)
        let decoded = try STUNMessage(decoding: built.encode())
        #expect(decoded == built)
        #expect(decoded.hashValue == built.hashValue)
        // Zero-length and maximum-size values.
        let big = [UInt8](repeating: 7, count: 0xFFFF - 24)
        let bigMessage = try STUNMessage(
            decoding: STUNMessage(
                type: .init(method: .data, class: .indication),
                transactionID: id, attributes: [.data(big)]
            ).encode())
        #expect(bigMessage.data == big)
    }

    @Test("encoding refuses what the length fields cannot describe")
    func tooLarge() {
        let data = STUNAttribute.data([UInt8](repeating: 0, count: 65507))
        let larger = STUNAttribute.data([UInt8](repeating: 0, count: 65530))
        let peer = STUNAttribute.xorPeerAddress(TransportAddress("10.0.0.1:5")!, transactionID: id)
        let message = STUNMessage(
            type: .init(method: .data, class: .indication), transactionID: id,
            attributes: [peer, data])
        // A Data indication wrapping a maximum-size UDP datagram fits, but not with integrity on top.
        #expect(throws: Never.self) { try message.encode(fingerprint: true) }
        expectSTUNError(.messageTooLarge) { try message.encode(integrity: [1], fingerprint: true) }
        let overflowing = STUNMessage(type: .bindingRequest, transactionID: id, attributes: [peer, larger])
        expectSTUNError(.messageTooLarge) { try overflowing.encode() }
        let huge = STUNMessage(
            type: .bindingRequest, transactionID: id,
            attributes: [.data([UInt8](repeating: 0, count: 0x10000))])
        expectSTUNError(.messageTooLarge) { try huge.encode() }
        expectSTUNError(.invalidArgument) { try message.encode(integritySHA256: [1], integritySHA256Length: 12) }
    }
}
