// TURN attributes of RFC 8656 §18: CHANNEL-NUMBER (§18.1), LIFETIME (§18.2), DATA (§18.4), EVEN-PORT (§18.7),
// REQUESTED-TRANSPORT (§18.8), DONT-FRAGMENT (§18.9), RESERVATION-TOKEN (§18.10).

extension STUNAttribute {
    /// CHANNEL-NUMBER (RFC 8656 §18.1): the number followed by two reserved bytes. Valid channels are
    /// 0x4000–0x4FFF (see ``ChannelNumber``); this constructor writes any value so tests can send wrong ones.
    public static func channelNumber(_ number: UInt16) -> STUNAttribute {
        var value: [UInt8] = []
        value.appendUInt16(number)
        value.appendUInt16(0)
        return STUNAttribute(type: .channelNumber, value: value)
    }

    /// LIFETIME (RFC 8656 §18.2), in seconds.
    public static func lifetime(_ seconds: UInt32) -> STUNAttribute {
        var value: [UInt8] = []
        value.appendUInt32(seconds)
        return STUNAttribute(type: .lifetime, value: value)
    }

    /// DATA (RFC 8656 §18.4): the application datagram of a Send or Data indication.
    public static func data(_ bytes: [UInt8]) -> STUNAttribute {
        STUNAttribute(type: .data, value: bytes)
    }

    /// EVEN-PORT (RFC 8656 §18.7): ask for an even relayed port and, with `reserveNextHigherPort`, to keep the next
    /// port for a later allocation (the R bit).
    public static func evenPort(reserveNextHigherPort: Bool) -> STUNAttribute {
        STUNAttribute(type: .evenPort, value: [reserveNextHigherPort ? 0x80 : 0x00])
    }

    /// REQUESTED-TRANSPORT (RFC 8656 §18.8): an IP protocol number (17 is UDP) and three reserved bytes.
    public static func requestedTransport(_ protocolNumber: UInt8) -> STUNAttribute {
        STUNAttribute(type: .requestedTransport, value: [protocolNumber, 0, 0, 0])
    }

    /// REQUESTED-TRANSPORT for UDP (protocol 17), the only transport RFC 8656 relays.
    public static let requestedTransportUDP = requestedTransport(17)

    /// DONT-FRAGMENT (RFC 8656 §18.9): no value.
    public static let dontFragment = STUNAttribute(type: .dontFragment, value: [])

    /// RESERVATION-TOKEN (RFC 8656 §18.10): 8 opaque bytes naming a reserved relayed port.
    public static func reservationToken(_ token: UInt64) -> STUNAttribute {
        var value: [UInt8] = []
        value.appendUInt64(token)
        return STUNAttribute(type: .reservationToken, value: value)
    }
}

extension STUNMessage {
    /// The first CHANNEL-NUMBER (RFC 8656 §18.1), whatever its value; check it with ``ChannelNumber``
    /// (a server answers an out-of-range number with 400).
    public var channelNumber: UInt16? {
        get throws(STUNError) {
            guard let value = try fixed(.channelNumber, size: 4) else { return nil }
            return value.readUInt16(at: 0)
        }
    }

    /// The first LIFETIME (RFC 8656 §18.2), in seconds.
    public var lifetime: UInt32? {
        get throws(STUNError) {
            guard let value = try fixed(.lifetime, size: 4) else { return nil }
            return value.readUInt32(at: 0)
        }
    }

    /// The value of the first DATA attribute (RFC 8656 §18.4).
    public var data: [UInt8]? { firstValue(.data) }

    /// The R bit of the first EVEN-PORT (RFC 8656 §18.7): nil when absent, true to reserve the next-higher port.
    public var evenPort: Bool? {
        get throws(STUNError) {
            guard let value = try fixed(.evenPort, size: 1) else { return nil }
            return value[0] & 0x80 != 0
        }
    }

    /// The protocol number of the first REQUESTED-TRANSPORT (RFC 8656 §18.8); 17 is UDP.
    public var requestedTransport: UInt8? {
        get throws(STUNError) {
            guard let value = try fixed(.requestedTransport, size: 4) else { return nil }
            return value[0]
        }
    }

    /// Whether DONT-FRAGMENT (RFC 8656 §18.9) is present.
    public var dontFragment: Bool { firstValue(.dontFragment) != nil }

    /// The first RESERVATION-TOKEN (RFC 8656 §18.10).
    public var reservationToken: UInt64? {
        get throws(STUNError) {
            guard let value = try fixed(.reservationToken, size: 8) else { return nil }
            return value.readUInt64(at: 0)
        }
    }

    /// The value of the first attribute of `type`, which must be exactly `size` bytes.
    func fixed(_ type: STUNAttributeType, size: Int) throws(STUNError) -> [UInt8]? {
        guard let value = firstValue(type) else { return nil }
        guard value.count == size else {
            throw STUNError(.invalidAttributeLength, "\(type) of \(value.count) bytes; \(size) expected")
        }
        return value
    }
}
