/// The outcome of checking a message-integrity attribute (RFC 8489 §14.5–14.6). A value, not an error: a missing
/// or wrong HMAC is an expected input that the caller answers (401, or silently discarding the message).
public enum IntegrityCheck: Sendable, Hashable {
    /// The attribute is present and its HMAC matches the key.
    case valid
    /// The message carries no such attribute.
    case missing
    /// The attribute is present but its HMAC does not match (or its size is not allowed).
    case invalid
}

/// Which message-integrity attribute to check (RFC 8489 §14.5 or §14.6).
public enum IntegrityAlgorithm: Sendable, Hashable, CaseIterable {
    /// MESSAGE-INTEGRITY: HMAC-SHA1, 20 bytes (RFC 8489 §14.5).
    case hmacSHA1
    /// MESSAGE-INTEGRITY-SHA256: HMAC-SHA256, 16 to 32 bytes in steps of 4 (RFC 8489 §14.6).
    case hmacSHA256
}

extension STUNMessage {
    /// Checks MESSAGE-INTEGRITY (or MESSAGE-INTEGRITY-SHA256) against `key`: the HMAC of the message up to the
    /// attribute, with the header length counting up to the end of the attribute (RFC 8489 §14.5–14.6). The
    /// comparison takes constant time.
    ///
    /// `key` is the short-term password's bytes, or ``LongTermCredential/key(username:realm:password:algorithm:)``.
    /// A SHA-256 value shorter than 32 bytes is compared with the same-length prefix of the HMAC.
    public func verifyIntegrity(key: [UInt8], algorithm: IntegrityAlgorithm = .hmacSHA1) -> IntegrityCheck {
        guard let wire = wireLayout() else {
            let type: STUNAttributeType = algorithm == .hmacSHA1 ? .messageIntegrity : .messageIntegritySHA256
            return attribute(type) == nil ? .missing : .invalid
        }
        let bytes = wire.bytes
        switch algorithm {
        case .hmacSHA1:
            guard let offset = wire.messageIntegrity else { return .missing }
            let length = Int(bytes.readUInt16(at: offset + 2))
            guard length == STUN.messageIntegritySize else { return .invalid }
            let expected = MessageMAC.sha1(
                key: key, bytes: bytes, length: offset - STUN.headerSize + 4 + length,
                end: offset)
            return constantTimeEqual(expected[...], bytes[(offset + 4)..<(offset + 4 + length)]) ? .valid : .invalid
        case .hmacSHA256:
            guard let offset = wire.messageIntegritySHA256 else { return .missing }
            let length = Int(bytes.readUInt16(at: offset + 2))
            guard length >= 16, length <= 32, length % 4 == 0 else { return .invalid }
            let expected = MessageMAC.sha256(
                key: key, bytes: bytes, length: offset - STUN.headerSize + 4 + length,
                end: offset)
            return constantTimeEqual(expected.prefix(length), bytes[(offset + 4)..<(offset + 4 + length)])
                ? .valid : .invalid
        }
    }

    /// Checks FINGERPRINT (RFC 8489 §14.7): CRC-32 of the message up to the attribute, XOR 0x5354554E.
    /// Nil when the message has no FINGERPRINT; false when it has one that does not match or is not 4 bytes.
    public func verifyFingerprint() -> Bool? {
        guard let wire = wireLayout() else {
            return attribute(.fingerprint) == nil ? nil : false
        }
        guard let offset = wire.fingerprint else { return nil }
        let bytes = wire.bytes
        guard bytes.readUInt16(at: offset + 2) == 4 else { return false }
        let expected = CRC32.checksum(bytes[0..<offset]) ^ STUN.fingerprintXOR
        return expected == bytes.readUInt32(at: offset + 4)
    }

    /// The wire layout: as received for a decoded message, or as ``encode()`` lays it out for a built one.
    private func wireLayout() -> Wire? {
        if let wire { return wire }
        guard let bytes = try? encode(), let decoded = try? STUNMessage(decoding: bytes) else { return nil }
        return decoded.wire
    }
}
