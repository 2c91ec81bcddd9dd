// MAPPED-ADDRESS (RFC 8489 §14.1) and ALTERNATE-SERVER (RFC 8489 §14.15): a transport address in the clear.

extension STUNAttribute {
    /// MAPPED-ADDRESS (RFC 8489 §14.1): kept for RFC 3489 clients; new servers send XOR-MAPPED-ADDRESS.
    public static func mappedAddress(_ address: TransportAddress) -> STUNAttribute {
        STUNAttribute(type: .mappedAddress, value: AddressCodec.encode(address, xor: nil))
    }

    /// ALTERNATE-SERVER (RFC 8489 §14.15): where a 300 Try Alternate response sends the client.
    public static func alternateServer(_ address: TransportAddress) -> STUNAttribute {
        STUNAttribute(type: .alternateServer, value: AddressCodec.encode(address, xor: nil))
    }
}

extension STUNMessage {
    /// The first MAPPED-ADDRESS (RFC 8489 §14.1).
    public var mappedAddress: TransportAddress? {
        get throws(STUNError) {
            guard let value = firstValue(.mappedAddress) else { return nil }
            return try AddressCodec.decode(value, type: .mappedAddress, xor: nil)
        }
    }

    /// The first ALTERNATE-SERVER (RFC 8489 §14.15).
    public var alternateServer: TransportAddress? {
        get throws(STUNError) {
            guard let value = firstValue(.alternateServer) else { return nil }
            return try AddressCodec.decode(value, type: .alternateServer, xor: nil)
        }
    }
}
