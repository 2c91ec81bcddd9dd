import Crypto
public import Foundation
import Glibc
import SwiftASN1
import X509

/// The development certificate set `switchboard serve` makes on first run and `switchboard certs generate` makes
/// on demand: a small CA (`dev-ca.pem`, the file clients trust) and a server leaf it signed (`dev-cert.pem`,
/// `dev-key.pem`) for `localhost`, `127.0.0.1` and `::1`, plus the dev token secret (`dev-token-secret`).
///
/// The leaf is `CA:FALSE` with `serverAuth`, as TLS clients require of a server certificate; the CA key is never
/// written to disk, so a leaked dev directory cannot mint certificates.
public struct DevCertificates: Sendable {
    public let directory: URL

    public init(directory: String) {
        self.directory = URL(fileURLWithPath: directory, isDirectory: true)
    }

    public var caPath: String { directory.appendingPathComponent("dev-ca.pem").path }
    public var certificatePath: String { directory.appendingPathComponent("dev-cert.pem").path }
    public var privateKeyPath: String { directory.appendingPathComponent("dev-key.pem").path }
    public var tokenSecretPath: String { directory.appendingPathComponent("dev-token-secret").path }

    /// Whether a usable certificate set is on disk (present and valid for at least another day).
    public func isPresentAndValid(now: Date = Date()) -> Bool {
        guard FileManager.default.fileExists(atPath: privateKeyPath),
            FileManager.default.fileExists(atPath: caPath),
            let pem = try? String(contentsOfFile: certificatePath, encoding: .utf8),
            let certificate = try? Certificate(pemEncoded: pem)
        else { return false }
        return certificate.notValidAfter > now.addingTimeInterval(86_400)
    }

    /// Makes the certificate set unless a valid one exists (or always, with `force`). Returns whether it wrote.
    @discardableResult
    public func ensure(force: Bool = false, hostnames: [String] = [], now: Date = Date()) throws -> Bool {
        if !force && isPresentAndValid(now: now) { return false }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let set = try Self.make(hostnames: hostnames, now: now)
        try write(set.caPEM, to: caPath, mode: 0o644)
        try write(set.certificatePEM, to: certificatePath, mode: 0o644)
        try write(set.privateKeyPEM, to: privateKeyPath, mode: 0o600)
        return true
    }

    /// The dev token secret, created (32 random bytes) on first use.
    /// The dev TURN REST API shared secret (`turn-secret` beside the token secret), made on first use.
    public func turnSecret() throws -> [UInt8] { try secret(at: directory.appendingPathComponent("turn-secret").path) }

    public func tokenSecret() throws -> [UInt8] { try secret(at: tokenSecretPath) }

    private func secret(at path: String) throws -> [UInt8] {
        if FileManager.default.fileExists(atPath: path) {
            // An existing secret that cannot be read is an error, not a reason to mint a new one (that would
            // silently invalidate every token).
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw ServerError("cannot read the dev secret \(path)")
            }
            let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !trimmed.isEmpty else { throw ServerError("the dev secret \(path) is empty") }
            return Array(trimmed.utf8)
        }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let secret = Base64URL.random(bytes: 32)
        try write(secret + "\n", to: path, mode: 0o600)
        return Array(secret.utf8)
    }

    /// PEM texts of a fresh CA and a leaf signed by it.
    public struct Material: Sendable {
        public let caPEM: String
        public let certificatePEM: String
        public let privateKeyPEM: String
    }

    /// A fresh CA and leaf, in memory. Tests use this to get a trust anchor of their own.
    public static func make(hostnames: [String] = [], now: Date = Date()) throws -> Material {
        let caKey = P256.Signing.PrivateKey()
        let caName = try DistinguishedName {
            OrganizationName("Switchboard development")
            CommonName("Switchboard dev CA \(Base64URL.random(bytes: 6))")
        }
        let caPublicKey = Certificate.PublicKey(caKey.publicKey)
        let caIdentifier = SubjectKeyIdentifier(hash: caPublicKey)
        let ca = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: caPublicKey,
            notValidBefore: now.addingTimeInterval(-3600),
            notValidAfter: now.addingTimeInterval(5 * 365 * 86_400),
            issuer: caName,
            subject: caName,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                caIdentifier
            },
            issuerPrivateKey: Certificate.PrivateKey(caKey))

        let leafKey = P256.Signing.PrivateKey()
        let leafPublicKey = Certificate.PublicKey(leafKey.publicKey)
        var names: [GeneralName] = [
            .dnsName("localhost"),
            .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1])),
            .ipAddress(ASN1OctetString(contentBytes: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])),
        ]
        names += hostnames.map { GeneralName.dnsName($0) }
        let leaf = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: leafPublicKey,
            notValidBefore: now.addingTimeInterval(-3600),
            notValidAfter: now.addingTimeInterval(365 * 86_400),
            issuer: caName,
            subject: try DistinguishedName {
                OrganizationName("Switchboard development")
                CommonName("localhost")
            },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames(names)
                SubjectKeyIdentifier(hash: leafPublicKey)
                AuthorityKeyIdentifier(keyIdentifier: caIdentifier.keyIdentifier)
            },
            issuerPrivateKey: Certificate.PrivateKey(caKey))

        return Material(
            caPEM: try ca.serializeAsPEM().pemString,
            certificatePEM: try leaf.serializeAsPEM().pemString,
            privateKeyPEM: leafKey.pemRepresentation)
    }

    private func write(_ text: String, to path: String, mode: Int) throws {
        // Created with its final mode (O_EXCL, no symlink followed), so a private key is never readable by
        // others, even briefly.
        if unlink(path) != 0 && errno != ENOENT { throw ServerError("cannot replace \(path): errno \(errno)") }
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode_t(mode))
        guard fd >= 0 else { throw ServerError("cannot create \(path): errno \(errno)") }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let result = bytes[written...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            guard result > 0 else { throw ServerError("cannot write \(path): errno \(errno)") }
            written += result
        }
        guard fchmod(fd, mode_t(mode)) == 0 else { throw ServerError("cannot set the mode of \(path)") }
    }
}
