/// What a datagram on a multiplexed port is, judged by its first byte (RFC 7983 §7 as updated by RFC 9443 §5):
/// 0–3 STUN, 16–19 ZRTP, 20–63 DTLS, 64–79 TURN ChannelData, 128–191 RTP or RTCP; everything else is dropped.
public enum PacketClass: Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case stun
    case zrtp
    case dtls
    case turnChannelData
    case rtpOrRTCP
    case unknown

    /// The class of a datagram whose first byte is `firstByte`.
    public init(firstByte: UInt8) {
        switch firstByte {
        case 0...3: self = .stun
        case 16...19: self = .zrtp
        case 20...63: self = .dtls
        case 64...79: self = .turnChannelData
        case 128...191: self = .rtpOrRTCP
        default: self = .unknown
        }
    }

    /// The class of `firstByte`; the same as ``init(firstByte:)``.
    public static func classify(firstByte: UInt8) -> PacketClass {
        PacketClass(firstByte: firstByte)
    }

    /// The class of a datagram; ``unknown`` when it is empty.
    public static func classify(_ datagram: some Collection<UInt8>) -> PacketClass {
        guard let first = datagram.first else { return .unknown }
        return PacketClass(firstByte: first)
    }

    /// Whether an RTP/RTCP packet is RTCP: its second byte (RTCP's packet type) is 192–223, which RTP's
    /// marker bit and payload type never produce when RTP avoids payload types 64–95 (RFC 5761 §4).
    public static func isRTCP(secondByte: UInt8) -> Bool {
        (192...223).contains(secondByte)
    }

    /// Whether `datagram` is RTCP: an RTP/RTCP first byte and an RTCP packet type in the second.
    public static func isRTCP(_ datagram: some Collection<UInt8>) -> Bool {
        var iterator = datagram.makeIterator()
        guard let first = iterator.next(), let second = iterator.next() else { return false }
        return PacketClass(firstByte: first) == .rtpOrRTCP && isRTCP(secondByte: second)
    }

    public var description: String {
        switch self {
        case .stun: "STUN"
        case .zrtp: "ZRTP"
        case .dtls: "DTLS"
        case .turnChannelData: "TURN ChannelData"
        case .rtpOrRTCP: "RTP/RTCP"
        case .unknown: "unknown"
        }
    }
}
