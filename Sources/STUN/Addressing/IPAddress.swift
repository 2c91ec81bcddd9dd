/// An IPv4 or IPv6 address (RFC 791, RFC 4291), as carried in STUN address attributes (RFC 8489 §14.1–14.2).
///
/// A plain value: parsing and printing are pure (no resolver, no `inet_pton`). Text is read as a dotted quad
/// (`192.0.2.1`, no leading zeros, no shortened forms) or as IPv6 in full, compressed (`2001:db8::1`) or mixed form
/// (`::ffff:192.0.2.1`); zone identifiers (`%eth0`) are refused. Printing follows RFC 5952 (lower-case hex, the longest
/// run of two or more zero groups shortened to `::`, IPv4-mapped addresses in mixed form).
public struct IPAddress: Sendable, Hashable, CustomStringConvertible, LosslessStringConvertible {
    /// ``AddressFamily/ipv4`` or ``AddressFamily/ipv6``.
    public let family: AddressFamily
    // IPv6: the 128 bits, big-endian halves. IPv4: `high` is 0 and the address is the low 32 bits of `low`.
    let high: UInt64
    let low: UInt64

    /// An IPv4 address from its four octets, most significant first.
    public init(ipv4 a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        self.init(ipv4: UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d))
    }

    /// An IPv4 address from its 32-bit big-endian value (`0xC0000201` is 192.0.2.1).
    public init(ipv4 value: UInt32) {
        self.family = .ipv4
        self.high = 0
        self.low = UInt64(value)
    }

    /// An IPv6 address from its two 64-bit big-endian halves.
    public init(ipv6High high: UInt64, low: UInt64) {
        self.family = .ipv6
        self.high = high
        self.low = low
    }

    /// An address from 4 (IPv4) or 16 (IPv6) bytes in network order; nil for any other count.
    public init?(bytes: some Collection<UInt8>) {
        let array = Array(bytes)
        switch array.count {
        case 4:
            self.init(ipv4: array.readUInt32(at: 0))
        case 16:
            self.init(ipv6High: array.readUInt64(at: 0), low: array.readUInt64(at: 8))
        default:
            return nil
        }
    }

    /// Parses a dotted quad or IPv6 text (see the type's documentation); nil when it is neither.
    public init?(_ text: String) {
        let utf8 = Array(text.utf8)
        if let v4 = IPAddress.parseIPv4(utf8[...]) {
            self.init(ipv4: v4)
        } else if let (high, low) = IPAddress.parseIPv6(utf8) {
            self.init(ipv6High: high, low: low)
        } else {
            return nil
        }
    }

    /// The address in network order: 4 bytes for IPv4, 16 for IPv6.
    public var bytes: [UInt8] {
        var out: [UInt8] = []
        if family == .ipv4 {
            out.reserveCapacity(4)
            out.appendUInt32(UInt32(truncatingIfNeeded: low))
        } else {
            out.reserveCapacity(16)
            out.appendUInt64(high)
            out.appendUInt64(low)
        }
        return out
    }

    /// The number of bits in the address: 32 or 128.
    public var bitWidth: Int { family == .ipv4 ? 32 : 128 }

    public var isIPv4: Bool { family == .ipv4 }
    public var isIPv6: Bool { family == .ipv6 }
    /// `0.0.0.0` or `::`: a socket bound to it listens on every address of its family.
    public var isUnspecified: Bool { high == 0 && low == 0 }

    /// The 32-bit value of an IPv4 address; nil for IPv6.
    public var ipv4Value: UInt32? { family == .ipv4 ? UInt32(truncatingIfNeeded: low) : nil }

    /// For an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2) the IPv4 address it carries; else nil.
    ///
    /// Peer policy must look through this form: `::ffff:127.0.0.1` is loopback.
    public var mappedIPv4: IPAddress? {
        guard family == .ipv6, high == 0, low >> 32 == 0xFFFF else { return nil }
        return IPAddress(ipv4: UInt32(truncatingIfNeeded: low))
    }

    public var description: String {
        if family == .ipv4 {
            return IPAddress.dottedQuad(UInt32(truncatingIfNeeded: low))
        }
        if let v4 = mappedIPv4?.ipv4Value {
            return "::ffff:" + IPAddress.dottedQuad(v4)
        }
        var groups = [UInt16](repeating: 0, count: 8)
        for i in 0..<4 {
            groups[i] = UInt16(truncatingIfNeeded: high >> (48 - 16 * UInt64(i)))
            groups[4 + i] = UInt16(truncatingIfNeeded: low >> (48 - 16 * UInt64(i)))
        }
        // The longest run of at least two zero groups; the first one on a tie (RFC 5952 §4.2).
        var bestStart = -1
        var bestLength = 1
        var index = 0
        while index < 8 {
            if groups[index] == 0 {
                var end = index
                while end < 8 && groups[end] == 0 { end += 1 }
                if end - index > bestLength {
                    bestStart = index
                    bestLength = end - index
                }
                index = end
            } else {
                index += 1
            }
        }
        func hex(_ slice: ArraySlice<UInt16>) -> String {
            slice.map { String($0, radix: 16) }.joined(separator: ":")
        }
        if bestStart < 0 {
            return hex(groups[...])
        }
        return hex(groups[..<bestStart]) + "::" + hex(groups[(bestStart + bestLength)...])
    }

    static func dottedQuad(_ value: UInt32) -> String {
        "\(value >> 24).\(value >> 16 & 0xFF).\(value >> 8 & 0xFF).\(value & 0xFF)"
    }
}
