// Protect + unprotect of 1,200-byte-payload RTP packets through SRTPSession's in-place raw-buffer API, the same
// work as srtp_c_bench.c. Prints one JSON line per profile.
import DTLSSRTP
import Foundation

let packets = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 1_000_000 : 1_000_000

func run(_ profile: SRTPProfile) throws {
    // A fresh key per run: an outbound key protects one session only.
    let key = (0..<profile.keyLength).map { _ in UInt8.random(in: 0...255) }
    let salt = (0..<profile.saltLength).map { _ in UInt8.random(in: 0...255) }
    let sender = try SRTPSession(profile: profile, masterKey: key, masterSalt: salt, direction: .outbound)
    let receiver = try SRTPSession(profile: profile, masterKey: key, masterSalt: salt, direction: .inbound)
    var template = [UInt8](repeating: 0xAB, count: 12 + 1200)
    template[0] = 0x80
    template[1] = 111
    template[8] = 0x12
    template[9] = 0x34
    template[10] = 0x56
    template[11] = 0x78
    let buffer = UnsafeMutableRawBufferPointer.allocate(
        byteCount: template.count + SRTPSession.maximumTrailerLength, alignment: 16)
    defer { buffer.deallocate() }
    let start = ContinuousClock.now
    for i in 0..<packets {
        template.withUnsafeBytes { buffer.copyMemory(from: $0) }
        buffer[2] = UInt8(truncatingIfNeeded: i >> 8)
        buffer[3] = UInt8(truncatingIfNeeded: i)
        buffer[4] = UInt8(truncatingIfNeeded: i >> 24)
        buffer[5] = UInt8(truncatingIfNeeded: i >> 16)
        let length = try sender.protectRTP(buffer, length: template.count)
        _ = try receiver.unprotectRTP(buffer, length: length)
    }
    let elapsed = ContinuousClock.now - start
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    let rate = Double(packets) / seconds
    print(
        #"{"impl":"swift","profile":"\#(profile.openSSLName)","packets":\#(packets),"seconds":\#(String(format: "%.4f", seconds)),"packetsPerSecond":\#(Int(rate)),"gbitPerSecond":\#(String(format: "%.3f", rate * 1200 * 8 / 1e9))}"#
    )
}

for profile in [SRTPProfile.aeadAES128GCM, .aes128CMHMACSHA1_80] {
    try run(profile)
}
