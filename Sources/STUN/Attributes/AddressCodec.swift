// The shared layout of MAPPED-ADDRESS, ALTERNATE-SERVER and the XOR-*-ADDRESS attributes (RFC 8489 §14.1–14.2):
// a reserved byte, the family, the port, then 4 or 16 address bytes.

enum AddressCodec {
    /// The 128-bit XOR pad for IPv6: the magic cookie followed by the transaction ID.
    private static func pad(_ transactionID: TransactionID) -> (UInt64, UInt64) {
        (UInt64(STUN.magicCookie) << 32 | UInt64(transactionID.high), transactionID.low)
    }

    static func decode(
        _ value: [UInt8],
        type: STUNAttributeType,
        xor transactionID: TransactionID?
    ) throws(STUNError) -> TransportAddress {
        guard value.count >= 4 else {
            throw STUNError(.invalidAttributeLength, "\(type) of \(value.count) bytes")
        }
        let family = AddressFamily(rawValue: value[1])
        guard let size = family.addressSize else {
            throw STUNError(.unknownAddressFamily, "\(type) with \(family)")
        }
        guard value.count == 4 + size else {
            throw STUNError(.invalidAttributeLength, "\(type) for \(family) of \(value.count) bytes")
        }
        var port = value.readUInt16(at: 2)
        let ip: IPAddress
        if family == .ipv4 {
            var address = value.readUInt32(at: 4)
            if transactionID != nil {
                address ^= STUN.magicCookie
            }
            ip = IPAddress(ipv4: address)
        } else {
            var high = value.readUInt64(at: 4)
            var low = value.readUInt64(at: 12)
            if let transactionID {
                let (padHigh, padLow) = pad(transactionID)
                high ^= padHigh
                low ^= padLow
            }
            ip = IPAddress(ipv6High: high, low: low)
        }
        if transactionID != nil {
            port ^= UInt16(truncatingIfNeeded: STUN.magicCookie >> 16)
        }
        return TransportAddress(ip: ip, port: port)
    }

    static func encode(_ address: TransportAddress, xor transactionID: TransactionID?) -> [UInt8] {
        var out: [UInt8] = [0, address.ip.family.rawValue]
        out.reserveCapacity(20)
        let port =
            transactionID == nil ? address.port : address.port ^ UInt16(truncatingIfNeeded: STUN.magicCookie >> 16)
        out.appendUInt16(port)
        if address.ip.isIPv4 {
            let value = UInt32(truncatingIfNeeded: address.ip.low)
            out.appendUInt32(transactionID == nil ? value : value ^ STUN.magicCookie)
        } else if let transactionID {
            let (padHigh, padLow) = pad(transactionID)
            out.appendUInt64(address.ip.high ^ padHigh)
            out.appendUInt64(address.ip.low ^ padLow)
        } else {
            out.appendUInt64(address.ip.high)
            out.appendUInt64(address.ip.low)
        }
        return out
    }
}
