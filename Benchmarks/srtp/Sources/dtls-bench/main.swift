// DTLS 1.2 use_srtp handshakes per second between two DTLSEngines in one process (ECDSA P-256, both profiles
// offered, memory only), and the resident memory of established engine pairs; then the same with the server side
// behind a DTLSListener (stateless cookie exchange, one SSL_CTX shared by its engines). Prints one JSON line.
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

/// The server side through a listener: the first ClientHello gets a HelloVerifyRequest, the second an engine.
func handshake(via listener: DTLSListener, peer: Int, _ clientIdentity: DTLSIdentity) throws -> (DTLSEngine, DTLSEngine)
{
    let client = try DTLSEngine(
        .init(role: .client, identity: clientIdentity, remoteFingerprint: listener.configuration.identity.fingerprint())
    )
    let address = withUnsafeBytes(of: peer, Array.init)
    var server: DTLSEngine?
    var toServer = try client.start()
    while !(client.isEstablished && server?.isEstablished == true) {
        var toClient: [[UInt8]] = []
        for datagram in toServer {
            if let server {
                toClient += try server.receive(datagram)
                continue
            }
            switch listener.receive(datagram, from: address, remoteFingerprint: clientIdentity.fingerprint()) {
            case .reply(let reply): toClient += reply
            case .accepted(let engine, let flight):
                server = engine
                toClient += flight
            case .dropped(let reason): fatalError("dropped: \(reason)")
            }
        }
        toServer = []
        for datagram in toClient { toServer += try client.receive(datagram) }
    }
    return (client, server!)
}

/// Handshakes per second and resident KiB per established pair (with its two SRTP sessions).
func measure(_ make: () throws -> (DTLSEngine, DTLSEngine)) throws -> (perSecond: Double, kibPerPair: Double) {
    _ = try make()  // warm-up
    let start = ContinuousClock.now
    for _ in 0..<handshakes { _ = try make() }
    let elapsed = ContinuousClock.now - start
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    let before = rssKiB()
    var held: [(DTLSEngine, DTLSEngine, SRTPSession, SRTPSession)] = []
    for _ in 0..<heldPairs {
        let (client, server) = try make()
        guard case .established(let keys) = client.state else { fatalError("not established") }
        let (outbound, inbound) = try keys.makeSessions()
        held.append((client, server, outbound, inbound))
    }
    let after = rssKiB()
    return (Double(handshakes) / seconds, (after - before) / Double(held.count))
}

// Identities are made once, as a WebRTC endpoint keeps its certificate for many calls.
let clientIdentity = try DTLSIdentity.generate()
let serverIdentity = try DTLSIdentity.generate()
let direct = try measure { try handshake(clientIdentity, serverIdentity) }
let listener = try DTLSListener(.init(identity: serverIdentity, maximumHalfOpen: 1_000_000))
var peer = 0
let listened = try measure {
    peer += 1
    return try handshake(via: listener, peer: peer, clientIdentity)
}
print(
    #"{"handshakes":\#(handshakes),"heldPairs":\#(heldPairs),"handshakesPerSecond":\#(String(format: "%.1f", direct.perSecond)),"rssPerPairKiB":\#(String(format: "%.1f", direct.kibPerPair)),"listenerHandshakesPerSecond":\#(String(format: "%.1f", listened.perSecond)),"listenerRssPerPairKiB":\#(String(format: "%.1f", listened.kibPerPair))}"#
)
