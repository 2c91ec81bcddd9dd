import STUN
import Testing

@Suite("ChannelData (RFC 8656 §12.4)")
struct ChannelDataTests {
    let channel = ChannelNumber(rawValue: 0x4001)!

    @Test("channel number range")
    func numbers() {
        #expect(ChannelNumber(rawValue: 0x3FFF) == nil)
        #expect(ChannelNumber(rawValue: 0x4000) != nil)
        #expect(ChannelNumber(rawValue: 0x4FFF) != nil)
        #expect(ChannelNumber(rawValue: 0x5000) == nil)
        #expect(ChannelNumber(rawValue: 0) == nil)
        #expect(ChannelNumber(rawValue: 0xFFFF) == nil)
        #expect(ChannelNumber.isValid(0x4ABC))
        #expect(!ChannelNumber.isValid(0x5001))
        #expect(ChannelNumber(rawValue: 0x4000)! < ChannelNumber(rawValue: 0x4001)!)
    }

    @Test("parse with and without padding")
    func parse() throws {
        let unpadded: [UInt8] = [0x40, 0x01, 0x00, 0x03, 0xAA, 0xBB, 0xCC]
        let frame = try ChannelData.parse(unpadded)
        #expect(frame.channelNumber == channel)
        #expect(frame.payload == 4..<7)
        #expect(Array(unpadded[frame.payload]) == [0xAA, 0xBB, 0xCC])
        #expect(frame.paddedLength == 8)
        #expect(try ChannelData.parse(unpadded + [0]) == frame)
        #expect(try ChannelData.parse(unpadded + [0, 0, 0, 0, 0]) == frame)
        let empty = try ChannelData.parse([0x4F, 0xFF, 0, 0])
        #expect(empty.payload.isEmpty)
        #expect(empty.channelNumber.rawValue == 0x4FFF)
        #expect(empty.paddedLength == 4)
        let raw = try unpadded.withUnsafeBytes { buffer in try ChannelData.parse(buffer) }
        #expect(raw == frame)
    }

    @Test(
        "refused: bad channel numbers, truncation",
        arguments: [
            ([0x3F, 0xFF, 0, 0], STUNError.Code.invalidChannelNumber), ([0x50, 0x00, 0, 0], .invalidChannelNumber),
            ([0x00, 0x01, 0, 0], .invalidChannelNumber), ([0x80, 0x00, 0, 0], .invalidChannelNumber),
            ([], .truncatedChannelData), ([0x40], .truncatedChannelData), ([0x40, 0x00, 0x00], .truncatedChannelData),
            ([0x40, 0x00, 0x00, 0x01], .truncatedChannelData),
            ([0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4], .truncatedChannelData),
            ([0x40, 0x00, 0xFF, 0xFF, 1, 2, 3, 4], .truncatedChannelData),
        ] as [([UInt8], STUNError.Code)])
    func refused(bytes: [UInt8], code: STUNError.Code) {
        expectSTUNError(code) { try ChannelData.parse(bytes) }
    }

    @Test("encode and write headers in place")
    func encode() throws {
        let payload: [UInt8] = [1, 2, 3, 4, 5]
        let message = try ChannelData.encode(channel: channel, payload: payload)
        #expect(message == [0x40, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
        let padded = try ChannelData.encode(channel: channel, payload: payload, padded: true)
        #expect(padded == message + [0, 0, 0])
        #expect(try ChannelData.encode(channel: channel, payload: [1, 2, 3, 4], padded: true).count == 8)
        let frame = try ChannelData.parse(padded)
        #expect(Array(padded[frame.payload]) == payload)

        // Headroom before the payload, header written in place.
        var buffer: [UInt8] = [9, 9, 9, 9, 0, 0, 0, 0] + payload
        try ChannelData.writeHeader(channel: channel, payloadLength: payload.count, to: &buffer, at: 4)
        #expect(buffer == [9, 9, 9, 9] + message)
        var raw = [UInt8](repeating: 0, count: 4)
        try raw.withUnsafeMutableBytes { pointer in
            try ChannelData.writeHeader(channel: ChannelNumber(rawValue: 0x4FFF)!, payloadLength: 0xFFFF, to: pointer)
        }
        #expect(raw == [0x4F, 0xFF, 0xFF, 0xFF])

        var small: [UInt8] = [0, 0, 0]
        expectSTUNError(.bufferTooSmall) { try ChannelData.writeHeader(channel: channel, payloadLength: 1, to: &small) }
        var four: [UInt8] = [0, 0, 0, 0]
        expectSTUNError(.bufferTooSmall) {
            try ChannelData.writeHeader(channel: channel, payloadLength: 1, to: &four, at: 1)
        }
        expectSTUNError(.bufferTooSmall) {
            try ChannelData.writeHeader(channel: channel, payloadLength: 1, to: &four, at: 9)
        }
        expectSTUNError(.invalidArgument) {
            try ChannelData.writeHeader(channel: channel, payloadLength: 0x10000, to: &four)
        }
        expectSTUNError(.invalidArgument) {
            try ChannelData.writeHeader(channel: channel, payloadLength: -1, to: &four)
        }
        expectSTUNError(.invalidArgument) {
            try ChannelData.encode(channel: channel, payload: [UInt8](repeating: 0, count: 0x10000))
        }
    }
}
