import Foundation
import SwitchboardCore
import Testing

/// The DTLS-SRTP keying check, on real browser SDP and on small hand-made cases.
@Suite struct SDPKeyingCheckTests {
    static let browserFixtures = [
        "chrome-offer-av", "chrome-answer-av", "chrome-offer-audio", "chrome-answer-audio", "chrome-offer-datachannel",
        "chrome-answer-datachannel", "chrome-answer-to-firefox-offer-av", "firefox-offer-av", "firefox-answer-av",
        "firefox-offer-audio", "firefox-answer-audio", "firefox-offer-datachannel", "firefox-answer-datachannel",
        "firefox-answer-to-chrome-offer-av",
    ]

    /// The negative fixtures, how to evaluate them and the refusal the README expects.
    static let badFixtures: [(String, SessionDescription.Kind, SDPKeyingCheck.Refusal)] = [
        ("bad-no-fingerprint", .offer, .missingFingerprint(mid: "0")),
        ("bad-sha1-fingerprint", .offer, .weakFingerprintHash("sha-1")),
        ("bad-md5-fingerprint", .offer, .weakFingerprintHash("md5")),
        ("bad-sdes-crypto", .offer, .sdesCrypto),
        ("bad-no-setup", .offer, .missingSetup(mid: "0")),
        ("bad-session-level-sha1-media-sha256", .offer, .weakFingerprintHash("sha-1")),
        ("bad-answer-setup-actpass", .answer, .invalidSetup("actpass")),
    ]

    static func kind(of fixture: String) -> SessionDescription.Kind {
        // "firefox-answer-to-chrome-offer-av" is an answer: the second word decides.
        fixture.split(separator: "-")[1] == "offer" ? .offer : .answer
    }

    /// The `a=fingerprint` lines of `sdp`, parsed here independently of the code under test.
    static func fingerprintLines(_ sdp: String) -> [(hash: String, bytes: [UInt8])] {
        sdp.components(separatedBy: "\r\n").filter { $0.hasPrefix("a=fingerprint:") }.map { line in
            let parts = line.dropFirst("a=fingerprint:".count).split(separator: " ")
            return (String(parts[0]), parts[1].split(separator: ":").map { UInt8($0, radix: 16)! })
        }
    }

    @Test func everyFixtureFileIsClassified() throws {
        let directory = try Fixture.url("chrome-offer-av").deletingLastPathComponent()
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        let names = Set(files.filter { $0.hasSuffix(".sdp") }.map { String($0.dropLast(4)) })
        #expect(Set(files.filter { !$0.hasSuffix(".sdp") }) == ["README.md", "capture-manifest.json"])
        #expect(names == Set(Self.browserFixtures + Self.badFixtures.map(\.0)))
    }

    @Test func theManifestAgreesWithTheFileNames() throws {
        let url = try #require(
            Bundle.module.url(forResource: "capture-manifest", withExtension: "json", subdirectory: Fixture.directory))
        let manifest = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let fixtures = try #require(manifest["fixtures"] as? [String: [String: Any]])
        #expect(Set(fixtures.keys) == Set(Self.browserFixtures.map { $0 + ".sdp" }))
        for name in Self.browserFixtures {
            #expect(fixtures[name + ".sdp"]?["type"] as? String == Self.kind(of: name).rawValue, "\(name)")
        }
    }

    @Test(arguments: browserFixtures)
    func realBrowserSdpIsAcceptable(fixture: String) throws {
        let sdp = try Fixture.sdp(fixture)
        #expect(sdp.hasPrefix("v=0\r\n") && sdp.hasSuffix("\r\n"), "the fixture lost its CRLF line endings")
        let expected = Self.fingerprintLines(sdp)
        try #require(!expected.isEmpty)

        let verdict = SDPKeyingCheck.evaluate(sdp, as: Self.kind(of: fixture))
        guard case .acceptable(let fingerprints) = verdict else {
            Issue.record("\(fixture) was refused: \(verdict)")
            return
        }
        #expect(fingerprints.map(\.hash) == expected.map(\.hash))
        #expect(fingerprints.map(\.bytes) == expected.map(\.bytes))
        #expect(fingerprints.allSatisfy { $0.hash == "sha-256" && $0.bytes.count == 32 })
        #expect(throws: Never.self) { try SDPKeyingCheck.validate(sdp, as: Self.kind(of: fixture)) }

        // The same SDP with LF-only line endings is just as acceptable.
        let lf = sdp.replacingOccurrences(of: "\r\n", with: "\n")
        #expect(SDPKeyingCheck.evaluate(lf, as: Self.kind(of: fixture)) == verdict)
    }

    @Test(arguments: browserFixtures.filter { kind(of: $0) == .offer })
    func anOfferIsNotAnAcceptableAnswer(fixture: String) throws {
        let verdict = SDPKeyingCheck.evaluate(try Fixture.sdp(fixture), as: .answer)
        #expect(verdict == .refused(.invalidSetup("actpass")))
    }

    @Test(arguments: badFixtures)
    func badFixturesAreRefused(fixture: String, kind: SessionDescription.Kind, refusal: SDPKeyingCheck.Refusal) throws {
        let sdp = try Fixture.sdp(fixture)
        #expect(SDPKeyingCheck.evaluate(sdp, as: kind) == .refused(refusal))
        let error = #expect(throws: CallError.self) { try SDPKeyingCheck.validate(sdp, as: kind) }
        #expect(error?.code == .insecureSDP)
        #expect(error?.message == refusal.description)
    }

    @Test func removingOneChromeSectionsFingerprintIsRefused() throws {
        let sdp = try Fixture.sdp("chrome-offer-av")
        var lines = sdp.components(separatedBy: "\r\n")
        let last = try #require(lines.lastIndex { $0.hasPrefix("a=fingerprint:") })
        lines.remove(at: last)
        #expect(
            SDPKeyingCheck.evaluate(lines.joined(separator: "\r\n"), as: .offer)
                == .refused(.missingFingerprint(mid: "1")))
    }

    @Test func firefoxsSessionLevelFingerprintCoversEverySection() throws {
        let sdp = try Fixture.sdp("firefox-offer-av")
        let lines = sdp.components(separatedBy: "\r\n")
        let fingerprint = try #require(lines.firstIndex { $0.hasPrefix("a=fingerprint:") })
        let firstMedia = try #require(lines.firstIndex { $0.hasPrefix("m=") })
        #expect(fingerprint < firstMedia)
        let without = lines.filter { !$0.hasPrefix("a=fingerprint:") }.joined(separator: "\r\n")
        #expect(SDPKeyingCheck.evaluate(without, as: .offer) == .refused(.missingFingerprint(mid: "0")))
    }

    // MARK: Inline cases

    @Test func lfOnlyLineEndingsAreAccepted() {
        let verdict = SDPKeyingCheck.evaluate(InlineSDP.make(lineEnding: "\n"), as: .offer)
        guard case .acceptable(let fingerprints) = verdict else {
            Issue.record("refused: \(verdict)")
            return
        }
        #expect(fingerprints.count == 1 && fingerprints.first?.hash == "sha-256")
        #expect(fingerprints.first?.bytes == InlineSDP.hex(32).split(separator: ":").map { UInt8($0, radix: 16)! })
    }

    @Test(arguments: ["RTP/AVP", "RTP/AVPF", "RTP/SAVP", "RTP/SAVPF", "UDP/RTP/AVP", "TCP/RTP/AVP"])
    func mediaWithoutDtlsIsRefused(proto: String) {
        let sdp = InlineSDP.make(media: [InlineSDP.media(proto: proto)])
        #expect(SDPKeyingCheck.evaluate(sdp, as: .offer) == .refused(.unencryptedTransport(proto)))
    }

    @Test(arguments: ["UDP/TLS/RTP/SAVPF", "UDP/TLS/RTP/SAVP", "TCP/TLS/RTP/SAVPF", "UDP/DTLS/SCTP", "TCP/DTLS/SCTP"])
    func dtlsTransportsAreAccepted(proto: String) {
        let sdp = InlineSDP.make(media: [InlineSDP.media(proto: proto)])
        #expect(SDPKeyingCheck.evaluate(sdp, as: .offer) != .refused(.unencryptedTransport(proto)))
        #expect(throws: Never.self) { try SDPKeyingCheck.validate(sdp, as: .offer) }
    }

    @Test func aRejectedSectionWithPortZeroIsIgnored() {
        let rejected = InlineSDP.media("video", port: "0", proto: "RTP/AVP", mid: "1", fingerprint: nil, setup: nil)
        let sdp = InlineSDP.make(media: [InlineSDP.media(), rejected])
        guard case .acceptable = SDPKeyingCheck.evaluate(sdp, as: .offer) else {
            Issue.record("a port-0 section was checked")
            return
        }
        // The same section with a port in use, or bundled, is checked.
        let used = InlineSDP.media("video", port: "9", proto: "RTP/AVP", mid: "1", fingerprint: nil, setup: nil)
        #expect(
            SDPKeyingCheck.evaluate(InlineSDP.make(media: [InlineSDP.media(), used]), as: .offer)
                == .refused(.unencryptedTransport("RTP/AVP")))
        let bundled = InlineSDP.media(
            "video", port: "0", proto: "RTP/AVP", mid: "1", fingerprint: nil, setup: nil, extra: ["a=bundle-only"])
        #expect(
            SDPKeyingCheck.evaluate(InlineSDP.make(media: [InlineSDP.media(), bundled]), as: .offer)
                == .refused(.unencryptedTransport("RTP/AVP")))
    }

    @Test(arguments: [SessionDescription.Kind.offer, .answer])
    func holdconnIsRefused(kind: SessionDescription.Kind) {
        let sdp = InlineSDP.make(media: [InlineSDP.media(setup: "holdconn")])
        #expect(SDPKeyingCheck.evaluate(sdp, as: kind) == .refused(.invalidSetup("holdconn")))
    }

    @Test(arguments: [
        ("actpass", SessionDescription.Kind.offer, true), ("active", .offer, true), ("passive", .offer, true),
        ("actpass", .answer, false), ("active", .answer, true), ("passive", .answer, true),
        ("ACTIVE", .answer, true), ("bogus", .offer, false), ("", .offer, false),
    ])
    func setupRoles(role: String, kind: SessionDescription.Kind, acceptable: Bool) {
        let verdict = SDPKeyingCheck.evaluate(InlineSDP.make(media: [InlineSDP.media(setup: role)]), as: kind)
        if acceptable {
            guard case .acceptable = verdict else {
                Issue.record("a=setup:\(role) in an \(kind) was refused: \(verdict)")
                return
            }
        } else {
            #expect(verdict == .refused(.invalidSetup(role.lowercased())))
        }
    }

    @Test(arguments: [
        InlineSDP.fingerprint(bytes: 31), InlineSDP.fingerprint(bytes: 33), InlineSDP.fingerprint(bytes: 0),
        "a=fingerprint:sha-256", "a=fingerprint:sha-256 \(InlineSDP.hex(32)) extra",
        "a=fingerprint:sha-256 " + InlineSDP.hex(32).replacingOccurrences(of: "0B", with: "ZZ"),
        "a=fingerprint:sha-256 " + InlineSDP.hex(32).replacingOccurrences(of: ":", with: ""),
        "a=fingerprint:sha-256 " + InlineSDP.hex(32) + ":",
        "a=fingerprint:sha-256 " + InlineSDP.hex(32).replacingOccurrences(of: "0B", with: "B"),
        "a=fingerprint:sha-256 " + InlineSDP.hex(32).replacingOccurrences(of: ":", with: "-"),
        "a=fingerprint:sha-256 " + InlineSDP.hex(32).replacingOccurrences(of: "0B", with: "+B"),
        "a=fingerprint:sha-256 " + InlineSDP.hex(32).replacingOccurrences(of: "0B", with: "-0"),
        "a=fingerprint:sha-384 \(InlineSDP.hex(32))", "a=fingerprint:sha-512 \(InlineSDP.hex(48))",
    ])
    func malformedFingerprintsAreRefused(line: String) {
        #expect(InlineSDP.hex(32).contains("0B"), "the test data must contain the byte it edits")
        let sdp = InlineSDP.make(media: [InlineSDP.media(fingerprint: line)])
        #expect(SDPKeyingCheck.evaluate(sdp, as: .offer) == .refused(.malformedFingerprint(line)))
    }

    @Test(arguments: [("sha-256", 32), ("sha-384", 48), ("sha-512", 64), ("SHA-256", 32), ("Sha-512", 64)])
    func strongHashesAreAccepted(hash: String, length: Int) {
        let sdp = InlineSDP.make(media: [InlineSDP.media(fingerprint: InlineSDP.fingerprint(hash, bytes: length))])
        let verdict = SDPKeyingCheck.evaluate(sdp, as: .offer)
        guard case .acceptable(let fingerprints) = verdict else {
            Issue.record("\(hash) refused: \(verdict)")
            return
        }
        #expect(fingerprints.map(\.hash) == [hash.lowercased()])
        #expect(fingerprints.first?.bytes.count == length)
    }

    @Test func lowerCaseHexIsAccepted() {
        let line = InlineSDP.fingerprint().lowercased()
        guard
            case .acceptable(let fingerprints) = SDPKeyingCheck.evaluate(
                InlineSDP.make(media: [InlineSDP.media(fingerprint: line)]), as: .offer)
        else {
            Issue.record("lower-case hex refused")
            return
        }
        #expect(fingerprints.first?.bytes.count == 32)
    }

    @Test(arguments: [("sha-1", 20), ("SHA-1", 20), ("md5", 16), ("sha-224", 28), ("md2", 16)])
    func weakHashesAreRefusedEvenNextToAStrongOne(hash: String, length: Int) {
        let weak = InlineSDP.fingerprint(hash, bytes: length)
        let alone = InlineSDP.make(media: [InlineSDP.media(fingerprint: weak)])
        #expect(SDPKeyingCheck.evaluate(alone, as: .offer) == .refused(.weakFingerprintHash(hash.lowercased())))
        // At session level, next to a strong fingerprint in the section.
        let beside = InlineSDP.make(session: [weak])
        #expect(SDPKeyingCheck.evaluate(beside, as: .offer) == .refused(.weakFingerprintHash(hash.lowercased())))
        // Even in a rejected section.
        let rejected = InlineSDP.media("video", port: "0", mid: "1", fingerprint: weak)
        #expect(
            SDPKeyingCheck.evaluate(InlineSDP.make(media: [InlineSDP.media(), rejected]), as: .offer)
                == .refused(.weakFingerprintHash(hash.lowercased())))
    }

    @Test func sdesKeysAreRefusedWherever() {
        let crypto = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"
        let inSection = InlineSDP.make(media: [InlineSDP.media(extra: [crypto])])
        #expect(SDPKeyingCheck.evaluate(inSection, as: .offer) == .refused(.sdesCrypto))
        #expect(SDPKeyingCheck.evaluate(InlineSDP.make(session: [crypto]), as: .answer) == .refused(.sdesCrypto))
        let rejected = InlineSDP.media("video", port: "0", mid: "1", extra: [crypto])
        #expect(
            SDPKeyingCheck.evaluate(InlineSDP.make(media: [InlineSDP.media(), rejected]), as: .offer)
                == .refused(.sdesCrypto))
    }

    @Test func sessionLevelSetupAndFingerprintCoverTheSections() {
        let sdp = InlineSDP.make(
            session: [InlineSDP.fingerprint(), "a=setup:actpass"],
            media: [
                InlineSDP.media(fingerprint: nil, setup: nil),
                InlineSDP.media("video", mid: "1", fingerprint: nil, setup: nil),
            ])
        guard case .acceptable(let fingerprints) = SDPKeyingCheck.evaluate(sdp, as: .offer) else {
            Issue.record("session-level attributes were not applied")
            return
        }
        #expect(fingerprints.count == 1)
    }

    @Test func missingPiecesNameTheSection() {
        #expect(
            SDPKeyingCheck.evaluate(InlineSDP.make(media: [InlineSDP.media(mid: "audio", setup: nil)]), as: .offer)
                == .refused(.missingSetup(mid: "audio")))
        #expect(
            SDPKeyingCheck.evaluate(InlineSDP.make(media: [InlineSDP.media(mid: nil, fingerprint: nil)]), as: .offer)
                == .refused(.missingFingerprint(mid: "#0")))
        let second = InlineSDP.media("video", mid: nil, setup: nil)
        #expect(
            SDPKeyingCheck.evaluate(InlineSDP.make(media: [InlineSDP.media(), second]), as: .offer)
                == .refused(.missingSetup(mid: "#1")))
        #expect(SDPKeyingCheck.evaluate(InlineSDP.make(media: []), as: .offer) == .refused(.noFingerprint))
        #expect(SDPKeyingCheck.evaluate("v=0\r\n", as: .offer) == .refused(.noFingerprint))
    }

    @Test(arguments: [
        "", "\r\n", "   ", "hello", "v=1\r\no=- 1 2 IN IP4 127.0.0.1\r\n", "o=- 1 2 IN IP4 127.0.0.1\r\nv=0\r\n",
        " v=0\r\n", "V=0\r\n", "{\"type\":\"offer\"}",
    ])
    func textThatIsNotSdpIsRefused(text: String) {
        #expect(SDPKeyingCheck.evaluate(text, as: .offer) == .refused(.notSDP))
        #expect(SDPKeyingCheck.evaluate(text, as: .answer) == .refused(.notSDP))
    }

    @Test func notStartingWithVersionZeroIsNotSdp() throws {
        let sdp = try Fixture.sdp("chrome-offer-av")
        #expect(SDPKeyingCheck.evaluate("s=-\r\n" + sdp, as: .offer) == .refused(.notSDP))
        #expect(SDPKeyingCheck.evaluate(String(sdp.dropFirst(5)), as: .offer) == .refused(.notSDP))
    }

    @Test(arguments: ["/", "//", "/2", "x", "9/", "9/x", "-1", "+0", " 9", "0x9", "123456", "65536"])
    func oddMediaPortsAreRefused(port: String) {
        // A port that parsers read differently (or not at all) could hide a section in use: refused, never trusted.
        let number = 5
        for proto in ["RTP/AVP", "UDP/TLS/RTP/SAVPF"] {
            let sdp = InlineSDP.make(media: [InlineSDP.media(port: port, proto: proto)])
            #expect(SDPKeyingCheck.evaluate(sdp, as: .offer) == .refused(.malformedLine(number)), "\(port) \(proto)")
        }
    }

    @Test func anUnnamedSessionMayBeABlank() throws {
        // RFC 8866 §5.3 suggests "s= " for a session without a name; SIP gateways send it.
        let sdp = try Fixture.sdp("chrome-offer-av").replacingOccurrences(of: "\r\ns=-\r\n", with: "\r\ns= \r\n")
        #expect(sdp.contains("s= \r\n"))
        guard case .acceptable = SDPKeyingCheck.evaluate(sdp, as: .offer) else {
            Issue.record("refused s= ")
            return
        }
    }

    @Test(arguments: ["9", "9/2", "65535", "00009"])
    func decimalMediaPortsAreRead(port: String) {
        let plain = InlineSDP.make(media: [InlineSDP.media(port: port, proto: "RTP/AVP")])
        #expect(SDPKeyingCheck.evaluate(plain, as: .offer) == .refused(.unencryptedTransport("RTP/AVP")))
        #expect(throws: Never.self) {
            try SDPKeyingCheck.validate(InlineSDP.make(media: [InlineSDP.media(port: port)]), as: .offer)
        }
    }

    @Test func anInviteWithAnOddPortIsRefused() throws {
        // Any signed-in user can send this SDP; checking it must not bring the server down.
        var registry = CallRegistry()
        for proto in ["RTP/AVP", "UDP/TLS/RTP/SAVPF"] {
            let offer = SessionDescription(
                type: .offer, sdp: InlineSDP.make(media: [InlineSDP.media(port: "/", proto: proto)]))
            expectCallError(.insecureSDP) {
                _ = try registry.invite(id: "c1", from: "alice", device: "a1", to: "bob", offer: offer, now: t0)
            }
        }
    }

    @Test func validateThrowsInsecureSdpWithTheRefusalAsMessage() {
        let sdp = InlineSDP.make(media: [InlineSDP.media(setup: "holdconn")])
        let error = #expect(throws: CallError.self) { try SDPKeyingCheck.validate(sdp, as: .offer) }
        #expect(error?.code == .insecureSDP)
        #expect(error?.message == "a=setup:holdconn is not valid here")
        #expect(throws: Never.self) { try SDPKeyingCheck.validate(InlineSDP.make(), as: .offer) }
    }
}
