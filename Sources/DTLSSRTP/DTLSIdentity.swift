internal import COpenSSL
public import CertificateFingerprint
import Foundation

/// A DTLS endpoint's certificate and private key, owned as OpenSSL objects and freed in `deinit`.
///
/// WebRTC peers use short-lived self-signed certificates; what binds them is the fingerprint each side signals in
/// SDP (RFC 8122, RFC 5763 §5).
public final class DTLSIdentity: @unchecked Sendable {
    /// Key types ``generate(_:commonName:validityDays:)`` can make.
    public enum KeyType: Sendable {
        case ecdsaP256
        case rsa2048
    }

    // Immutable after init; OpenSSL's X509 and EVP_PKEY are safe to share read-only between threads.
    let key: OpaquePointer
    let certificate: OpaquePointer

    private init(takingOwnershipOfKey key: OpaquePointer, certificate: OpaquePointer) {
        self.key = key
        self.certificate = certificate
    }

    deinit {
        X509_free(certificate)
        EVP_PKEY_free(key)
    }

    /// A fresh key and a self-signed certificate for it.
    public static func generate(
        _ type: KeyType = .ecdsaP256,
        commonName: String = "switchboard",
        validityDays: Int = 30
    ) throws(DTLSError) -> DTLSIdentity {
        let generated: OpaquePointer? =
            switch type {
            case .ecdsaP256: sb_generate_p256_key()
            case .rsa2048: sb_generate_rsa2048_key()
            }
        guard let key = generated else {
            throw DTLSError(.badIdentity, "key generation failed", details: OpenSSLErrors.drain())
        }
        guard let certificate = sb_make_self_signed(key, commonName, validityDays) else {
            EVP_PKEY_free(key)
            throw DTLSError(.badIdentity, "certificate generation failed", details: OpenSSLErrors.drain())
        }
        return DTLSIdentity(takingOwnershipOfKey: key, certificate: certificate)
    }

    /// An identity from PEM texts: a certificate and its private key.
    public static func fromPEM(certificate: String, privateKey: String) throws(DTLSError) -> DTLSIdentity {
        guard let certificateBIO = BIO_new(BIO_s_mem()) else { throw DTLSError(.libraryFailure, "BIO_new failed") }
        defer { BIO_free(certificateBIO) }
        guard let keyBIO = BIO_new(BIO_s_mem()) else { throw DTLSError(.libraryFailure, "BIO_new failed") }
        defer { BIO_free(keyBIO) }
        _ = certificate.utf8CString.withUnsafeBufferPointer {
            BIO_write(certificateBIO, $0.baseAddress, Int32($0.count - 1))
        }
        _ = privateKey.utf8CString.withUnsafeBufferPointer { BIO_write(keyBIO, $0.baseAddress, Int32($0.count - 1)) }
        guard let x509 = PEM_read_bio_X509(certificateBIO, nil, nil, nil) else {
            throw DTLSError(.badIdentity, "not a PEM certificate", details: OpenSSLErrors.drain())
        }
        guard let key = PEM_read_bio_PrivateKey(keyBIO, nil, nil, nil) else {
            X509_free(x509)
            throw DTLSError(.badIdentity, "not a PEM private key", details: OpenSSLErrors.drain())
        }
        guard X509_check_private_key(x509, key) == 1 else {
            X509_free(x509)
            EVP_PKEY_free(key)
            throw DTLSError(
                .badIdentity, "the private key does not belong to the certificate", details: OpenSSLErrors.drain())
        }
        return DTLSIdentity(takingOwnershipOfKey: key, certificate: x509)
    }

    /// The certificate's fingerprint, for `a=fingerprint`.
    public func fingerprint(_ algorithm: DTLSFingerprint.Algorithm = .sha256) -> DTLSFingerprint {
        Self.fingerprint(of: certificate, algorithm)
    }

    /// The certificate as PEM.
    public var certificatePEM: String {
        guard let bio = BIO_new(BIO_s_mem()) else { return "" }
        defer { BIO_free(bio) }
        PEM_write_bio_X509(bio, certificate)
        return OpenSSLErrors.read(bio)
    }

    /// The private key as PKCS#8 PEM.
    public var privateKeyPEM: String {
        guard let bio = BIO_new(BIO_s_mem()) else { return "" }
        defer { BIO_free(bio) }
        PEM_write_bio_PrivateKey(bio, key, nil, nil, 0, nil, nil)
        return OpenSSLErrors.read(bio)
    }

    static func fingerprint(of certificate: OpaquePointer, _ algorithm: DTLSFingerprint.Algorithm) -> DTLSFingerprint {
        let digest: OpaquePointer? =
            switch algorithm {
            case .sha256: EVP_sha256()
            case .sha384: EVP_sha384()
            case .sha512: EVP_sha512()
            }
        var bytes = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        X509_digest(certificate, digest, &bytes, &length)
        return DTLSFingerprint(algorithm: algorithm, bytes: Array(bytes.prefix(Int(length))))
    }
}

/// OpenSSL's thread-local error queue, as text for ``DTLSError/details``.
enum OpenSSLErrors {
    static func drain() -> String? {
        var messages: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
            messages.append(String(decoding: bytes, as: UTF8.self))
        }
        return messages.isEmpty ? nil : messages.joined(separator: "; ")
    }

    static func read(_ bio: OpaquePointer) -> String {
        let count = sb_bio_pending(bio)
        var bytes = [UInt8](repeating: 0, count: count)
        let read = BIO_read(bio, &bytes, Int32(count))
        return String(decoding: bytes.prefix(Int(max(read, 0))), as: UTF8.self)
    }
}
