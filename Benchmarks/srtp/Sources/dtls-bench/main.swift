// DTLS 1.2 use_srtp handshakes per second between two DTLSEngines in one process (ECDSA P-256, both profiles
// offered, memory only), and the resident memory of established engine pairs. Prints one JSON line.
import DTLSSRTP
import Foundation

let handshakes = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 500 : 500
let heldPairs = CommandLine.arguments.count > 2 ? Int(CommandLine.arguments[2]) ?? 1000 : 1000

func rssKiB() -> Double {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
    else { return 0 }
    return Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
}

func handshake(_ clientIdentity: DTLSIdentity, _ serverIdentity: DTLSIdentity) throws -> (DTLSEngine, DTLSEngine) {
    let client = try DTLSEngine(
        .init(role: .client, identity: clientIdentity, remoteFingerprint: serverIdentity.fingerprint()))
    let server = try DTLSEngine(
        .init(role: .server, identity: serverIdentity, remoteFingerprint: clientIdentity.fingerprint()))
    var toServer = try client.start()
    while !(client.isEstablished && server.isEstablished) {
        var toClient: [[UInt8]] = []
        for datagram in toServer { toClient += try server.receive(datagram) }
        toServer = []
        for datagram in toClient { toServer += try client.receive(datagram) }
    }
    return (client, server)
}

// Identities are made once, as a WebRTC endpoint keeps its certificate for many calls.
let clientIdentity = try DTLSIdentity.generate()
let serverIdentity = try DTLSIdentity.generate()
_ = try handshake(clientIdentity, serverIdentity)  // warm-up

let start = ContinuousClock.now
for _ in 0..<handshakes { _ = try handshake(clientIdentity, serverIdentity) }
let elapsed = ContinuousClock.now - start
let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18

let before = rssKiB()
var held: [(DTLSEngine, DTLSEngine, SRTPSession, SRTPSession)] = []
for _ in 0..<heldPairs {
    let (client, server) = try handshake(clientIdentity, serverIdentity)
    guard case .established(let keys) = client.state else { fatalError("not established") }
    let (outbound, inbound) = try keys.makeSessions()
    held.append((client, server, outbound, inbound))
}
let after = rssKiB()
print(
    #"{"handshakes":\#(handshakes),"seconds":\#(String(format: "%.3f", seconds)),"handshakesPerSecond":\#(String(format: "%.1f", Double(handshakes) / seconds)),"heldPairs":\#(held.count),"rssPerPairKiB":\#(String(format: "%.1f", (after - before) / Double(heldPairs)))}"#
)
