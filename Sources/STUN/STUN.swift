/// Protocol constants shared by STUN (RFC 8489) and TURN (RFC 8656).
///
/// A namespace only: it holds no state.
public enum STUN {
    /// The fixed value of bytes 4..<8 of every STUN message (RFC 8489 §5).
    public static let magicCookie: UInt32 = 0x2112_A442
    /// The size of the STUN message header in bytes (RFC 8489 §5).
    public static let headerSize = 20
    /// The size of an attribute's type and length fields in bytes (RFC 8489 §14).
    public static let attributeHeaderSize = 4
    /// The size of a transaction ID in bytes (RFC 8489 §5).
    public static let transactionIDSize = 12
    /// The largest message the 16-bit length field can describe: a 20-byte header plus 65532 bytes of attributes
    /// (the length is a multiple of 4, RFC 8489 §5).
    public static let maximumMessageSize = headerSize + 0xFFFC
    /// The largest value a single attribute can carry (its length field is 16 bits, RFC 8489 §14).
    public static let maximumAttributeValueSize = 0xFFFF
    /// The value XORed into the CRC-32 of a FINGERPRINT attribute (RFC 8489 §14.7): ASCII "STUN".
    public static let fingerprintXOR: UInt32 = 0x5354_554E
    /// The size of a MESSAGE-INTEGRITY value: an HMAC-SHA1 (RFC 8489 §14.5).
    public static let messageIntegritySize = 20
    /// The full size of a MESSAGE-INTEGRITY-SHA256 value: an HMAC-SHA256 (RFC 8489 §14.6).
    public static let messageIntegritySHA256Size = 32
    /// The largest UTF-8 size of REALM, NONCE, SOFTWARE and an ERROR-CODE reason phrase (RFC 8489 §14.8–14.10, §14.14).
    public static let maximumTextSize = 763
    /// USERNAME must be fewer than 509 bytes of UTF-8 (RFC 8489 §14.3).
    public static let maximumUsernameSize = 508
}
