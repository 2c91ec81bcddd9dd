import Crypto
import Foundation

/// HMACs over a STUN message prefix whose length field is replaced (RFC 8489 §14.5–14.6).
enum MessageMAC {
    /// HMAC over `bytes[0..<2]`, then `length` big-endian, then `bytes[4..<end]`.
    static func sha1(key: [UInt8], bytes: [UInt8], length: Int, end: Int) -> [UInt8] {
        var hmac = HMAC<Insecure.SHA1>(key: SymmetricKey(data: key))
        feed(&hmac, bytes: bytes, length: length, end: end)
        return Array(hmac.finalize())
    }

    static func sha256(key: [UInt8], bytes: [UInt8], length: Int, end: Int) -> [UInt8] {
        var hmac = HMAC<SHA256>(key: SymmetricKey(data: key))
        feed(&hmac, bytes: bytes, length: length, end: end)
        return Array(hmac.finalize())
    }

    private static func feed<H: HashFunction>(_ hmac: inout HMAC<H>, bytes: [UInt8], length: Int, end: Int) {
        hmac.update(data: bytes[0..<2])
        hmac.update(data: [UInt8(truncatingIfNeeded: length >> 8), UInt8(truncatingIfNeeded: length)])
        hmac.update(data: bytes[4..<end])
    }
}

/// Plain digests for credentials.
enum CredentialDigest {
    static func md5(_ bytes: [UInt8]) -> [UInt8] { Array(Insecure.MD5.hash(data: bytes)) }
    static func sha256(_ bytes: [UInt8]) -> [UInt8] { Array(SHA256.hash(data: bytes)) }
    static func hmacSHA1(key: [UInt8], _ bytes: [UInt8]) -> [UInt8] {
        Array(HMAC<Insecure.SHA1>.authenticationCode(for: bytes, using: SymmetricKey(data: key)))
    }
}
