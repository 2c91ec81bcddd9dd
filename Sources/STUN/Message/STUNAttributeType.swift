/// The 16-bit type of a STUN attribute (RFC 8489 §14, §18.3; TURN attributes from RFC 8656 §18; ICE attributes
/// from RFC 8445 §16.1).
///
/// Types below 0x8000 are comprehension-required: a receiver that does not understand one must reject the request
/// (420 Unknown Attribute) rather than ignore it.
public struct STUNAttributeType: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    // Comprehension-required (0x0000–0x7FFF).
    public static let mappedAddress = STUNAttributeType(rawValue: 0x0001)
    public static let username = STUNAttributeType(rawValue: 0x0006)
    public static let messageIntegrity = STUNAttributeType(rawValue: 0x0008)
    public static let errorCode = STUNAttributeType(rawValue: 0x0009)
    public static let unknownAttributes = STUNAttributeType(rawValue: 0x000A)
    public static let channelNumber = STUNAttributeType(rawValue: 0x000C)
    public static let lifetime = STUNAttributeType(rawValue: 0x000D)
    public static let xorPeerAddress = STUNAttributeType(rawValue: 0x0012)
    public static let data = STUNAttributeType(rawValue: 0x0013)
    public static let realm = STUNAttributeType(rawValue: 0x0014)
    public static let nonce = STUNAttributeType(rawValue: 0x0015)
    public static let xorRelayedAddress = STUNAttributeType(rawValue: 0x0016)
    public static let requestedAddressFamily = STUNAttributeType(rawValue: 0x0017)
    public static let evenPort = STUNAttributeType(rawValue: 0x0018)
    public static let requestedTransport = STUNAttributeType(rawValue: 0x0019)
    public static let dontFragment = STUNAttributeType(rawValue: 0x001A)
    public static let messageIntegritySHA256 = STUNAttributeType(rawValue: 0x001C)
    public static let passwordAlgorithm = STUNAttributeType(rawValue: 0x001D)
    public static let userHash = STUNAttributeType(rawValue: 0x001E)
    public static let xorMappedAddress = STUNAttributeType(rawValue: 0x0020)
    public static let reservationToken = STUNAttributeType(rawValue: 0x0022)
    public static let priority = STUNAttributeType(rawValue: 0x0024)
    public static let useCandidate = STUNAttributeType(rawValue: 0x0025)

    // Comprehension-optional (0x8000–0xFFFF).
    public static let additionalAddressFamily = STUNAttributeType(rawValue: 0x8000)
    public static let addressErrorCode = STUNAttributeType(rawValue: 0x8001)
    public static let passwordAlgorithms = STUNAttributeType(rawValue: 0x8002)
    public static let alternateDomain = STUNAttributeType(rawValue: 0x8003)
    public static let icmp = STUNAttributeType(rawValue: 0x8004)
    public static let software = STUNAttributeType(rawValue: 0x8022)
    public static let alternateServer = STUNAttributeType(rawValue: 0x8023)
    public static let fingerprint = STUNAttributeType(rawValue: 0x8028)
    public static let iceControlled = STUNAttributeType(rawValue: 0x8029)
    public static let iceControlling = STUNAttributeType(rawValue: 0x802A)

    /// Whether a receiver must understand this attribute (types below 0x8000, RFC 8489 §14).
    public var isComprehensionRequired: Bool { rawValue < 0x8000 }

    /// Whether this codec knows the attribute (it is one of the static members above).
    public var isKnown: Bool { STUNAttributeType.names[self] != nil }

    public var description: String {
        STUNAttributeType.names[self] ?? "attribute(0x\(String(rawValue, radix: 16)))"
    }

    /// Every attribute type this codec knows, with its RFC name. Immutable.
    static let names: [STUNAttributeType: String] = [
        .mappedAddress: "MAPPED-ADDRESS",
        .username: "USERNAME",
        .messageIntegrity: "MESSAGE-INTEGRITY",
        .errorCode: "ERROR-CODE",
        .unknownAttributes: "UNKNOWN-ATTRIBUTES",
        .channelNumber: "CHANNEL-NUMBER",
        .lifetime: "LIFETIME",
        .xorPeerAddress: "XOR-PEER-ADDRESS",
        .data: "DATA",
        .realm: "REALM",
        .nonce: "NONCE",
        .xorRelayedAddress: "XOR-RELAYED-ADDRESS",
        .requestedAddressFamily: "REQUESTED-ADDRESS-FAMILY",
        .evenPort: "EVEN-PORT",
        .requestedTransport: "REQUESTED-TRANSPORT",
        .dontFragment: "DONT-FRAGMENT",
        .messageIntegritySHA256: "MESSAGE-INTEGRITY-SHA256",
        .passwordAlgorithm: "PASSWORD-ALGORITHM",
        .userHash: "USERHASH",
        .xorMappedAddress: "XOR-MAPPED-ADDRESS",
        .reservationToken: "RESERVATION-TOKEN",
        .priority: "PRIORITY",
        .useCandidate: "USE-CANDIDATE",
        .additionalAddressFamily: "ADDITIONAL-ADDRESS-FAMILY",
        .addressErrorCode: "ADDRESS-ERROR-CODE",
        .passwordAlgorithms: "PASSWORD-ALGORITHMS",
        .alternateDomain: "ALTERNATE-DOMAIN",
        .icmp: "ICMP",
        .software: "SOFTWARE",
        .alternateServer: "ALTERNATE-SERVER",
        .fingerprint: "FINGERPRINT",
        .iceControlled: "ICE-CONTROLLED",
        .iceControlling: "ICE-CONTROLLING",
    ]
}

/// One attribute as it appears on the wire (RFC 8489 §14): a type and its value bytes, without padding.
///
/// Messages keep attributes in wire order, duplicates included. Build them with the static constructors in the
/// `Attributes/` files (``xorMappedAddress(_:transactionID:)``, ``lifetime(_:)``, …) or from raw bytes.
public struct STUNAttribute: Sendable, Hashable {
    public var type: STUNAttributeType
    public var value: [UInt8]

    public init(type: STUNAttributeType, value: [UInt8]) {
        self.type = type
        self.value = value
    }
}
