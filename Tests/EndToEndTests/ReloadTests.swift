import Foundation
import SwitchboardServer
import Testing

/// SIGHUP on a real `switchboard serve`: the certificate, key and JWKS are read again; new handshakes get the new
/// certificate while a stream opened before keeps its connection and its events.
@Suite struct ReloadTests {
    /// The serial number of the certificate a new TLS handshake with `port` gets, as `openssl s_client` sees it.
    static func servedSerial(port: Int) async throws -> String {
        let command = "openssl s_client -connect 127.0.0.1:\(port) </dev/null 2>/dev/null | openssl x509 -noout -serial"
        return try await Subprocess.run("/bin/sh", ["-c", command]).output.trimmingCharacters(
            in: .whitespacesAndNewlines)
    }

    static func serial(ofPEM pem: String) async throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cert-\(UUID()).pem").path
        try pem.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try await Subprocess.run("/usr/bin/openssl", ["x509", "-noout", "-serial", "-in", path]).output
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func sighupReloadsTheCertificateAndKeysWithoutDroppingAStream() async throws {
        let files = try ServeProcess.Files()
        defer { files.remove() }
        let provider = try await TestIdentityProvider()
        let jwks = files.path("jwks.json")
        try provider.writeJWKS(kids: ["rsa-1"], to: jwks)
        let server = try await ServeProcess.start(
            files, ringTimeout: 30,
            extra: [
                "--jwks-file", jwks, "--jwt-issuer", TestIdentityProvider.issuer, "--jwt-audience", "switchboard",
            ], logs: true)
        defer { server.kill() }
        // A failed expectation that throws must still shut the clients down (AsyncHTTPClient traps otherwise).
        let renewedClient = LockedBox<TestServer?>(nil)
        do {
            try await exercise(server, files, provider, jwks, renewedClient)
        } catch {
            await renewedClient.withLock { $0 }?.stop()
            await server.client.stop()
            throw error
        }
    }

    func exercise(
        _ server: ServeProcess, _ files: ServeProcess.Files, _ provider: TestIdentityProvider, _ jwks: String,
        _ renewedClient: LockedBox<TestServer?>
    ) async throws {
        let oldSerial = try await Self.servedSerial(port: server.client.port)
        #expect(oldSerial.hasPrefix("serial="))
        let user: [String: TestClaim] = ["sub": .string("carol")]
        let oldKeyToken = try await provider.token(kid: "rsa-1", user)
        let newKeyToken = try await provider.token(kid: "ec-1", user)
        #expect(try await server.client.request(.GET, "/v1/calls", token: oldKeyToken).status == 200)
        #expect(try await server.client.request(.GET, "/v1/calls", token: newKeyToken).status == 401)

        // A stream opened on the old certificate.
        let bob = try await server.client.stream("bob", device: "b1")
        try await bob.expect("hello")

        // A new certificate and key (of another CA), and a JWKS that replaced the RSA key with the P-256 one.
        let renewed = try DevCertificates.make()
        try renewed.certificatePEM.write(toFile: files.path("cert.pem"), atomically: true, encoding: .utf8)
        try renewed.privateKeyPEM.write(toFile: files.path("key.pem"), atomically: true, encoding: .utf8)
        try provider.writeJWKS(kids: ["ec-1"], to: jwks)
        kill(server.output.process.processIdentifier, SIGHUP)
        var reloaded: [String] = []
        while reloaded.count < 2, let line = try await server.output.next(timeout: 30) {
            if line.contains("certificate reloaded") || line.contains("identity provider keys loaded") {
                reloaded.append(line)
            }
        }
        #expect(reloaded.count == 2)
        // A client that trusts the new certificate's CA (new connections), beside the old one's.
        let trust = files.path("both-cas.pem")
        try (String(contentsOfFile: files.caPath, encoding: .utf8) + "\n" + renewed.caPEM).write(
            toFile: trust, atomically: true, encoding: .utf8)
        let client = TestServer.attach(
            port: server.client.port, directory: files.directory.appendingPathComponent("client-renewed"),
            caPath: trust, secret: Array(files.secret.utf8))
        renewedClient.withLock { $0 = client }

        // New handshakes get the new certificate...
        let newSerial = try await Self.servedSerial(port: server.client.port)
        #expect(newSerial == (try await Self.serial(ofPEM: renewed.certificatePEM)))
        #expect(newSerial != oldSerial)
        // ...the stream opened before still carries events (an invite made over a connection of the old one)...
        let id = try await client.invite("alice", to: "bob").callID
        let invite = try await bob.expect("call.invite")
        #expect((invite["call"] as? [String: Any])?["id"] as? String == id)
        // ...and the provider's keys are the new set.
        #expect(try await client.request(.GET, "/v1/calls", token: newKeyToken).status == 200)
        #expect(try await client.request(.GET, "/v1/calls", token: oldKeyToken).status == 401)

        // A pair that does not match is refused, and the server keeps the one it has.
        let other = try DevCertificates.make()
        try other.privateKeyPEM.write(toFile: files.path("key.pem"), atomically: true, encoding: .utf8)
        kill(server.output.process.processIdentifier, SIGHUP)
        while let line = try await server.output.next(timeout: 30) {
            if line.contains("certificate not reloaded") {
                #expect(line.contains("is not the key of the certificate"))
                break
            }
        }
        #expect(try await Self.servedSerial(port: server.client.port) == newSerial)
        await client.stop()
        await server.client.stop()
    }
}
