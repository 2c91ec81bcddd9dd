/// The TURN ChannelData message (RFC 8656 §12.4): a 4-byte header — channel number and payload length — then the
/// payload. Over TCP and TLS the message is padded to a multiple of 4; over UDP the padding is optional, so parsing
/// accepts it present or absent and ignores anything after the payload.
///
/// The parser returns offsets, not copies, so the UDP adapter can forward the payload straight out of its receive
/// buffer; the header writers let it prepend the header in place.
public enum ChannelData {
    /// The size of the ChannelData header.
    public static let headerSize = 4

    /// A parsed ChannelData header (RFC 8656 §12.4).
    public struct Frame: Sendable, Hashable {
        public let channelNumber: ChannelNumber
        /// Where the payload sits, as offsets from the start of the parsed bytes.
        public let payload: Range<Int>

        /// The size of the message including padding to 4 bytes, as it occupies a TCP stream.
        public var paddedLength: Int { ChannelData.headerSize + payload.count + paddingLength(payload.count) }
    }

    /// Parses the header at the start of `bytes`.
    ///
    /// - Throws: ``STUNError/Code/truncatedChannelData`` when fewer than 4 bytes, or fewer payload bytes than the
    ///   length says, are present; ``STUNError/Code/invalidChannelNumber`` outside 0x4000–0x4FFF.
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws(STUNError) -> Frame {
        guard bytes.count >= headerSize else { throw truncatedHeader(bytes.count) }
        return try frame(bytes[0], bytes[1], bytes[2], bytes[3], available: bytes.count)
    }

    /// Parses the header at the start of `bytes`; the payload range indexes `bytes`.
    public static func parse(_ bytes: [UInt8]) throws(STUNError) -> Frame {
        guard bytes.count >= headerSize else { throw truncatedHeader(bytes.count) }
        return try frame(bytes[0], bytes[1], bytes[2], bytes[3], available: bytes.count)
    }

    private static func truncatedHeader(_ count: Int) -> STUNError {
        STUNError(.truncatedChannelData, "\(count) bytes is shorter than the ChannelData header")
    }

    private static func frame(_ b0: UInt8, _ b1: UInt8, _ b2: UInt8, _ b3: UInt8, available: Int) throws(STUNError)
        -> Frame
    {
        let number = UInt16(b0) << 8 | UInt16(b1)
        let length = Int(UInt16(b2) << 8 | UInt16(b3))
        guard let channel = ChannelNumber(rawValue: number) else {
            throw STUNError(.invalidChannelNumber, "channel number 0x\(String(number, radix: 16))")
        }
        guard available - headerSize >= length else {
            throw STUNError(
                .truncatedChannelData,
                "ChannelData length \(length) but \(available - headerSize) bytes follow the header"
            )
        }
        return Frame(channelNumber: channel, payload: headerSize..<(headerSize + length))
    }

    /// Writes the 4-byte header for a payload of `payloadLength` bytes at the start of `buffer`.
    ///
    /// - Throws: ``STUNError/Code/invalidArgument`` for a length above 65535, ``STUNError/Code/bufferTooSmall``
    ///   when `buffer` holds fewer than 4 bytes.
    public static func writeHeader(
        channel: ChannelNumber,
        payloadLength: Int,
        to buffer: UnsafeMutableRawBufferPointer
    ) throws(STUNError) {
        guard payloadLength >= 0, payloadLength <= 0xFFFF else {
            throw STUNError(.invalidArgument, "ChannelData payload of \(payloadLength) bytes")
        }
        guard buffer.count >= headerSize else {
            throw STUNError(.bufferTooSmall, "\(buffer.count) bytes cannot hold the ChannelData header")
        }
        buffer[0] = UInt8(truncatingIfNeeded: channel.rawValue >> 8)
        buffer[1] = UInt8(truncatingIfNeeded: channel.rawValue)
        buffer[2] = UInt8(truncatingIfNeeded: payloadLength >> 8)
        buffer[3] = UInt8(truncatingIfNeeded: payloadLength)
    }

    /// Writes the 4-byte header into `buffer` at `offset` (for instance into headroom left before the payload).
    public static func writeHeader(
        channel: ChannelNumber,
        payloadLength: Int,
        to buffer: inout [UInt8],
        at offset: Int = 0
    ) throws(STUNError) {
        guard offset >= 0, offset <= buffer.count else {
            throw STUNError(.bufferTooSmall, "offset \(offset) outside a buffer of \(buffer.count) bytes")
        }
        let result = buffer.withUnsafeMutableBytes { whole in
            Result { () throws(STUNError) in
                try writeHeader(
                    channel: channel,
                    payloadLength: payloadLength,
                    to: UnsafeMutableRawBufferPointer(rebasing: whole[offset...])
                )
            }
        }
        try result.get()
    }

    /// A whole ChannelData message: header, payload and, when `padded` (TCP/TLS), zero padding to 4 bytes.
    public static func encode(channel: ChannelNumber, payload: [UInt8], padded: Bool = false) throws(STUNError)
        -> [UInt8]
    {
        guard payload.count <= 0xFFFF else {
            throw STUNError(.invalidArgument, "ChannelData payload of \(payload.count) bytes")
        }
        var out: [UInt8] = []
        out.reserveCapacity(headerSize + payload.count + 3)
        out.appendUInt16(channel.rawValue)
        out.appendUInt16(UInt16(payload.count))
        out.append(contentsOf: payload)
        if padded {
            out.append(contentsOf: [UInt8](repeating: 0, count: paddingLength(payload.count)))
        }
        return out
    }
}
