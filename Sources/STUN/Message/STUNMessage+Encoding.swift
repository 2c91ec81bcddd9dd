extension STUNMessage {
    /// Encodes the message, then appends MESSAGE-INTEGRITY (HMAC-SHA1 with `integrity`), MESSAGE-INTEGRITY-SHA256
    /// (HMAC-SHA256 with `integritySHA256`, truncated to `integritySHA256Length` bytes) and FINGERPRINT, in that
    /// order, each computed with the header length covering the attribute itself (RFC 8489 §14.5–14.7).
    ///
    /// Keys are the short-term password's bytes or a ``LongTermCredential`` key.
    ///
    /// - Parameters:
    ///   - integritySHA256Length: 16...32 and a multiple of 4 (RFC 8489 §14.6); 32 unless agreed otherwise.
    ///   - padding: the byte that pads attribute values to 4 bytes. RFC 8489 §14 lets it be anything and receivers
    ///     ignore it; the default 0 is what everyone sends. RFC 5769's vectors pad with 0x20.
    /// - Throws: ``STUNError/Code/messageTooLarge`` when an attribute or the whole message does not fit its 16-bit
    ///   length field (a Data indication wrapping a 65507-byte datagram, for instance);
    ///   ``STUNError/Code/invalidArgument`` for a bad `integritySHA256Length`.
    public func encode(
        integrity: [UInt8]? = nil,
        integritySHA256: [UInt8]? = nil,
        integritySHA256Length: Int = STUN.messageIntegritySHA256Size,
        fingerprint: Bool = false,
        padding: UInt8 = 0
    ) throws(STUNError) -> [UInt8] {
        guard integritySHA256Length >= 16, integritySHA256Length <= 32, integritySHA256Length % 4 == 0 else {
            throw STUNError(.invalidArgument, "MESSAGE-INTEGRITY-SHA256 length \(integritySHA256Length)")
        }
        var size = STUN.headerSize
        for attribute in attributes {
            guard attribute.value.count <= STUN.maximumAttributeValueSize else {
                throw STUNError(.messageTooLarge, "\(attribute.type) value of \(attribute.value.count) bytes")
            }
            size += STUN.attributeHeaderSize + attribute.value.count + paddingLength(attribute.value.count)
        }
        if integrity != nil { size += 4 + STUN.messageIntegritySize }
        if integritySHA256 != nil { size += 4 + integritySHA256Length }
        if fingerprint { size += 8 }
        guard size <= STUN.maximumMessageSize else {
            throw STUNError(.messageTooLarge, "message of \(size) bytes exceeds \(STUN.maximumMessageSize)")
        }

        var out: [UInt8] = []
        out.reserveCapacity(size)
        out.appendUInt16(type.rawValue)
        out.appendUInt16(0)
        out.appendUInt32(STUN.magicCookie)
        out.appendUInt32(transactionID.high)
        out.appendUInt64(transactionID.low)
        for attribute in attributes {
            STUNMessage.append(attribute.type, attribute.value, to: &out, padding: padding)
        }
        if let key = integrity {
            let length = out.count - STUN.headerSize + 4 + STUN.messageIntegritySize
            out.writeUInt16(UInt16(length), at: 2)
            let mac = MessageMAC.sha1(key: key, bytes: out, length: length, end: out.count)
            STUNMessage.append(.messageIntegrity, mac, to: &out, padding: padding)
        }
        if let key = integritySHA256 {
            let length = out.count - STUN.headerSize + 4 + integritySHA256Length
            out.writeUInt16(UInt16(length), at: 2)
            let mac = MessageMAC.sha256(key: key, bytes: out, length: length, end: out.count)
            STUNMessage.append(
                .messageIntegritySHA256, Array(mac.prefix(integritySHA256Length)), to: &out,
                padding: padding)
        }
        if fingerprint {
            out.writeUInt16(UInt16(out.count - STUN.headerSize + 8), at: 2)
            let crc = CRC32.checksum(out) ^ STUN.fingerprintXOR
            out.appendUInt16(STUNAttributeType.fingerprint.rawValue)
            out.appendUInt16(4)
            out.appendUInt32(crc)
        }
        out.writeUInt16(UInt16(out.count - STUN.headerSize), at: 2)
        return out
    }

    private static func append(_ type: STUNAttributeType, _ value: [UInt8], to out: inout [UInt8], padding: UInt8) {
        out.appendUInt16(type.rawValue)
        out.appendUInt16(UInt16(value.count))
        out.append(contentsOf: value)
        for _ in 0..<paddingLength(value.count) {
            out.append(padding)
        }
    }
}
