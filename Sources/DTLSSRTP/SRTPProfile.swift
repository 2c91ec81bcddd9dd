/// A DTLS-SRTP protection profile (RFC 5764 §4.1.2, RFC 7714 §14.2): the SRTP transform both ends agreed on in
/// the DTLS `use_srtp` extension, with the key and salt lengths the exported keying material is split by.
public enum SRTPProfile: Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// `SRTP_AEAD_AES_128_GCM` (0x0007, RFC 7714): AES-128-GCM, 96-bit salt, 16-byte tag.
    case aeadAES128GCM
    /// `SRTP_AES128_CM_SHA1_80` (0x0001, RFC 5764): AES-128 counter mode, 112-bit salt, HMAC-SHA1 80-bit tag.
    case aes128CMHMACSHA1_80

    /// The profile's IANA id in the `use_srtp` extension.
    public var identifier: UInt16 {
        switch self {
        case .aeadAES128GCM: 0x0007
        case .aes128CMHMACSHA1_80: 0x0001
        }
    }

    /// The name OpenSSL uses (`SSL_CTX_set_tlsext_use_srtp`).
    public var openSSLName: String {
        switch self {
        case .aeadAES128GCM: "SRTP_AEAD_AES_128_GCM"
        case .aes128CMHMACSHA1_80: "SRTP_AES128_CM_SHA1_80"
        }
    }

    public var description: String { openSSLName }

    /// Master key length in bytes.
    public var keyLength: Int { 16 }

    /// Master salt length in bytes.
    public var saltLength: Int {
        switch self {
        case .aeadAES128GCM: 12
        case .aes128CMHMACSHA1_80: 14
        }
    }

    /// Bytes of RFC 5764 keying material this profile needs: two keys and two salts.
    public var keyingMaterialLength: Int { 2 * (keyLength + saltLength) }
}
