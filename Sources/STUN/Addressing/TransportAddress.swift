/// An IP address and a port: the "transport address" of RFC 8489 §3, as STUN address attributes carry it
/// (RFC 8489 §14.1–14.2) and as TURN names clients, relays and peers (RFC 8656 §2).
///
/// Printed as `192.0.2.1:3478` or `[2001:db8::1]:3478`; ``init(_:)`` reads the same forms back.
public struct TransportAddress: Sendable, Hashable, CustomStringConvertible, LosslessStringConvertible {
    public var ip: IPAddress
    public var port: UInt16

    public init(ip: IPAddress, port: UInt16) {
        self.ip = ip
        self.port = port
    }

    /// Parses `a.b.c.d:port` or `[ipv6]:port`; nil for anything else (including an IPv6 address without brackets).
    public init?(_ text: String) {
        let utf8 = Array(text.utf8)
        let addressPart: ArraySlice<UInt8>
        let portPart: ArraySlice<UInt8>
        if utf8.first == UInt8(ascii: "[") {
            guard let close = utf8.firstIndex(of: UInt8(ascii: "]")), close + 1 < utf8.count,
                utf8[close + 1] == UInt8(ascii: ":")
            else { return nil }
            addressPart = utf8[1..<close]
            portPart = utf8[(close + 2)...]
            guard let parsed = IPAddress.parseIPv6(Array(addressPart)) else { return nil }
            self.ip = IPAddress(ipv6High: parsed.0, low: parsed.1)
        } else {
            guard let colon = utf8.lastIndex(of: UInt8(ascii: ":")) else { return nil }
            addressPart = utf8[..<colon]
            portPart = utf8[(colon + 1)...]
            guard let v4 = IPAddress.parseIPv4(addressPart) else { return nil }
            self.ip = IPAddress(ipv4: v4)
        }
        guard let port = IPAddress.decimal(portPart, maximumDigits: 5), port <= 65535 else { return nil }
        self.port = UInt16(port)
    }

    public var description: String {
        ip.isIPv4 ? "\(ip):\(port)" : "[\(ip)]:\(port)"
    }
}
