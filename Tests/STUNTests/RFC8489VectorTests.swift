import Foundation
import STUN
import Testing

@Suite("RFC 8489 Appendix B.1")
struct RFC8489VectorTests {
    let sha256Key = LongTermCredential.key(
        username: RFC5769.longTermUsername, realm: RFC5769.longTermRealm, password: RFC5769.longTermPassword,
        algorithm: .sha256)

    @Test("the corrected vector decodes, verifies and re-encodes byte for byte")
    func corrected() throws {
        let message = try STUNMessage(decoding: RFC8489.correctedB1)
        #expect(message.type == .bindingRequest)
        #expect(message.transactionID == TransactionID(bytes: RFC5769.longTermTransactionID))
        #expect(try message.userHash == RFC8489.userHash)
        #expect(
            LongTermCredential.userHash(username: RFC5769.longTermUsername, realm: "example.org") == RFC8489.userHash)
        #expect(try message.nonce == RFC8489.nonce)
        #expect(try message.realm == "example.org")
        #expect(try message.passwordAlgorithm == .sha256)
        #expect(try message.username == nil)
        #expect(sha256Key.count == 32)
        #expect(message.verifyIntegrity(key: sha256Key, algorithm: .hmacSHA256) == .valid)
        #expect(message.verifyIntegrity(key: sha256Key, algorithm: .hmacSHA1) == .missing)
        let md5Key = LongTermCredential.key(
            username: RFC5769.longTermUsername, realm: "example.org", password: "TheMatrIX")
        #expect(message.verifyIntegrity(key: md5Key, algorithm: .hmacSHA256) == .invalid)

        let rebuilt = STUNMessage(
            type: .bindingRequest, transactionID: message.transactionID,
            attributes: [
                .userHash(username: RFC5769.longTermUsername, realm: "example.org"), .nonce(RFC8489.nonce),
                .realm("example.org"), .passwordAlgorithm(.sha256),
            ])
        #expect(try rebuilt.encode(integritySHA256: sha256Key) == RFC8489.correctedB1)
    }

    @Test("the published vector is refused for its length, but its HMAC matches the key derivation")
    func published() throws {
        expectSTUNError(.lengthMismatch) { try STUNMessage(decoding: RFC8489.publishedB1) }
        // With the length field fixed, the HMAC (computed over the wrong length) no longer matches.
        var fixed = RFC8489.publishedB1
        fixed[3] = 0x88
        let message = try STUNMessage(decoding: fixed)
        #expect(message.verifyIntegrity(key: sha256Key, algorithm: .hmacSHA256) == .invalid)
        // Over the bytes as printed, HMAC-SHA256 with SHA-256("マトリックス:example.org:TheMatrIX") is the published
        // value: the key derivation agrees with the RFC. openssl computes the HMAC independently.
        let mac = try hmacSHA256WithOpenSSL(key: sha256Key, data: Array(RFC8489.publishedB1[0..<120]))
        #expect(mac == Array(RFC8489.publishedB1[124..<156]))
    }
}

/// HMAC-SHA256 by `/usr/bin/openssl`, independent of swift-crypto.
func hmacSHA256WithOpenSSL(key: [UInt8], data: [UInt8]) throws -> [UInt8] {
    try runOpenSSL(["dgst", "-sha256", "-mac", "HMAC", "-macopt", "hexkey:\(hexString(key))", "-binary"], input: data)
}

func runOpenSSL(_ arguments: [String], input: [UInt8]) throws -> [UInt8] {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
    process.arguments = arguments
    let stdin = Pipe()
    let stdout = Pipe()
    process.standardInput = stdin
    process.standardOutput = stdout
    try process.run()
    stdin.fileHandleForWriting.write(Data(input))
    try stdin.fileHandleForWriting.close()
    let output = stdout.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    #expect(process.terminationStatus == 0)
    return Array(output)
}
