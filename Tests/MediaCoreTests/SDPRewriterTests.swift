import Foundation
import MediaCore
import STUN
import SwitchboardCore
import Testing

/// The SDP each party of a secure-relay call sees, built from real Chromium and Firefox offers and answers
/// (the fixtures of `SwitchboardCoreTests`, captured by `scripts/capture-sdp`).
@Suite struct SDPRewriterTests {
    static func fixture(_ name: String) throws -> String {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("SwitchboardCoreTests/Fixtures/sdp/\(name).sdp")
        return try String(contentsOf: url, encoding: .utf8)
    }

    let local = LocalTransport(
        credentials: ICECredentials(ufrag: "SBufrag1", password: "switchboard-password-123"),
        fingerprint: "sha-256 " + (0..<32).map { _ in "AB" }.joined(separator: ":"),
        candidates: [TransportAddress("127.0.0.1:3479")!])

    /// The lines that describe media, which must pass through unchanged: codecs, payload types, extmaps, SSRCs,
    /// directions, data channel parameters.
    static func mediaLines(_ sdp: String) throws -> [[String]] {
        try SDPLines(parsing: sdp).media.map { section in
            let formats = MediaLine(section[0]).map { [$0.kind, $0.proto] + $0.formats } ?? []
            let kept = section.filter { line in
                [
                    "a=rtpmap", "a=fmtp", "a=rtcp-fb", "a=extmap", "a=ssrc", "a=mid", "a=msid", "a=sctp-port",
                    "a=max-message-size", "a=sendrecv", "a=recvonly", "a=sendonly", "a=inactive", "a=rid",
                    "a=simulcast",
                ]
                .contains { line.hasPrefix($0) }
            }
            return [formats.joined(separator: " ")] + kept
        }
    }

    @Test(arguments: [
        "chrome-offer-av", "chrome-offer-audio", "chrome-offer-datachannel", "firefox-offer-av",
        "firefox-offer-audio", "firefox-offer-datachannel",
    ])
    func anOfferKeepsItsMediaAndCarriesOnlySwitchboardsTransport(name: String) throws {
        let original = try Self.fixture(name)
        let rewritten = try SDPRewriter.rewrite(original, local: local, setup: "actpass", origin: (77, 2))
        #expect(try Self.mediaLines(rewritten) == Self.mediaLines(original))
        let parsed = try SDPLines(parsing: rewritten)
        #expect(SDPLines.attribute("ice-lite", in: parsed.session) != nil)
        #expect(parsed.session.contains("o=- 77 2 IN IP4 0.0.0.0"))
        #expect(!parsed.session.contains { $0.hasPrefix("c=") })
        #expect(
            SDPLines.attributes("group", in: parsed.session)
                == SDPLines.attributes("group", in: try SDPLines(parsing: original).session))
        let originalTransport = try SDPRewriter.remoteTransport(of: original, setups: ["actpass"])
        for section in parsed.media {
            #expect(SDPLines.attributes("ice-ufrag", in: section) == ["SBufrag1"])
            #expect(SDPLines.attributes("ice-pwd", in: section) == ["switchboard-password-123"])
            #expect(SDPLines.attributes("fingerprint", in: section) == [local.fingerprint])
            #expect(SDPLines.attributes("setup", in: section) == ["actpass"])
            #expect(
                SDPLines.attributes("candidate", in: section) == ["1 1 udp 2130706431 127.0.0.1 3479 typ host"])
            #expect(section.contains("c=IN IP4 127.0.0.1"))
            #expect(MediaLine(section[0])?.port == 3479)
            if section[0].contains("RTP") { #expect(SDPLines.attribute("rtcp-mux", in: section) != nil) }
            #expect(!section.contains { $0.hasPrefix("a=rtcp:") })
        }
        // Nothing of the caller's transport is left: not its ufrag, password, fingerprint or candidates.
        #expect(!rewritten.contains(originalTransport.credentials.ufrag))
        #expect(!rewritten.contains(originalTransport.credentials.password))
        #expect(!rewritten.contains(originalTransport.fingerprint.split(separator: " ")[1]))
        #expect(!rewritten.contains(".local"))
        // What the callee gets passes the same keying check as what the caller sent.
        guard case .acceptable(let fingerprints) = SDPKeyingCheck.evaluate(rewritten, as: .offer) else {
            Issue.record("the rewritten offer fails the keying check")
            return
        }
        #expect(Set(fingerprints.map(\.bytes)) == [Array(repeating: 0xAB, count: 32)])
        #expect(rewritten.hasSuffix("\r\n"))
        #expect(!rewritten.unicodeScalars.split(separator: "\r").dropFirst().contains { $0.first != "\n" })
    }

    @Test(arguments: [
        "chrome-answer-av", "chrome-answer-audio", "chrome-answer-datachannel", "firefox-answer-av",
        "firefox-answer-audio", "firefox-answer-datachannel",
    ])
    func anAnswerIsReadAndRewrittenPassive(name: String) throws {
        let original = try Self.fixture(name)
        let remote = try SDPRewriter.remoteTransport(of: original, setups: ["active"])
        #expect(!remote.credentials.ufrag.isEmpty && !remote.credentials.password.isEmpty)
        #expect(remote.fingerprint.hasPrefix("sha-256 "))
        #expect(remote.setup == "active")
        let rewritten = try SDPRewriter.rewrite(original, local: local, setup: "passive", origin: (78, 2))
        #expect(try Self.mediaLines(rewritten) == Self.mediaLines(original))
        #expect(try SDPRewriter.remoteTransport(of: rewritten, setups: ["passive"]).credentials == local.credentials)
        #expect(!rewritten.contains(remote.credentials.password))
    }

    @Test func refusesWhatTheSecureRelayCannotCarry() throws {
        let offer = try Self.fixture("chrome-offer-av")
        func refused(_ sdp: String, setups: Set<String> = ["actpass", "active"]) -> Bool {
            (try? SDPRewriter.remoteTransport(of: sdp, setups: setups)) == nil
        }
        #expect(!refused(offer))
        #expect(refused(offer.replacingOccurrences(of: "a=group:BUNDLE 0 1", with: "a=group:BUNDLE 0")))
        #expect(refused(offer.replacingOccurrences(of: "UDP/TLS/RTP/SAVPF", with: "TCP/TLS/RTP/SAVPF")))
        let withoutMux = offer.split(whereSeparator: { $0 == "\r\n" || $0 == "\n" })
            .filter { !$0.hasPrefix("a=rtcp-mux") }.joined(separator: "\r\n")
        #expect(refused(withoutMux))
        #expect(refused(offer, setups: ["active"]))
        #expect(refused(offer.replacingOccurrences(of: "a=ice-pwd:", with: "a=x-ice-pwd:")))
        #expect(refused("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"))
        #expect(refused("not sdp"))
    }

    @Test func freshCredentialsAreLongEnoughAndFromTheIceAlphabet() {
        let credentials = ICECredentials.random()
        #expect(credentials.ufrag.count == 8)
        #expect(credentials.password.count == 24)
        let alphabet = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
        #expect((credentials.ufrag + credentials.password).allSatisfy(alphabet.contains))
        #expect(ICECredentials.random() != credentials)
    }
}
