import STUN
import TestSupport
import Testing

@Suite("Message type (RFC 8489 §5)")
struct MessageTypeTests {
    static let methods: [STUNMethod] = [
        .binding, .allocate, .refresh, .send, .data, .createPermission, .channelBind,
    ]

    @Test("known encodings of every method and class")
    func knownValues() {
        let expected: [(STUNMethod, STUNClass, UInt16)] = [
            (.binding, .request, 0x0001), (.binding, .indication, 0x0011),
            (.binding, .successResponse, 0x0101), (.binding, .errorResponse, 0x0111),
            (.allocate, .request, 0x0003), (.allocate, .successResponse, 0x0103),
            (.allocate, .errorResponse, 0x0113),
            (.refresh, .request, 0x0004), (.refresh, .successResponse, 0x0104), (.refresh, .errorResponse, 0x0114),
            (.send, .indication, 0x0016), (.data, .indication, 0x0017),
            (.createPermission, .request, 0x0008), (.createPermission, .successResponse, 0x0108),
            (.createPermission, .errorResponse, 0x0118),
            (.channelBind, .request, 0x0009), (.channelBind, .successResponse, 0x0109),
            (.channelBind, .errorResponse, 0x0119),
        ]
        for (method, messageClass, raw) in expected {
            let type = STUNMessageType(method: method, class: messageClass)
            #expect(type.rawValue == raw, "\(type)")
            #expect(STUNMessageType(rawValue: raw) == type)
        }
        #expect(STUNMessageType(method: STUNMethod(rawValue: 0xFFF)!, class: .errorResponse).rawValue == 0x3FFF)
    }

    @Test("every 12-bit method and 2-bit class round-trips, through a message too")
    func roundTrip() throws {
        for raw in UInt16(0)...0x0FFF {
            let method = try #require(STUNMethod(rawValue: raw))
            for messageClass in STUNClass.allCases {
                let type = STUNMessageType(method: method, class: messageClass)
                guard STUNMessageType(rawValue: type.rawValue) == type, type.rawValue & 0xC000 == 0 else {
                    Issue.record("\(type) does not round-trip")
                    return
                }
            }
        }
        for method in Self.methods {
            for messageClass in STUNClass.allCases {
                let type = STUNMessageType(method: method, class: messageClass)
                let bytes = try STUNMessage(type: type, transactionID: .random()).encode()
                #expect(try STUNMessage(decoding: bytes).type == type)
            }
        }
    }

    @Test("all 14-bit types decode, and re-encode to themselves; the top bits are refused")
    func allRawTypes() {
        for raw in UInt16(0)...0x3FFF {
            guard let type = STUNMessageType(rawValue: raw), type.rawValue == raw else {
                Issue.record("0x\(String(raw, radix: 16))")
                return
            }
        }
        #expect(STUNMessageType(rawValue: 0x4001) == nil)
        #expect(STUNMessageType(rawValue: 0x8001) == nil)
        #expect(STUNMethod(rawValue: 0x1000) == nil)
    }

    @Test("transaction IDs: 12 bytes, random ones differ")
    func transactionIDs() throws {
        let id = try #require(TransactionID(bytes: RFC5769.transactionID))
        #expect(id.bytes == RFC5769.transactionID)
        #expect(id.description == "b7e7a701bc34d686fa87dfae")
        #expect(TransactionID(bytes: [UInt8](repeating: 0, count: 11)) == nil)
        #expect(TransactionID(bytes: [UInt8](repeating: 0, count: 13)) == nil)
        let ids = Set((0..<1000).map { _ in TransactionID.random() })
        #expect(ids.count == 1000)
        var a = SplitMix64(seed: 7)
        var b = SplitMix64(seed: 7)
        #expect(TransactionID.random(using: &a) == TransactionID.random(using: &b))
    }

    @Test("attribute types: comprehension range and names")
    func attributeTypes() {
        #expect(STUNAttributeType.mappedAddress.isComprehensionRequired)
        #expect(STUNAttributeType.useCandidate.isComprehensionRequired)
        #expect(STUNAttributeType(rawValue: 0x7FFF).isComprehensionRequired)
        #expect(!STUNAttributeType.additionalAddressFamily.isComprehensionRequired)
        #expect(!STUNAttributeType.fingerprint.isComprehensionRequired)
        #expect(STUNAttributeType.xorPeerAddress.description == "XOR-PEER-ADDRESS")
        #expect(STUNAttributeType(rawValue: 0x0003).description == "attribute(0x3)")
        #expect(STUNAttributeType.icmp.rawValue == 0x8004)
        #expect(STUNAttributeType.passwordAlgorithms.rawValue == 0x8002)
        #expect(!STUNAttributeType(rawValue: 0x0003).isKnown)
    }
}
