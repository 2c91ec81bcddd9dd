/// An IP prefix in CIDR notation (RFC 4632 §3.1 for IPv4, RFC 4291 §2.3 for IPv6), such as `10.0.0.0/8` or
/// `fe80::/10`. The relay's peer policy is built from these.
///
/// Host bits below the prefix are cleared, so `10.1.2.3/8` is stored and printed as `10.0.0.0/8`. A bare address
/// parses as a host prefix (/32 or /128).
public struct CIDR: Sendable, Hashable, CustomStringConvertible, LosslessStringConvertible {
    /// The network address, host bits cleared.
    public let network: IPAddress
    /// The number of leading bits that must match: 0...32 for IPv4, 0...128 for IPv6.
    public let prefixLength: Int

    /// A prefix from an address and a length; nil when the length does not fit the family.
    public init?(network: IPAddress, prefixLength: Int) {
        guard prefixLength >= 0, prefixLength <= network.bitWidth else { return nil }
        self.prefixLength = prefixLength
        let (maskHigh, maskLow) = CIDR.mask(family: network.family, prefixLength: prefixLength)
        if network.isIPv4 {
            self.network = IPAddress(ipv4: UInt32(truncatingIfNeeded: network.low & maskLow))
        } else {
            self.network = IPAddress(ipv6High: network.high & maskHigh, low: network.low & maskLow)
        }
    }

    /// Parses `address/length` or a bare address; nil for anything else.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 1 || parts.count == 2, let address = IPAddress(String(parts[0])) else { return nil }
        var length = address.bitWidth
        if parts.count == 2 {
            guard let parsed = IPAddress.decimal(Array(parts[1].utf8)[...], maximumDigits: 3) else { return nil }
            length = parsed
        }
        self.init(network: address, prefixLength: length)
    }

    public var family: AddressFamily { network.family }

    /// Whether `address` lies in this prefix.
    ///
    /// An IPv4 prefix also contains the IPv4-mapped IPv6 form of its addresses (`::ffff:10.1.2.3` is in
    /// `10.0.0.0/8`), so that a policy written for IPv4 cannot be sidestepped by spelling a peer in IPv6.
    /// An IPv6 prefix never contains an IPv4 address.
    public func contains(_ address: IPAddress) -> Bool {
        var candidate = address
        if network.isIPv4, let mapped = address.mappedIPv4 {
            candidate = mapped
        }
        guard candidate.family == network.family else { return false }
        let (maskHigh, maskLow) = CIDR.mask(family: network.family, prefixLength: prefixLength)
        return candidate.high & maskHigh == network.high && candidate.low & maskLow == network.low
    }

    public var description: String { "\(network)/\(prefixLength)" }

    private static func mask(family: AddressFamily, prefixLength: Int) -> (UInt64, UInt64) {
        if family == .ipv4 {
            // Smart shifts: shifting by 32 or more yields 0, never traps.
            let mask32 = prefixLength == 0 ? 0 : UInt32.max << UInt32(32 - prefixLength)
            return (0, UInt64(mask32))
        }
        let high = prefixLength >= 64 ? UInt64.max : (prefixLength == 0 ? 0 : UInt64.max << UInt64(64 - prefixLength))
        let low = prefixLength <= 64 ? 0 : UInt64.max << UInt64(128 - prefixLength)
        return (high, low)
    }
}
