// ICE attributes of RFC 8445 §7.1.1–7.1.3 and §16.1: PRIORITY, USE-CANDIDATE, ICE-CONTROLLED, ICE-CONTROLLING.
// The relay does not use them; browsers send them in Binding requests, so the codec reads them.

extension STUNAttribute {
    /// PRIORITY (RFC 8445 §7.1.1).
    public static func priority(_ priority: UInt32) -> STUNAttribute {
        var value: [UInt8] = []
        value.appendUInt32(priority)
        return STUNAttribute(type: .priority, value: value)
    }

    /// USE-CANDIDATE (RFC 8445 §7.1.2): no value.
    public static let useCandidate = STUNAttribute(type: .useCandidate, value: [])

    /// ICE-CONTROLLED (RFC 8445 §7.1.3) with its tie-breaker.
    public static func iceControlled(_ tieBreaker: UInt64) -> STUNAttribute {
        var value: [UInt8] = []
        value.appendUInt64(tieBreaker)
        return STUNAttribute(type: .iceControlled, value: value)
    }

    /// ICE-CONTROLLING (RFC 8445 §7.1.3) with its tie-breaker.
    public static func iceControlling(_ tieBreaker: UInt64) -> STUNAttribute {
        var value: [UInt8] = []
        value.appendUInt64(tieBreaker)
        return STUNAttribute(type: .iceControlling, value: value)
    }
}

extension STUNMessage {
    /// The first PRIORITY (RFC 8445 §7.1.1).
    public var priority: UInt32? {
        get throws(STUNError) {
            guard let value = try fixed(.priority, size: 4) else { return nil }
            return value.readUInt32(at: 0)
        }
    }

    /// Whether USE-CANDIDATE (RFC 8445 §7.1.2) is present.
    public var useCandidate: Bool { firstValue(.useCandidate) != nil }

    /// The tie-breaker of the first ICE-CONTROLLED (RFC 8445 §7.1.3).
    public var iceControlled: UInt64? {
        get throws(STUNError) {
            guard let value = try fixed(.iceControlled, size: 8) else { return nil }
            return value.readUInt64(at: 0)
        }
    }

    /// The tie-breaker of the first ICE-CONTROLLING (RFC 8445 §7.1.3).
    public var iceControlling: UInt64? {
        get throws(STUNError) {
            guard let value = try fixed(.iceControlling, size: 8) else { return nil }
            return value.readUInt64(at: 0)
        }
    }
}
