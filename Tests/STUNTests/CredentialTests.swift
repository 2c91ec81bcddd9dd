import Foundation
import STUN
import Testing

@Suite("Credentials")
struct CredentialTests {
    /// `printf %s "$USERNAME" | openssl dgst -sha1 -hmac "$SECRET" -binary | base64`, values passed in the
    /// environment so nothing is interpreted by the shell.
    func shellPassword(secret: String, username: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = [
            "-c", #"printf %s "$USERNAME" | /usr/bin/openssl dgst -sha1 -hmac "$SECRET" -binary | base64"#,
        ]
        process.environment = ["USERNAME": username, "SECRET": secret, "PATH": "/usr/bin:/bin"]
        let stdout = Pipe()
        process.standardOutput = stdout
        try process.run()
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        return String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test(
        "ephemeral credentials match openssl",
        arguments: [
            ("north-secret", "alice", Int64(1_700_000_000)),
            ("s3cr3t with spaces", "bob:device-2", Int64(4_102_444_800)),
            ("", "", Int64(0)), ("k", "user@example.org", Int64(1)),
        ])
    func ephemeral(secret: String, user: String, expiry: Int64) throws {
        let credential = EphemeralCredential.make(secret: secret, user: user, expiry: expiry)
        #expect(credential.username == "\(expiry):\(user)")
        #expect(credential.password == (try shellPassword(secret: secret, username: credential.username)))
        #expect(credential.password.count == 28)  // base64 of 20 bytes
        #expect(EphemeralCredential.password(secret: secret, username: credential.username) == credential.password)
        #expect(
            EphemeralCredential.password(secret: Array(secret.utf8), username: credential.username)
                == credential.password)
        #expect(
            EphemeralCredential.password(secret: secret + "x", username: credential.username) != credential.password)
        let parsed = try #require(EphemeralCredential.parse(username: credential.username))
        #expect(parsed.expiry == expiry)
        #expect(parsed.user == user)
    }

    @Test("ephemeral usernames: expiry first, the user may hold colons")
    func parse() {
        #expect(EphemeralCredential.parse(username: "1700000000:alice")! == (1_700_000_000, "alice"))
        #expect(EphemeralCredential.parse(username: "1700000000:alice:bob")! == (1_700_000_000, "alice:bob"))
        #expect(EphemeralCredential.parse(username: "1700000000:")! == (1_700_000_000, ""))
        #expect(EphemeralCredential.parse(username: "1700000000")! == (1_700_000_000, ""))
        #expect(EphemeralCredential.parse(username: "9223372036854775807:x")! == (Int64.max, "x"))
        for bad in [
            "", ":alice", "alice:1700000000", "alice", "-5:x", "+5:x", "9223372036854775808:x", " 1:x", "1e9:x",
        ] {
            #expect(EphemeralCredential.parse(username: bad) == nil, "\(bad)")
        }
    }

    @Test("long-term keys: MD5 and SHA-256 of username:realm:password, checked with openssl")
    func longTermKeys() throws {
        let input = Array("alice:example.org:pa55".utf8)
        let md5 = try runOpenSSL(["dgst", "-md5", "-binary"], input: input)
        let sha256 = try runOpenSSL(["dgst", "-sha256", "-binary"], input: input)
        #expect(LongTermCredential.key(username: "alice", realm: "example.org", password: "pa55") == md5)
        #expect(
            LongTermCredential.key(username: "alice", realm: "example.org", password: "pa55", algorithm: .sha256)
                == sha256)
        #expect(
            LongTermCredential.userHash(username: "alice", realm: "example.org")
                == (try runOpenSSL(["dgst", "-sha256", "-binary"], input: Array("alice:example.org".utf8))))
        #expect(ShortTermCredential.key(password: "VOkJxbRl1RmTxUk/WvJxBt") == Array("VOkJxbRl1RmTxUk/WvJxBt".utf8))
    }

    @Test("an ephemeral credential authenticates an Allocate end to end")
    func ephemeralAllocate() throws {
        let credential = EphemeralCredential.make(secret: "shared", user: "alice", expiry: 2_000_000_000)
        let key = LongTermCredential.key(
            username: credential.username, realm: "switchboard", password: credential.password)
        let request = STUNMessage(
            type: .init(method: .allocate, class: .request), transactionID: .random(),
            attributes: [
                .requestedTransportUDP, .username(credential.username), .realm("switchboard"), .nonce("abc"),
            ])
        let decoded = try STUNMessage(decoding: request.encode(integrity: key, fingerprint: true))
        // The server side: parse the username, recompute the password from the secret, derive the key.
        let username = try #require(try decoded.username)
        #expect(EphemeralCredential.parse(username: username)?.user == "alice")
        let serverKey = LongTermCredential.key(
            username: username, realm: try #require(try decoded.realm),
            password: EphemeralCredential.password(secret: "shared", username: username))
        #expect(decoded.verifyIntegrity(key: serverKey) == .valid)
        let wrongSecret = LongTermCredential.key(
            username: username, realm: "switchboard",
            password: EphemeralCredential.password(secret: "other", username: username))
        #expect(decoded.verifyIntegrity(key: wrongSecret) == .invalid)
    }
}
