public import STUN

/// Which peer addresses a relay may send to (RFC 8656 §21.3, "Attacks Using the Relay to Reach Private Hosts").
///
/// By default every special-purpose range of the IANA IPv4 and IPv6 special-purpose address registries (RFC 6890
/// and its updates) is refused: unspecified, loopback, RFC 1918, CGNAT, link-local (incl. 169.254.169.254, the
/// cloud metadata address), multicast, broadcast, reserved, ULA, documentation and benchmarking ranges. An address
/// is canonicalised first: the IPv6 spellings of an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible
/// `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002:AABB:CCDD::/48` and both addresses Teredo embeds in `2001::/32`)
/// are judged by the IPv4 addresses they carry, so `::ffff:127.0.0.1` is loopback. Operators allow ranges
/// explicitly (``allowed``), matched against the address and each IPv4 address it embeds.
public struct PeerPolicy: Sendable, Hashable {
    /// Ranges the operator allows although they are special-purpose (e.g. `127.0.0.0/8` in tests).
    public var allowed: [CIDR]
    /// Ranges refused on top of the special-purpose ones.
    public var denied: [CIDR]

    public init(allowed: [CIDR] = [], denied: [CIDR] = []) {
        self.allowed = allowed
        self.denied = denied
    }

    /// Why an address is refused, or nil when the relay may send to it.
    public func refusal(for address: IPAddress) -> String? {
        let forms = Self.canonicalForms(of: address)
        if forms.contains(where: { form in denied.contains { $0.contains(form) } }) {
            return "\(address) is in a range the operator denies"
        }
        for form in forms {
            if allowed.contains(where: { $0.contains(form) }) { continue }
            if let range = Self.specialPurpose(form) {
                return form == address
                    ? "\(address) is in the special-purpose range \(range)"
                    : "\(address) embeds \(form), in the special-purpose range \(range)"
            }
        }
        return nil
    }

    public func permits(_ address: IPAddress) -> Bool { refusal(for: address) == nil }

    /// The address itself and every IPv4 address its IPv6 form embeds.
    static func canonicalForms(of address: IPAddress) -> [IPAddress] {
        guard address.isIPv6 else { return [address] }
        let bytes = address.bytes
        func v4(_ offset: Int, inverted: Bool = false) -> IPAddress {
            let slice = bytes[offset..<offset + 4].map { inverted ? ~$0 : $0 }
            return IPAddress(ipv4: slice[0], slice[1], slice[2], slice[3])
        }
        var forms = [address]
        let firstTenZero = bytes[0..<10].allSatisfy { $0 == 0 }
        if firstTenZero && bytes[10] == 0xFF && bytes[11] == 0xFF {
            forms.append(v4(12))  // IPv4-mapped, RFC 4291 §2.5.5.2
        } else if firstTenZero && bytes[10] == 0 && bytes[11] == 0 && !bytes[12..<16].allSatisfy({ $0 == 0 })
            && !(bytes[12..<15].allSatisfy { $0 == 0 } && bytes[15] == 1)
        {
            forms.append(v4(12))  // IPv4-compatible (deprecated), RFC 4291 §2.5.5.1; not :: or ::1
        }
        if bytes[0..<12] == [0x00, 0x64, 0xFF, 0x9B, 0, 0, 0, 0, 0, 0, 0, 0][...] {
            forms.append(v4(12))  // NAT64 well-known prefix, RFC 6052
        }
        if bytes[0] == 0x20 && bytes[1] == 0x02 {
            forms.append(v4(2))  // 6to4, RFC 3056
        }
        if bytes[0..<4] == [0x20, 0x01, 0x00, 0x00][...] {
            forms.append(v4(4))  // Teredo server, RFC 4380 §4
            forms.append(v4(12, inverted: true))  // Teredo client (obfuscated)
        }
        return forms
    }

    /// The special-purpose range `address` falls in, or nil for a global unicast address.
    static func specialPurpose(_ address: IPAddress) -> CIDR? {
        let ranges = address.isIPv4 ? ipv4SpecialPurpose : ipv6SpecialPurpose
        return ranges.first { $0.contains(address) }
    }

    /// IANA IPv4 Special-Purpose Address Registry, plus multicast, the reserved 240/4 (incl. broadcast) and cloud
    /// platform endpoints on public addresses.
    static let ipv4SpecialPurpose: [CIDR] = [
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24", "192.88.99.0/24", "192.168.0.0/16",
        "192.175.48.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
        "255.255.255.255/32",
        // Public, but a cloud platform's own endpoint (Azure WireServer and DNS), reachable only from inside it.
        "168.63.129.16/32",
    ].map { CIDR($0)! }

    /// IANA IPv6 Special-Purpose Address Registry, plus multicast and the deprecated site-local range. The
    /// translation prefixes (`::ffff:0:0/96`, `64:ff9b::/96`, `2002::/16`, Teredo) are not listed: their embedded
    /// IPv4 addresses are judged instead.
    static let ipv6SpecialPurpose: [CIDR] = [
        "::/128", "::1/128", "::/96", "::ffff:0:0:0/96", "64:ff9b:1::/48", "100::/64", "2001:2::/48",
        "2001:10::/28", "2001:20::/28", "2001:db8::/32", "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10",
        "fec0::/10", "ff00::/8",
    ].map { CIDR($0)! }
}
