/// Long-term credential keys (RFC 8489 §9.2.2) and USERHASH (RFC 8489 §14.4).
///
/// The key is `H(username ":" realm ":" password)` with H = MD5 (16 bytes) or SHA-256 (32 bytes) per the
/// ``PasswordAlgorithm``; both MESSAGE-INTEGRITY and MESSAGE-INTEGRITY-SHA256 are keyed with it.
///
/// RFC 8489 asks for OpaqueString (RFC 8265; SASLprep in RFC 5389) processing of username, realm and password. This
/// type does none: strings are used as their UTF-8 bytes. That is exact for ASCII without control characters (all
/// our ephemeral TURN credentials) and for strings already in their prepared form (RFC 5769's "TheMatrIX");
/// callers with other input must prepare it first.
public enum LongTermCredential {
    /// The key for `username`, `realm` and `password`: MD5 (default) or SHA-256 of `username:realm:password`.
    public static func key(
        username: String,
        realm: String,
        password: String,
        algorithm: PasswordAlgorithm = .md5
    ) -> [UInt8] {
        let input = Array("\(username):\(realm):\(password)".utf8)
        return algorithm == .sha256 ? CredentialDigest.sha256(input) : CredentialDigest.md5(input)
    }

    /// USERHASH: SHA-256 of `username:realm` (RFC 8489 §14.4).
    public static func userHash(username: String, realm: String) -> [UInt8] {
        CredentialDigest.sha256(Array("\(username):\(realm)".utf8))
    }
}

/// The short-term credential key (RFC 8489 §9.1.1): the password's bytes (OpaqueString is not applied; see
/// ``LongTermCredential``). ICE uses it with the remote ufrag's password.
public enum ShortTermCredential {
    public static func key(password: String) -> [UInt8] {
        Array(password.utf8)
    }
}
