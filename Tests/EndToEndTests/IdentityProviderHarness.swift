import Crypto
import CryptoExtras
import Foundation
import JWTKit
import SwitchboardServer

/// A claim value of a test token; `.null` leaves the claim out.
enum TestClaim: Encodable, Sendable {
    case string(String)
    case number(Double)
    case array([String])
    case null

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let value): try container.encode(value)
        case .number(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .null: try container.encodeNil()
        }
    }
}

/// An identity provider made in the test: an RSA (RS256), a P-256 (ES256) and an Ed25519 (EdDSA) key, kids
/// `rsa-1`, `ec-1` and `ed-1`, tokens signed with them, and the JWKS that publishes any of them.
struct TestIdentityProvider: Sendable {
    static let issuer = "https://idp.test"
    private let keys = JWTKeyCollection()
    private let rsa: JWTKit.Insecure.RSA.PrivateKey
    private let ec: ES256PrivateKey
    private let ed: EdDSA.PrivateKey

    init() async throws {
        rsa = try JWTKit.Insecure.RSA.PrivateKey(backing: _RSA.Signing.PrivateKey(keySize: .bits2048))
        ec = ES256PrivateKey()
        ed = try EdDSA.PrivateKey(curve: .ed25519)
        await keys.add(rsa: rsa, digestAlgorithm: .sha256, kid: "rsa-1")
        await keys.add(ecdsa: ec, kid: "ec-1")
        await keys.add(eddsa: ed, kid: "ed-1")
    }

    /// Which `kid` a token's header names.
    enum HeaderKid {
        case signer
        case omitted
        case named(String)
    }

    /// The claims of a token valid for ten minutes for the test's issuer and audience, with `overrides`.
    func claims(_ overrides: [String: TestClaim]) -> [String: TestClaim] {
        let now = Date().timeIntervalSince1970.rounded(.down)
        var claims: [String: TestClaim] = [
            "iss": .string(Self.issuer), "aud": .string("switchboard"), "iat": .number(now),
            "exp": .number(now + 600),
        ]
        for (name, value) in overrides {
            if case .null = value { claims[name] = nil } else { claims[name] = value }
        }
        return claims
    }

    /// A token signed by the key `kid` (its algorithm in the header).
    func token(
        kid: String, _ overrides: [String: TestClaim], headerKid: HeaderKid = .signer,
        extraHeader: [String: TestClaim] = [:]
    ) async throws -> String {
        let key = try await keys.getKey(for: JWKIdentifier(string: kid))
        var header: [String: TestClaim] = ["alg": .string(key.name), "typ": .string("JWT")]
        switch headerKid {
        case .signer: header["kid"] = .string(kid)
        case .omitted: break
        case .named(let other): header["kid"] = .string(other)
        }
        header.merge(extraHeader) { $1 }
        let input = try Self.encode(header) + "." + Self.encode(claims(overrides))
        return input + "." + Self.b64(Data(try key.sign(Data(input.utf8))))
    }

    /// Writes the JWKS publishing `kids` (to a new temporary file unless `path` is given) and returns its path.
    @discardableResult
    func writeJWKS(kids: [String], to path: String? = nil, withAlgorithms: Bool = true) throws -> String {
        var published: [[String: String]] = []
        for kid in kids {
            switch kid {
            case "rsa-1":
                let (modulus, exponent) = try rsa.publicKey.getKeyPrimitives()
                published.append([
                    "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": Self.b64(modulus),
                    "e": Self.b64(exponent),
                ])
            case "ec-1":
                guard let parameters = ec.publicKey.parameters else { throw TestFailure("no P-256 parameters") }
                published.append([
                    "kty": "EC", "kid": kid, "use": "sig", "alg": "ES256", "crv": "P-256", "x": parameters.x,
                    "y": parameters.y,
                ])
            case "ed-1":
                published.append([
                    "kty": "OKP", "kid": kid, "use": "sig", "alg": "EdDSA", "crv": "Ed25519",
                    "x": Self.b64(ed.publicKey.rawRepresentation),
                ])
            default:
                throw TestFailure("no key \(kid)")
            }
        }
        if !withAlgorithms { published = published.map { $0.filter { $0.key != "alg" } } }
        // An encryption key beside them, as real providers publish: skipped, not fatal.
        published.append(["kty": "RSA", "kid": "enc-1", "use": "enc", "n": "AQAB", "e": "AQAB"])
        let path = path ?? FileManager.default.temporaryDirectory.appendingPathComponent("jwks-\(UUID()).json").path
        let data = try JSONSerialization.data(withJSONObject: ["keys": published])
        // Atomically: the server may read the file while it is written.
        try data.write(to: URL(fileURLWithPath: path), options: .atomic)
        return path
    }

    func rsaPublicPEM() throws -> String { rsa.publicKey.pemRepresentation }

    static func b64(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func b64(_ text: String) -> String { b64(Data(text.utf8)) }

    static func encode(_ object: [String: TestClaim]) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return b64(try encoder.encode(object))
    }
}

/// An HTTPS site (Python's http.server with a certificate of a CA made here) that publishes a JWKS with
/// `Cache-Control: max-age=3600` and counts the requests it answers.
final class JWKSSite: Sendable {
    let directory: URL
    let caPath: String
    private let process = Process()
    private let portBox = LockedBox(0)

    var jwksPath: String { directory.appendingPathComponent("jwks.json").path }
    var port: Int { portBox.withLock { $0 } }
    /// Requests answered so far.
    var requests: Int {
        (try? String(contentsOf: directory.appendingPathComponent("requests"), encoding: .utf8)).flatMap { Int($0) }
            ?? 0
    }

    static let script = #"""
        import http.server, os, ssl, sys
        directory, certificate, key = sys.argv[1:4]
        os.chdir(directory)
        class Handler(http.server.SimpleHTTPRequestHandler):
            def end_headers(self):
                self.send_header("Cache-Control", "max-age=3600")
                super().end_headers()
            def do_GET(self):
                count = int(open("requests").read()) if os.path.exists("requests") else 0
                with open("requests.tmp", "w") as f:
                    f.write(str(count + 1))
                os.replace("requests.tmp", "requests")
                super().do_GET()
            def log_message(self, *args):
                pass
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        print(server.server_address[1], flush=True)
        server.serve_forever()
        """#

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("jwks-site-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let material = try DevCertificates.make()
        caPath = directory.appendingPathComponent("ca.pem").path
        try material.caPEM.write(toFile: caPath, atomically: true, encoding: .utf8)
        try material.certificatePEM.write(
            toFile: directory.appendingPathComponent("cert.pem").path, atomically: true, encoding: .utf8)
        try material.privateKeyPEM.write(
            toFile: directory.appendingPathComponent("key.pem").path, atomically: true, encoding: .utf8)
    }

    /// Starts the site and waits until it listens.
    func start() async throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "python3", "-c", Self.script, directory.path, directory.appendingPathComponent("cert.pem").path,
            directory.appendingPathComponent("key.pem").path,
        ]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        var output = Data()
        while !output.contains(UInt8(ascii: "\n")) {
            let chunk = pipe.fileHandleForReading.availableData
            guard !chunk.isEmpty else { throw TestFailure("the JWKS site did not start") }
            output.append(chunk)
        }
        guard let port = Int(String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        else { throw TestFailure("the JWKS site printed no port") }
        portBox.withLock { $0 = port }
    }

    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        try? FileManager.default.removeItem(at: directory)
    }
}
