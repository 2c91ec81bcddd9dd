import STUN
import Testing

@Suite("Packet classification (RFC 7983, RFC 9443)")
struct PacketClassTests {
    @Test("every first byte lands in its range")
    func ranges() {
        for byte in UInt8.min...UInt8.max {
            let expected: PacketClass =
                switch byte {
                case 0...3: .stun
                case 16...19: .zrtp
                case 20...63: .dtls
                case 64...79: .turnChannelData
                case 128...191: .rtpOrRTCP
                default: .unknown
                }
            #expect(PacketClass(firstByte: byte) == expected, "\(byte)")
        }
        #expect(PacketClass.classify(firstByte: 3) == .stun)
        #expect(PacketClass.classify(firstByte: 4) == .unknown)
        #expect(PacketClass.classify(firstByte: 15) == .unknown)
        #expect(PacketClass.classify(firstByte: 16) == .zrtp)
        #expect(PacketClass.classify(firstByte: 19) == .zrtp)
        #expect(PacketClass.classify(firstByte: 20) == .dtls)
        #expect(PacketClass.classify(firstByte: 63) == .dtls)
        #expect(PacketClass.classify(firstByte: 64) == .turnChannelData)
        #expect(PacketClass.classify(firstByte: 79) == .turnChannelData)
        #expect(PacketClass.classify(firstByte: 80) == .unknown)
        #expect(PacketClass.classify(firstByte: 127) == .unknown)
        #expect(PacketClass.classify(firstByte: 128) == .rtpOrRTCP)
        #expect(PacketClass.classify(firstByte: 191) == .rtpOrRTCP)
        #expect(PacketClass.classify(firstByte: 192) == .unknown)
        #expect(PacketClass.classify(firstByte: 255) == .unknown)
    }

    @Test("whole datagrams")
    func datagrams() throws {
        #expect(PacketClass.classify(RFC5769.request) == .stun)
        #expect(PacketClass.classify(RFC5769.ipv4Response) == .stun)
        let channel = ChannelNumber(rawValue: 0x4000)!
        #expect(PacketClass.classify(try ChannelData.encode(channel: channel, payload: [1])) == .turnChannelData)
        #expect(PacketClass.classify([0x16, 0xFE, 0xFD]) == .dtls)  // DTLS 1.2 handshake record
        #expect(PacketClass.classify([UInt8]()) == .unknown)
    }

    @Test("RTP or RTCP by the second byte (RFC 5761 §4)")
    func rtcp() {
        #expect(PacketClass.isRTCP(secondByte: 200))  // SR
        #expect(PacketClass.isRTCP(secondByte: 201))  // RR
        #expect(PacketClass.isRTCP(secondByte: 192))
        #expect(PacketClass.isRTCP(secondByte: 223))
        #expect(!PacketClass.isRTCP(secondByte: 191))
        #expect(!PacketClass.isRTCP(secondByte: 224))  // RTP, marker set, payload type 96
        #expect(!PacketClass.isRTCP(secondByte: 0x60))  // RTP payload type 96
        #expect(!PacketClass.isRTCP(secondByte: 111))  // Opus
        #expect(PacketClass.isRTCP([0x80, 0xC8, 0x00, 0x06]))
        #expect(!PacketClass.isRTCP([0x80, 0x6F, 0x00, 0x01]))
        #expect(!PacketClass.isRTCP([0x00, 0xC8]))  // not an RTP/RTCP first byte
        #expect(!PacketClass.isRTCP([0x80]))
    }
}
