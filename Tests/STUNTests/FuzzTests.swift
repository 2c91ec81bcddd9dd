import STUN
import TestSupport
import Testing

/// Bounded, deterministic mutation testing: decoding, every typed reader, integrity and fingerprint checks and the
/// ChannelData parser must never trap, and whatever decodes must re-encode and decode to the same fields.
@Suite("Fuzz: mutated messages never trap")
struct FuzzTests {
    static let iterations = 200_000
    static let key = ShortTermCredential.key(password: RFC5769.shortTermPassword)

    static let seeds: [[UInt8]] = {
        let id = TransactionID(high: 0x0102_0304, low: 0x0506_0708_090A_0B0C)
        let peer = TransportAddress("[2001:db8::7]:40000")!
        let allocate = STUNMessage(
            type: .init(method: .allocate, class: .successResponse), transactionID: id,
            attributes: [
                .xorRelayedAddress(TransportAddress("203.0.113.9:50000")!, transactionID: id),
                .xorRelayedAddress(peer, transactionID: id), .xorMappedAddress(peer, transactionID: id),
                .lifetime(600), .reservationToken(7), .errorCode(.staleNonce), .unknownAttributes([3, 0x31]),
                .requestedTransportUDP, .channelNumber(0x4000), .evenPort(reserveNextHigherPort: true), .dontFragment,
                .requestedAddressFamily(.ipv6), .additionalAddressFamily(.ipv6), .passwordAlgorithms([.md5, .sha256]),
                .passwordAlgorithm(.sha256), .userHash(username: "u", realm: "r"), .mappedAddress(peer),
                .alternateServer(peer), .addressErrorCode(family: .ipv6, .insufficientCapacity), .priority(1),
                .iceControlling(2), .useCandidate, .alternateDomain("d"),
            ])
        let send = STUNMessage(
            type: .init(method: .send, class: .indication), transactionID: id,
            attributes: [.xorPeerAddress(peer, transactionID: id), .data([1, 2, 3, 4, 5, 6, 7])])
        return [
            RFC5769.request, RFC5769.ipv4Response, RFC5769.ipv6Response, RFC5769.longTermRequest, RFC8489.correctedB1,
            try! allocate.encode(integrity: key, integritySHA256: key, fingerprint: true),
            try! send.encode(fingerprint: true),
            try! ChannelData.encode(channel: ChannelNumber(rawValue: 0x4001)!, payload: [1, 2, 3, 4, 5]),
        ]
    }()

    static let attributeTypes: [UInt16] = [
        0x0001, 0x0006, 0x0008, 0x0009, 0x000A, 0x000C, 0x000D, 0x0012, 0x0013, 0x0014, 0x0015, 0x0016, 0x0017,
        0x0018, 0x0019, 0x001A, 0x001C, 0x001D, 0x001E, 0x0020, 0x0022, 0x0024, 0x0025, 0x8000, 0x8001, 0x8002,
        0x8003, 0x8004, 0x8022, 0x8023, 0x8028, 0x8029, 0x802A,
    ]

    static func mutate(_ seed: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
        var bytes = seed
        // Modulo bias is irrelevant here; speed in debug builds is not.
        func random(_ range: ClosedRange<Int>) -> Int {
            range.lowerBound + Int(truncatingIfNeeded: rng.next() % UInt64(range.upperBound - range.lowerBound + 1))
        }
        func randomByte() -> UInt8 { UInt8(truncatingIfNeeded: rng.next()) }
        func randomBytes(_ count: Int) -> [UInt8] {
            var out = [UInt8](repeating: 0, count: count)
            for index in 0..<count { out[index] = randomByte() }
            return out
        }
        func fixLength() {
            guard bytes.count >= 4 else { return }
            let length = max(0, bytes.count - 20)
            bytes[2] = UInt8(truncatingIfNeeded: length >> 8)
            bytes[3] = UInt8(truncatingIfNeeded: length)
        }
        for _ in 0..<random(1...3) {
            switch random(0...7) {
            case 0:  // bit flips
                for _ in 0..<random(1...4) where !bytes.isEmpty {
                    bytes[random(0...(bytes.count - 1))] ^= 1 << UInt8(random(0...7))
                }
            case 1:  // truncation
                bytes = Array(bytes.prefix(random(0...bytes.count)))
            case 2:  // random header length
                if bytes.count >= 4 {
                    bytes[2] = randomByte()
                    bytes[3] = random(0...1) == 0 ? randomByte() : randomByte() & 0xFC
                }
            case 3:  // a random attribute TLV at an aligned offset, header length fixed up
                let value = randomBytes(random(0...40))
                let type =
                    random(0...3) == 0
                    ? UInt16(random(0...0xFFFF)) : attributeTypes[random(0...(attributeTypes.count - 1))]
                let declared = random(0...4) == 0 ? random(0...0xFFFF) : value.count
                var tlv: [UInt8] = [UInt8(type >> 8), UInt8(type & 0xFF), UInt8(declared >> 8), UInt8(declared & 0xFF)]
                tlv += value
                while tlv.count % 4 != 0 { tlv.append(randomByte()) }
                let slots = max(0, (bytes.count - 20) / 4)
                let offset = bytes.count >= 20 ? 20 + 4 * random(0...slots) : bytes.count
                bytes.insert(contentsOf: tlv, at: min(offset, bytes.count))
                fixLength()
            case 4:  // overwrite an attribute length field
                if bytes.count >= 24 {
                    let offset = 20 + 4 * random(0...((bytes.count - 24) / 4))
                    bytes[offset + 2] = randomByte()
                    bytes[offset + 3] = randomByte()
                }
            case 5:  // random garbage, sometimes with a valid header
                bytes = randomBytes(random(0...64))
                if random(0...1) == 0 && bytes.count >= 20 {
                    bytes[0] &= 0x3F
                    bytes[4...7] = [0x21, 0x12, 0xA4, 0x42]
                    fixLength()
                }
            case 6:  // duplicate a chunk
                if bytes.count > 24 {
                    let start = 20 + 4 * random(0...((bytes.count - 24) / 4))
                    let chunk = Array(bytes[start..<min(bytes.count, start + 4 * random(1...4))])
                    bytes.insert(contentsOf: chunk, at: start)
                    fixLength()
                }
            default:  // overwrite a random byte
                if !bytes.isEmpty {
                    bytes[random(0...(bytes.count - 1))] = randomByte()
                }
            }
        }
        return bytes
    }

    /// Calls every reader; errors are fine, traps are not. Returns a summary so the work is not optimised away.
    static func exercise(_ message: STUNMessage) -> Int {
        var touched = 0
        func note(_ value: (some Any)?) { if value != nil { touched += 1 } }
        note(try? message.xorMappedAddress)
        note(try? message.xorPeerAddress)
        note(try? message.xorPeerAddresses)
        note(try? message.xorRelayedAddress)
        note(try? message.xorRelayedAddresses)
        note(try? message.mappedAddress)
        note(try? message.alternateServer)
        note(try? message.lifetime)
        note(try? message.requestedTransport)
        note(try? message.requestedAddressFamily)
        note(try? message.additionalAddressFamily)
        note(try? message.addressErrorCode)
        note(try? message.channelNumber)
        note(message.data)
        note(message.dontFragment ? true : nil)
        note(try? message.evenPort)
        note(try? message.reservationToken)
        note(try? message.username)
        note(try? message.realm)
        note(try? message.nonce)
        note(try? message.software)
        note(try? message.alternateDomain)
        note(try? message.errorCode)
        note(try? message.unknownAttributes)
        note(message.unknownComprehensionRequired)
        note(try? message.passwordAlgorithm)
        note(try? message.passwordAlgorithms)
        note(try? message.userHash)
        note(try? message.priority)
        note(try? message.iceControlled)
        note(try? message.iceControlling)
        note(message.useCandidate ? true : nil)
        if message.verifyIntegrity(key: key) == .valid { touched += 1 }
        if message.verifyIntegrity(key: key, algorithm: .hmacSHA256) == .valid { touched += 1 }
        note(message.verifyFingerprint())
        return touched
    }

    @Test("200,000 seeded mutations")
    func mutations() throws {
        var rng = SplitMix64(seed: 0x5354_554E)
        var decodedCount = 0
        var channelCount = 0
        var errorCodes: [STUNError.Code: Int] = [:]
        var roundTripFailures: [String] = []
        var work = 0
        for iteration in 0..<Self.iterations {
            let seed = Self.seeds[iteration % Self.seeds.count]
            let input = Self.mutate(seed, &rng)
            _ = PacketClass.classify(input)
            _ = PacketClass.isRTCP(input)
            if let frame = try? ChannelData.parse(input) {
                channelCount += 1
                work += frame.payload.count
            }
            do {
                let message = try STUNMessage(decoding: input)
                decodedCount += 1
                work += Self.exercise(message)
                // Round trip: what decodes re-encodes (padding aside) to the same fields, and re-encoding that is
                // a fixed point.
                let encoded = try message.encode()
                let again = try STUNMessage(decoding: encoded)
                let encodedAgain = try again.encode()
                if again != message || again.ignoredAttributeCount != 0 || encodedAgain != encoded,
                    roundTripFailures.count < 5
                {
                    roundTripFailures.append(hexString(input))
                }
            } catch {
                errorCodes[error.code, default: 0] += 1
            }
        }
        #expect(roundTripFailures.isEmpty, "\(roundTripFailures)")
        // The mutations reach both sides: plenty decode, and every decoder error shows up.
        #expect(decodedCount > Self.iterations / 10)
        #expect(channelCount > 0)
        for code in [
            STUNError.Code.truncatedHeader, .notSTUN, .invalidMagicCookie, .invalidMessageLength, .lengthMismatch,
            .truncatedAttribute, .attributeAfterFingerprint,
        ] {
            #expect(errorCodes[code, default: 0] > 0, "\(code) never produced")
        }
        #expect(work > 0)
    }

    @Test("the seeds themselves decode, verify and round-trip")
    func seeds() throws {
        for seed in Self.seeds.dropLast() {
            let message = try STUNMessage(decoding: seed)
            let again = try STUNMessage(decoding: message.encode())
            #expect(again == message)
            // Zero padding changes the bytes of the RFC 5769 vectors (padded with 0x20), so compare the
            // fingerprint only where the bytes are the same.
            if try message.encode() == seed {
                #expect(again.verifyFingerprint() == message.verifyFingerprint())
            }
        }
        let allocate = try STUNMessage(decoding: Self.seeds[5])
        #expect(allocate.verifyIntegrity(key: Self.key) == .valid)
        #expect(allocate.verifyIntegrity(key: Self.key, algorithm: .hmacSHA256) == .valid)
        #expect(Self.exercise(allocate) == 28)  // every reader that has something to read
    }
}
