public import NIOCore
public import STUN

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

extension TransportAddress {
    /// The IP address and port of a NIO socket address; nil for a Unix socket address.
    public init?(_ address: SocketAddress) {
        switch address {
        case .v4(let v4):
            self.init(
                ip: IPAddress(ipv4: UInt32(bigEndian: v4.address.sin_addr.s_addr)),
                port: UInt16(bigEndian: v4.address.sin_port))
        case .v6(let v6):
            var storage = v6.address.sin6_addr
            let (high, low) = withUnsafeBytes(of: &storage) { raw in
                (
                    UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                    UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
                )
            }
            self.init(ip: IPAddress(ipv6High: high, low: low), port: UInt16(bigEndian: v6.address.sin6_port))
        default:
            return nil
        }
    }
}

extension SocketAddress {
    /// The NIO socket address of an IP address and port (no name resolution, no allocation for IPv4).
    public init(_ address: TransportAddress) {
        if let value = address.ip.ipv4Value {
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = address.port.bigEndian
            sin.sin_addr.s_addr = value.bigEndian
            self.init(sin, host: "")
        } else {
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = address.port.bigEndian
            let bytes = address.ip.bytes
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { raw in
                for index in 0..<16 { raw[index] = bytes[index] }
            }
            self.init(sin6, host: "")
        }
    }
}
