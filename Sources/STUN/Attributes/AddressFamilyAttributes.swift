// REQUESTED-ADDRESS-FAMILY (RFC 8656 §18.6), ADDITIONAL-ADDRESS-FAMILY (§18.11) and ADDRESS-ERROR-CODE (§18.12):
// the address families of a (possibly dual-stack) allocation.

extension STUNAttribute {
    /// REQUESTED-ADDRESS-FAMILY (RFC 8656 §18.6): the family byte and three reserved bytes.
    public static func requestedAddressFamily(_ family: AddressFamily) -> STUNAttribute {
        STUNAttribute(type: .requestedAddressFamily, value: [family.rawValue, 0, 0, 0])
    }

    /// ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §18.11): asks for an IPv6 relayed address besides the IPv4 one.
    public static func additionalAddressFamily(_ family: AddressFamily) -> STUNAttribute {
        STUNAttribute(type: .additionalAddressFamily, value: [family.rawValue, 0, 0, 0])
    }

    /// ADDRESS-ERROR-CODE (RFC 8656 §18.12): why one family of a dual-stack request could not be allocated.
    public static func addressErrorCode(
        family: AddressFamily,
        _ code: STUNErrorCode,
        _ reason: String? = nil
    ) -> STUNAttribute {
        STUNAttribute(
            type: .addressErrorCode, value: ErrorCodeCodec.encode(code, reason: reason, first: family.rawValue))
    }
}

extension STUNMessage {
    /// The family of the first REQUESTED-ADDRESS-FAMILY (RFC 8656 §18.6), possibly one this codec does not know
    /// (a server answers that with 440).
    public var requestedAddressFamily: AddressFamily? {
        get throws(STUNError) {
            guard let value = try fixed(.requestedAddressFamily, size: 4) else { return nil }
            return AddressFamily(rawValue: value[0])
        }
    }

    /// The family of the first ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §18.11).
    public var additionalAddressFamily: AddressFamily? {
        get throws(STUNError) {
            guard let value = try fixed(.additionalAddressFamily, size: 4) else { return nil }
            return AddressFamily(rawValue: value[0])
        }
    }

    /// The first ADDRESS-ERROR-CODE (RFC 8656 §18.12).
    public var addressErrorCode: (family: AddressFamily, code: Int, reason: String)? {
        get throws(STUNError) {
            guard let value = firstValue(.addressErrorCode) else { return nil }
            let (code, reason) = try ErrorCodeCodec.decode(value, type: .addressErrorCode)
            return (AddressFamily(rawValue: value[0]), code, reason)
        }
    }
}
