import DTLSSRTP
import Foundation
import Testing

/// AES_CM_128_HMAC_SHA1_80 (RFC 3711) output of libsrtp checked against an independent computation: the key
/// derivation of RFC 3711 §4.3 and the packet transform of §4.1.1/§4.2 redone here with the `openssl` command's
/// AES-128-CTR and HMAC-SHA1, on the master key and salt of RFC 3711 Appendix B.3.
@Suite struct SRTPKnownAnswerTests {
    static let masterKey = hex("E1F97A0D3E018BE0D64FA32C06DE4139")
    static let masterSalt = hex("0EC675AD498AFEEBB6960B3AABE6")

    @Test func keyDerivationMatchesAppendixB3() throws {
        #expect(try Self.derive(label: 0, length: 16) == Self.hex("C61E7A93744F39EE10734AFE3FF7A087"))
        #expect(try Self.derive(label: 2, length: 14) == Self.hex("30CBBC08863D8C85D49DB34A9AE1"))
        #expect(
            try Self.derive(label: 1, length: 20) == Self.hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4"))
    }

    /// One session (an outbound master key protects one session only), several packets of increasing index.
    @Test func protectedPacketsMatchTheIndependentTransform() throws {
        let session = try SRTPSession(
            profile: .aes128CMHMACSHA1_80, masterKey: Self.masterKey, masterSalt: Self.masterSalt,
            direction: .outbound)
        for sequence: UInt16 in [1, 0x1234, 0x8000] {
            try Self.checkPacket(session, sequence: sequence)
        }
    }

    static func checkPacket(_ session: SRTPSession, sequence: UInt16) throws {
        let ssrc: UInt32 = 0xDEAD_BEEF
        var header: [UInt8] = [0x80, 0x60, UInt8(sequence >> 8), UInt8(sequence & 0xff), 0xDE, 0xCA, 0xFB, 0xAD]
        header += withUnsafeBytes(of: ssrc.bigEndian, Array.init)
        let payload = (0..<48).map { UInt8($0) }
        var buffer = header + payload + [UInt8](repeating: 0, count: SRTPSession.maximumTrailerLength)
        let length = try buffer.withUnsafeMutableBytes {
            try session.protectRTP($0, length: header.count + payload.count)
        }
        let protected = Array(buffer.prefix(length))

        // RFC 3711 §4.1.1: IV = (k_s * 2^16) XOR (SSRC * 2^64) XOR (i * 2^16), i = ROC * 2^16 + SEQ, ROC = 0.
        let sessionKey = try derive(label: 0, length: 16)
        let sessionSalt = try derive(label: 2, length: 14)
        let authKey = try derive(label: 1, length: 20)
        var iv = sessionSalt + [0, 0]
        for (offset, byte) in withUnsafeBytes(of: ssrc.bigEndian, Array.init).enumerated() { iv[4 + offset] ^= byte }
        iv[12] ^= UInt8(sequence >> 8)
        iv[13] ^= UInt8(sequence & 0xff)
        let keystream = try aesCTR(key: sessionKey, iv: iv, length: payload.count)
        let ciphertext = zip(payload, keystream).map { $0 ^ $1 }
        // §4.2: the tag authenticates header, encrypted payload and ROC, truncated to 80 bits.
        let tag = try hmacSHA1(key: authKey, data: header + ciphertext + [0, 0, 0, 0]).prefix(10)
        #expect(protected == header + ciphertext + tag, "sequence \(sequence)")
    }

    // MARK: The independent reference, through the openssl command

    /// RFC 3711 §4.3.1 with key_derivation_rate 0: AES-CM over (label * 2^48 XOR master salt) * 2^16.
    /// `masterSalt` is 14 bytes (a 12-byte AEAD salt is passed padded with two zero bytes, RFC 7714 errata 4938);
    /// both default to the Appendix B.3 values.
    static func derive(
        label: UInt8, length: Int, masterKey: [UInt8] = SRTPKnownAnswerTests.masterKey,
        masterSalt: [UInt8] = SRTPKnownAnswerTests.masterSalt
    ) throws -> [UInt8] {
        var x = masterSalt
        x[7] ^= label
        return try aesCTR(key: masterKey, iv: x + [0, 0], length: length)
    }

    static func aesCTR(key: [UInt8], iv: [UInt8], length: Int) throws -> [UInt8] {
        try openssl(
            ["enc", "-aes-128-ctr", "-nosalt", "-K", hexString(key), "-iv", hexString(iv)],
            input: [UInt8](repeating: 0, count: length))
    }

    static func hmacSHA1(key: [UInt8], data: [UInt8]) throws -> [UInt8] {
        try openssl(["dgst", "-sha1", "-mac", "HMAC", "-macopt", "hexkey:\(hexString(key))", "-binary"], input: data)
    }

    static func openssl(_ arguments: [String], input: [UInt8]) throws -> [UInt8] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        let stdin = Pipe()
        let stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = FileHandle.nullDevice
        try process.run()
        stdin.fileHandleForWriting.write(Data(input))
        try stdin.fileHandleForWriting.close()
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw SRTPError(.libraryFailure, "openssl \(arguments[0]) failed") }
        return Array(output)
    }

    static func hex(_ text: String) -> [UInt8] {
        var bytes: [UInt8] = []
        var index = text.startIndex
        while index < text.endIndex {
            let next = text.index(index, offsetBy: 2)
            bytes.append(UInt8(text[index..<next], radix: 16)!)
            index = next
        }
        return bytes
    }

    static func hexString(_ bytes: [UInt8]) -> String {
        bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }
}
