/// A STUN message (RFC 8489 §5–6), as used by TURN (RFC 8656): a type, a transaction ID and attributes in wire
/// order.
///
/// Decoding with `init(decoding:)` checks the header and every attribute's bounds and never traps:
/// malformed input ends in a ``STUNError``. A decoded message keeps its wire bytes so that
/// ``verifyIntegrity(key:algorithm:)`` and ``verifyFingerprint()`` can check exactly the bytes that were received.
/// Typed readers (``xorMappedAddress``, ``lifetime``, …) live in the `Attributes/` files; they return nil when the
/// attribute is absent and throw when it is present but malformed.
///
/// Attribute order rules (RFC 8489 §14.5–14.7): after MESSAGE-INTEGRITY only MESSAGE-INTEGRITY-SHA256 and
/// FINGERPRINT count; after MESSAGE-INTEGRITY-SHA256 only FINGERPRINT. Any other attribute there is checked for
/// bounds, then ignored: it is not in ``attributes`` (see ``ignoredAttributeCount``). Anything after FINGERPRINT
/// is an error.
///
/// Equality and hashing compare ``type``, ``transactionID`` and ``attributes``, not the wire bytes.
public struct STUNMessage: Sendable, Hashable {
    public let type: STUNMessageType
    public let transactionID: TransactionID
    /// The attributes in wire order, duplicates kept; for a decoded message, the ignored ones left out.
    public let attributes: [STUNAttribute]
    /// How many attributes a decoded message carried after its message integrity that RFC 8489 says to ignore.
    public let ignoredAttributeCount: Int
    let wire: Wire?

    /// Where the integrity-relevant parts of a decoded message sit in its bytes.
    struct Wire: Sendable {
        let bytes: [UInt8]
        /// Offsets of the attribute headers (type field) within `bytes`.
        let messageIntegrity: Int?
        let messageIntegritySHA256: Int?
        let fingerprint: Int?
    }

    /// A message to encode with ``encode(integrity:integritySHA256:integritySHA256Length:fingerprint:padding:)``.
    /// Do not put MESSAGE-INTEGRITY(-SHA256) or FINGERPRINT in `attributes`: `encode` appends them.
    public init(type: STUNMessageType, transactionID: TransactionID, attributes: [STUNAttribute] = []) {
        self.type = type
        self.transactionID = transactionID
        self.attributes = attributes
        self.ignoredAttributeCount = 0
        self.wire = nil
    }

    /// Decodes one whole STUN message; `bytes` must hold exactly the message (one UDP datagram's payload).
    public init(decoding bytes: [UInt8]) throws(STUNError) {
        guard bytes.count >= STUN.headerSize else {
            throw STUNError(.truncatedHeader, "\(bytes.count) bytes is shorter than the 20-byte STUN header")
        }
        let rawType = bytes.readUInt16(at: 0)
        guard let type = STUNMessageType(rawValue: rawType) else {
            throw STUNError(.notSTUN, "the top two bits of message type 0x\(String(rawType, radix: 16)) are not 0")
        }
        guard bytes.readUInt32(at: 4) == STUN.magicCookie else {
            throw STUNError(.invalidMagicCookie, "bytes 4..<8 are not the magic cookie 0x2112A442")
        }
        let length = Int(bytes.readUInt16(at: 2))
        guard length & 3 == 0 else {
            throw STUNError(.invalidMessageLength, "message length \(length) is not a multiple of 4")
        }
        guard length == bytes.count - STUN.headerSize else {
            throw STUNError(
                .lengthMismatch,
                "message length \(length) but \(bytes.count - STUN.headerSize) bytes follow the header"
            )
        }

        var attributes: [STUNAttribute] = []
        var ignored = 0
        var integrityOffset: Int? = nil
        var integritySHA256Offset: Int? = nil
        var fingerprintOffset: Int? = nil
        var offset = STUN.headerSize
        while offset < bytes.count {
            guard bytes.count - offset >= STUN.attributeHeaderSize else {
                throw STUNError(.truncatedAttribute, "attribute header at offset \(offset) is cut short")
            }
            let attributeType = STUNAttributeType(rawValue: bytes.readUInt16(at: offset))
            let valueLength = Int(bytes.readUInt16(at: offset + 2))
            let valueStart = offset + STUN.attributeHeaderSize
            let paddedLength = valueLength + paddingLength(valueLength)
            guard bytes.count - valueStart >= paddedLength else {
                throw STUNError(
                    .truncatedAttribute,
                    "\(attributeType) at offset \(offset) claims \(valueLength) bytes; "
                        + "\(bytes.count - valueStart) remain"
                )
            }
            guard fingerprintOffset == nil else {
                throw STUNError(.attributeAfterFingerprint, "\(attributeType) follows FINGERPRINT")
            }

            let keep: Bool
            switch attributeType {
            case .fingerprint:
                fingerprintOffset = offset
                keep = true
            case _ where integritySHA256Offset != nil:
                keep = false
            case .messageIntegritySHA256:
                integritySHA256Offset = offset
                keep = true
            case _ where integrityOffset != nil:
                keep = false
            case .messageIntegrity:
                integrityOffset = offset
                keep = true
            default:
                keep = true
            }
            if keep {
                attributes.append(
                    STUNAttribute(type: attributeType, value: Array(bytes[valueStart..<(valueStart + valueLength)]))
                )
            } else {
                ignored += 1
            }
            offset = valueStart + paddedLength
        }

        self.type = type
        self.transactionID = TransactionID(high: bytes.readUInt32(at: 8), low: bytes.readUInt64(at: 12))
        self.attributes = attributes
        self.ignoredAttributeCount = ignored
        self.wire = Wire(
            bytes: bytes,
            messageIntegrity: integrityOffset,
            messageIntegritySHA256: integritySHA256Offset,
            fingerprint: fingerprintOffset
        )
    }

    /// Decodes one whole STUN message from any byte collection (copied once into an array).
    public init(decoding bytes: some Collection<UInt8>) throws(STUNError) {
        try self.init(decoding: Array(bytes))
    }

    /// Decodes one whole STUN message from raw memory, such as a NIO `ByteBuffer`'s readable bytes.
    public init(decoding bytes: UnsafeRawBufferPointer) throws(STUNError) {
        try self.init(decoding: Array(bytes))
    }

    /// The first attribute of `type`, or nil.
    public func attribute(_ type: STUNAttributeType) -> STUNAttribute? {
        for index in attributes.indices where attributes[index].type.rawValue == type.rawValue {
            return attributes[index]
        }
        return nil
    }

    /// Every attribute of `type`, in wire order.
    public func attributes(_ type: STUNAttributeType) -> [STUNAttribute] {
        attributes.filter { $0.type == type }
    }

    /// Comprehension-required attribute types (below 0x8000) that this codec does not know, in order of first
    /// appearance. A server answers a request carrying any with 420 Unknown Attribute listing them
    /// (RFC 8489 §6.3.1).
    public var unknownComprehensionRequired: [UInt16] {
        var seen = Set<UInt16>()
        var result: [UInt16] = []
        for attribute in attributes where attribute.type.isComprehensionRequired && !attribute.type.isKnown {
            if seen.insert(attribute.type.rawValue).inserted {
                result.append(attribute.type.rawValue)
            }
        }
        return result
    }

    /// The value of the first attribute of `type`.
    func firstValue(_ type: STUNAttributeType) -> [UInt8]? {
        for index in attributes.indices where attributes[index].type.rawValue == type.rawValue {
            return attributes[index].value
        }
        return nil
    }

    public static func == (lhs: STUNMessage, rhs: STUNMessage) -> Bool {
        lhs.type == rhs.type && lhs.transactionID == rhs.transactionID && lhs.attributes == rhs.attributes
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(type)
        hasher.combine(transactionID)
        hasher.combine(attributes)
    }
}
