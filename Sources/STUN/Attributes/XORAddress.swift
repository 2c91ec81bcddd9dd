// XOR-MAPPED-ADDRESS (RFC 8489 §14.2), XOR-PEER-ADDRESS (RFC 8656 §18.3) and XOR-RELAYED-ADDRESS (RFC 8656 §18.5):
// a transport address XORed with the magic cookie (and, for IPv6, the transaction ID).

extension STUNAttribute {
    /// XOR-MAPPED-ADDRESS (RFC 8489 §14.2): the client's reflexive address, XORed with `transactionID`'s message.
    public static func xorMappedAddress(_ address: TransportAddress, transactionID: TransactionID) -> STUNAttribute {
        STUNAttribute(type: .xorMappedAddress, value: AddressCodec.encode(address, xor: transactionID))
    }

    /// XOR-PEER-ADDRESS (RFC 8656 §18.3): a peer's address as the relay sees it.
    public static func xorPeerAddress(_ address: TransportAddress, transactionID: TransactionID) -> STUNAttribute {
        STUNAttribute(type: .xorPeerAddress, value: AddressCodec.encode(address, xor: transactionID))
    }

    /// XOR-RELAYED-ADDRESS (RFC 8656 §18.5): the relayed transport address the server allocated.
    public static func xorRelayedAddress(_ address: TransportAddress, transactionID: TransactionID) -> STUNAttribute {
        STUNAttribute(type: .xorRelayedAddress, value: AddressCodec.encode(address, xor: transactionID))
    }
}

extension STUNMessage {
    /// The first XOR-MAPPED-ADDRESS (RFC 8489 §14.2), decoded with this message's transaction ID.
    public var xorMappedAddress: TransportAddress? {
        get throws(STUNError) { try xorAddress(.xorMappedAddress) }
    }

    /// Every XOR-PEER-ADDRESS in order (RFC 8656 §18.3): CreatePermission may carry several. Throws if any is
    /// malformed.
    public var xorPeerAddresses: [TransportAddress] {
        get throws(STUNError) {
            var result: [TransportAddress] = []
            for attribute in attributes where attribute.type == .xorPeerAddress {
                result.append(try AddressCodec.decode(attribute.value, type: .xorPeerAddress, xor: transactionID))
            }
            return result
        }
    }

    /// The first XOR-PEER-ADDRESS (RFC 8656 §18.3): Send and Data indications and ChannelBind carry one.
    public var xorPeerAddress: TransportAddress? {
        get throws(STUNError) { try xorAddress(.xorPeerAddress) }
    }

    /// The first XOR-RELAYED-ADDRESS (RFC 8656 §18.5).
    public var xorRelayedAddress: TransportAddress? {
        get throws(STUNError) { try xorAddress(.xorRelayedAddress) }
    }

    /// Every XOR-RELAYED-ADDRESS in order: a dual-stack allocation answers with one per family (RFC 8656 §7.3).
    public var xorRelayedAddresses: [TransportAddress] {
        get throws(STUNError) {
            var result: [TransportAddress] = []
            for attribute in attributes where attribute.type == .xorRelayedAddress {
                result.append(try AddressCodec.decode(attribute.value, type: .xorRelayedAddress, xor: transactionID))
            }
            return result
        }
    }

    private func xorAddress(_ type: STUNAttributeType) throws(STUNError) -> TransportAddress? {
        guard let value = firstValue(type) else { return nil }
        return try AddressCodec.decode(value, type: type, xor: transactionID)
    }
}
