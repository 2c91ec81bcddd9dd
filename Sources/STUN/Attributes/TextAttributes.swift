// USERNAME (RFC 8489 §14.3), REALM (§14.9), NONCE (§14.10), SOFTWARE (§14.14) and ALTERNATE-DOMAIN (§14.16):
// UTF-8 text. Readers refuse invalid UTF-8; sizes are not policed in either direction.

extension STUNAttribute {
    /// USERNAME (RFC 8489 §14.3). The caller applies OpaqueString/SASLprep if it needs to (see
    /// ``LongTermCredential``).
    public static func username(_ username: String) -> STUNAttribute {
        STUNAttribute(type: .username, value: Array(username.utf8))
    }

    /// REALM (RFC 8489 §14.9).
    public static func realm(_ realm: String) -> STUNAttribute {
        STUNAttribute(type: .realm, value: Array(realm.utf8))
    }

    /// NONCE (RFC 8489 §14.10).
    public static func nonce(_ nonce: String) -> STUNAttribute {
        STUNAttribute(type: .nonce, value: Array(nonce.utf8))
    }

    /// SOFTWARE (RFC 8489 §14.14).
    public static func software(_ software: String) -> STUNAttribute {
        STUNAttribute(type: .software, value: Array(software.utf8))
    }

    /// ALTERNATE-DOMAIN (RFC 8489 §14.16).
    public static func alternateDomain(_ domain: String) -> STUNAttribute {
        STUNAttribute(type: .alternateDomain, value: Array(domain.utf8))
    }
}

extension STUNMessage {
    /// The first USERNAME (RFC 8489 §14.3).
    public var username: String? {
        get throws(STUNError) { try text(.username) }
    }

    /// The first REALM (RFC 8489 §14.9).
    public var realm: String? {
        get throws(STUNError) { try text(.realm) }
    }

    /// The first NONCE (RFC 8489 §14.10).
    public var nonce: String? {
        get throws(STUNError) { try text(.nonce) }
    }

    /// The first SOFTWARE (RFC 8489 §14.14).
    public var software: String? {
        get throws(STUNError) { try text(.software) }
    }

    /// The first ALTERNATE-DOMAIN (RFC 8489 §14.16).
    public var alternateDomain: String? {
        get throws(STUNError) { try text(.alternateDomain) }
    }

    private func text(_ type: STUNAttributeType) throws(STUNError) -> String? {
        guard let value = firstValue(type) else { return nil }
        guard let text = String(validating: value, as: UTF8.self) else {
            throw STUNError(.invalidUTF8, "\(type) is not UTF-8")
        }
        return text
    }
}
