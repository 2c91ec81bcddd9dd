import Foundation
import SwitchboardCore
import TestSupport
import Testing

/// SDP that hides keys, weak fingerprints or plain transports from a checker but not from some consumer, and a
/// differential test: thousands of generated variants of real browser SDP, each judged by the checker and by an
/// independent model of how its consumers (browsers, sdp-transform, aiortc, pion, Firefox's parser) read it.
@Suite struct SDPSmugglingTests {
    static let crypto = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"
    static let sha1 = "a=fingerprint:sha-1 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB"

    /// Every smuggling form found so far (see docs/threat-model.md): the text inserted after the offer's first
    /// media line, and who would read it as the checker must not let pass.
    static let forms: [(String, String)] = [
        ("bare CR (sdp-transform, aiortc)", "a=x-note:1\r" + crypto + "\r\n"),
        ("CR at a line start (pion, sdp-transform)", "\r" + crypto + "\r\n"),
        ("CR CR LF", crypto + "\r\r\n"),
        ("vertical tab (aiortc)", "a=x-note:1\u{0B}" + crypto + "\r\n"),
        ("form feed (aiortc)", "a=x-note:1\u{0C}" + crypto + "\r\n"),
        ("file separator (aiortc)", "a=x-note:1\u{1C}" + crypto + "\r\n"),
        ("group separator (aiortc)", "a=x-note:1\u{1D}" + crypto + "\r\n"),
        ("record separator (aiortc)", "a=x-note:1\u{1E}" + crypto + "\r\n"),
        ("next line U+0085 (aiortc)", "a=x-note:1\u{85}" + crypto + "\r\n"),
        ("line separator U+2028 (aiortc)", "a=x-note:1\u{2028}" + crypto + "\r\n"),
        ("paragraph separator U+2029 (aiortc)", "a=x-note:1\u{2029}" + crypto + "\r\n"),
        ("NUL (ends the SDP for sipcc and Janus)", "a=x-note:1\u{0}" + crypto + "\r\n"),
        ("tab in a value", "a=x-note:1\t2\r\n" + crypto + "\r\n"),
        ("blank after a= (sipcc)", "a= crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA\r\n"),
        ("tab after a= (sipcc)", "a=\tcrypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA\r\n"),
        ("colon after a= (sipcc)", "a=:crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA\r\n"),
        ("upper case (sipcc, Janus)", "a=CRYPTO:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA\r\n"),
        ("mixed case", "a=CrYpTo:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA\r\n"),
        ("blank for the colon (sipcc)", "a=crypto 1 AES_CM_128_HMAC_SHA1_80 inline:AAAA\r\n"),
        (
            "upper-case type (rsdparsa)",
            "A=fingerprint:sha-1 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB\r\n"
        ),
        ("blank before the line (rsdparsa)", " " + sha1 + "\r\n"),
        (
            "blank before = (rsdparsa)",
            "a =fingerprint:sha-1 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB\r\n"
        ),
        ("no-break space before the line (rsdparsa)", "\u{A0}" + sha1 + "\r\n"),
        ("ideographic space before the line (rsdparsa)", "\u{3000}" + sha1 + "\r\n"),
        ("upper-case hash", "a=fingerprint:SHA-1 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB\r\n"),
        ("upper-case attribute", "a=FINGERPRINT:sha-1 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB\r\n"),
        (
            "two blanks after the hash (sipcc)",
            "a=fingerprint:sha-1  4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB\r\n"
        ),
        ("k= line", "k=clear:c2VjcmV0\r\n"),
        ("MIKEY", "a=key-mgmt:mikey AQAFgM0XflABAAAAAAAAAAAAAAsAyO3tVLtcexoBAAAAAA\r\n"),
        ("UTF-8 in an attribute name", "a=crypto\u{301}:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA\r\n"),
        ("empty line (ends some parsers' reading)", "\r\na=x-note:1\r\n"),
        ("a byte-order mark", "\u{FEFF}" + crypto + "\r\n"),
        ("zero-width space", "a=x-note:1\u{200B}\r\n"),
        ("right-to-left override", "a=x-note:\u{202E}1\r\n"),
    ]

    /// Transports that contain a DTLS profile's letters but are not one (the old substring match took them).
    static let fakeTransports = [
        "RTP/AVP/DTLS", "UDP/TLS/RTP/AVP", "UDP/TLS/", "TCP/TLS/RTP/AVPF", "DTLS", "XDTLS/SCTP", "UDP/DTLS/SCTPX",
        "RTP/SAVPF", "RTP/AVP",
    ]

    static func offer() throws -> String { try Fixture.sdp("chrome-offer-av") }

    /// `sdp` with `text` inserted after the line starting with `prefix`.
    static func inserting(_ text: String, after prefix: String, in sdp: String) -> String {
        var lines = sdp.components(separatedBy: "\r\n")
        let index = lines.firstIndex { $0.hasPrefix(prefix) } ?? 0
        lines[index] += "\r\n" + (text.hasSuffix("\r\n") ? String(text.dropLast()) : text)
        return lines.joined(separator: "\r\n")
    }

    @Test(arguments: forms.map(\.0))
    func everySmugglingFormIsRefused(_ name: String) throws {
        let text = try #require(Self.forms.first { $0.0 == name }?.1)
        let sdp = Self.inserting(text, after: "m=audio", in: try Self.offer())
        guard case .refused = SDPKeyingCheck.evaluate(sdp, as: .offer) else {
            Issue.record("accepted: \(name)")
            return
        }
        #expect(throws: CallError.self) { try SDPKeyingCheck.validate(sdp, as: .offer) }
    }

    @Test(arguments: fakeTransports)
    func transportsAreComparedAsWholeTokens(_ proto: String) throws {
        let sdp = try Self.offer().replacingOccurrences(of: " UDP/TLS/RTP/SAVPF ", with: " \(proto) ")
        #expect(SDPKeyingCheck.evaluate(sdp, as: .offer) == .refused(.unencryptedTransport(proto)))
    }

    @Test(arguments: ["udp/tls/rtp/savpf", "UDP/TLS/RTP/SAVP", "TCP/DTLS/RTP/SAVPF", "TCP/TLS/RTP/SAVPF"])
    func dtlsTransportsAreAcceptedInAnyCase(_ proto: String) throws {
        let sdp = try Self.offer().replacingOccurrences(of: " UDP/TLS/RTP/SAVPF ", with: " \(proto) ")
        guard case .acceptable = SDPKeyingCheck.evaluate(sdp, as: .offer) else {
            Issue.record("refused \(proto)")
            return
        }
    }

    @Test(arguments: [
        "m=audio 9  UDP/TLS/RTP/SAVPF 111", "m=audio 9 UDP/TLS/RTP/SAVPF  111", "m=audio 9 UDP/TLS/RTP/SAVPF",
    ])
    func mediaLinesMustBeSingleSpaced(_ line: String) throws {
        let sdp = try Self.offer().replacing(#/m=audio [0-9]+ UDP\/TLS\/RTP\/SAVPF [0-9 ]+/#, with: line)
        guard case .refused(.malformedLine) = SDPKeyingCheck.evaluate(sdp, as: .offer) else {
            Issue.record("accepted \(line)")
            return
        }
    }

    // MARK: Differential

    @Test func generatedVariantsGetTheVerdictOfAnIndependentReading() throws {
        let bases = try ["chrome-offer-av", "firefox-offer-av", "chrome-offer-datachannel", "firefox-offer-audio"].map {
            try Fixture.sdp($0)
        }
        var random = SplitMix64(seed: 0x5EED_5D9)
        var refusedDangerous = 0
        var acceptedClean = 0
        for round in 0..<2500 {
            let sdp = Mutator.variant(of: bases[round % bases.count], random: &random)
            let reading = ConsumerModel.judge(sdp)
            let verdict = SDPKeyingCheck.evaluate(sdp, as: .offer)
            switch (reading, verdict) {
            case (.dangerous(let why), .acceptable):
                Issue.record("accepted what a consumer reads as \(why): \(sdp.debugDescription)")
            case (.clean, .refused(let refusal)):
                Issue.record("refused clean SDP (\(refusal)): \(sdp.debugDescription)")
            case (.dangerous, .refused):
                refusedDangerous += 1
            case (.clean, .acceptable):
                acceptedClean += 1
            case (.ambiguous(let why), .acceptable):
                Issue.record("accepted SDP its consumers read differently (\(why)): \(sdp.debugDescription)")
            case (.ambiguous, .refused):
                break
            }
        }
        // The generator must exercise both sides.
        #expect(refusedDangerous > 300)
        #expect(acceptedClean > 300)
    }
}

/// Mutations of honest SDP: harmless ones (line endings, harmless attributes, protocol case) and hostile ones
/// (keys, weak fingerprints and plain transports, spelled and separated the ways parsers differ on).
enum Mutator {
    static let separators = [
        "\r\n", "\r\n", "\r\n", "\n", "\r", "\u{0B}", "\u{0C}", "\u{1C}", "\u{1E}", "\u{85}", "\u{2028}",
        "\u{2029}", "\u{0}", "\r\r\n", "\n\r",
    ]
    static let payloads = [
        "crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA", "fingerprint:sha-1 " + hex(20), "fingerprint:md5 " + hex(16),
        "fingerprint:sha-256 " + hex(32), "key-mgmt:mikey AQE", "x-note:1", "rtcp-mux", "ice-options:trickle",
    ]
    static let namePrefixes = ["", "", "", "", " ", "\t", ":"]
    static let linePrefixes = ["", "", "", "", " ", "\u{A0}", "\t"]
    static let protos = [
        "UDP/TLS/RTP/SAVPF", "udp/tls/rtp/savpf", "UDP/TLS/RTP/SAVP", "RTP/AVP", "RTP/SAVPF", "RTP/AVP/DTLS",
        "UDP/TLS/RTP/AVP", "TCP/DTLS/RTP/SAVPF",
    ]

    static func hex(_ count: Int) -> String {
        (0..<count).map { String(format: "%02X", ($0 * 29 + 7) % 256) }.joined(separator: ":")
    }

    static func variant(of base: String, random: inout SplitMix64) -> String {
        var lines = base.components(separatedBy: "\r\n").filter { !$0.isEmpty }
        var endings = Array(repeating: "\r\n", count: lines.count)
        if Bool.random(using: &random) { endings = endings.map { _ in "\n" } }
        for _ in 0..<Int.random(in: 1...3, using: &random) {
            switch Int.random(in: 0..<4, using: &random) {
            case 0, 1:
                // An attribute, maybe spelled oddly, maybe on an odd line ending.
                var name = payloads.randomElement(using: &random)!
                if Int.random(in: 0..<4, using: &random) == 0 { name = name.uppercased() }
                let type = Int.random(in: 0..<8, using: &random) == 0 ? "A=" : "a="
                let line =
                    linePrefixes.randomElement(using: &random)! + type + namePrefixes.randomElement(using: &random)!
                    + name
                let at = Int.random(in: 1...lines.count, using: &random)
                lines.insert(line, at: at)
                endings.insert(separators.randomElement(using: &random)!, at: at)
            case 2:
                // Another transport on a media line, maybe double-spaced.
                let media = lines.indices.filter { lines[$0].hasPrefix("m=") }
                guard let index = media.randomElement(using: &random) else { continue }
                var parts = lines[index].split(separator: " ").map(String.init)
                parts[2] = protos.randomElement(using: &random)!
                let gap = Int.random(in: 0..<6, using: &random) == 0 ? "  " : " "
                lines[index] = parts.joined(separator: gap)
            default:
                // A k= line.
                if Int.random(in: 0..<3, using: &random) == 0 {
                    let at = Int.random(in: 1...lines.count, using: &random)
                    lines.insert("k=clear:c2VjcmV0", at: at)
                    endings.insert("\r\n", at: at)
                }
            }
        }
        return zip(lines, endings).map { $0 + $1 }.joined()
    }
}

/// How the SDP's consumers read it, modelled independently of the checker: each splits lines its own way and
/// reads attribute names its own way. Dangerous when any reading finds a key, a weak fingerprint or a plain
/// transport in use; clean when the text is plain ASCII in LF/CRLF lines that every reading splits and names alike.
enum ConsumerModel {
    enum Reading { case dangerous(String), clean, ambiguous(String) }

    static let dtls: Set<String> = [
        "UDP/TLS/RTP/SAVP", "UDP/TLS/RTP/SAVPF", "TCP/TLS/RTP/SAVP", "TCP/TLS/RTP/SAVPF", "TCP/DTLS/RTP/SAVP",
        "TCP/DTLS/RTP/SAVPF", "UDP/DTLS/SCTP", "TCP/DTLS/SCTP", "DTLS/SCTP", "UDP/TLS/UDPTL",
    ]

    /// Line splitters: libwebrtc/rtpengine (LF, one trailing CR dropped), sdp-transform (CRLF, CR or LF), Python's
    /// `str.splitlines` (aiortc), pion (LF, CR bytes dropped), sipcc/Janus (the text ends at NUL, lines at LF).
    static let splitters: [@Sendable (String) -> [String]] = [
        { text in lines(text, at: { $0 == "\n" }).map { $0.hasSuffix("\r") ? String($0.dropLast()) : $0 } },
        { text in lines(text, at: { $0 == "\n" || $0 == "\r" }, crlfIsOne: true) },
        { text in
            let breaks: Set<Unicode.Scalar> = [
                "\n", "\r", "\u{0B}", "\u{0C}", "\u{1C}", "\u{1D}", "\u{1E}", "\u{85}", "\u{2028}", "\u{2029}",
            ]
            return lines(text, at: { breaks.contains($0) }, crlfIsOne: true)
        },
        { text in lines(text, at: { $0 == "\n" }).map { String($0.unicodeScalars.filter { $0 != "\r" }) } },
        { text in
            let cut = String(text.unicodeScalars.prefix { $0 != "\u{0}" })
            return lines(cut, at: { $0 == "\n" }).map { String($0.unicodeScalars.prefix { $0 != "\r" }) }
        },
    ]

    /// `text` split at every scalar `isBreak` accepts (a CR LF pair as one break when `crlfIsOne`), by scalars:
    /// Swift's own String methods treat CR LF as one character and would not split it at LF.
    static func lines(_ text: String, at isBreak: (Unicode.Scalar) -> Bool, crlfIsOne: Bool = false) -> [String] {
        var lines: [String] = []
        var current = String.UnicodeScalarView()
        var previousCR = false
        for scalar in text.unicodeScalars {
            defer { previousCR = scalar == "\r" }
            if crlfIsOne && previousCR && scalar == "\n" { continue }
            if isBreak(scalar) {
                lines.append(String(current))
                current = String.UnicodeScalarView()
            } else {
                current.append(scalar)
            }
        }
        lines.append(String(current))
        return lines
    }

    /// Attribute readers: the name of an `a=` line, or nil. Exact (libwebrtc, aiortc, pion); sipcc (blanks and
    /// colons after `a=` skipped, any case, the name ends at a colon or blank); rsdparsa (Unicode blanks trimmed
    /// around the type, any case).
    static let namers: [@Sendable (String) -> String?] = [
        { line in
            guard line.hasPrefix("a=") else { return nil }
            return String(line.dropFirst(2).prefix { $0 != ":" })
        },
        { line in
            guard line.hasPrefix("a=") || line.hasPrefix("A=") else { return nil }
            let rest = line.dropFirst(2).drop { $0 == " " || $0 == "\t" || $0 == ":" }
            return String(rest.prefix { $0 != ":" && $0 != " " && $0 != "\t" }).lowercased()
        },
        { line in
            guard let equals = line.firstIndex(of: "=") else { return nil }
            let type = line[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
            guard type == "a" else { return nil }
            return String(line[line.index(after: equals)...].prefix { $0 != ":" }).lowercased()
        },
    ]

    static func judge(_ sdp: String) -> Reading {
        var readings: [[String]] = []
        for split in splitters {
            let lines = split(sdp).filter { !$0.isEmpty }
            readings.append(lines)
            if let danger = danger(in: lines) { return .dangerous(danger) }
        }
        let plain = sdp.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value < 0x7F || $0 == "\n" || $0 == "\r" }
        let bareCR = sdp.replacingOccurrences(of: "\r\n", with: "").contains("\r")
        let agree = readings.allSatisfy { $0 == readings[0] }
        let wellFormed = readings[0].allSatisfy { line in
            let scalars = Array(line.unicodeScalars)
            guard scalars.count >= 2, ("a"..."z").contains(scalars[0]), scalars[1] == "=" else { return false }
            if scalars.count > 2, scalars[0] == "a" || scalars[0] == "m", scalars[2] == " " || scalars[2] == ":" {
                return false
            }
            if line.hasPrefix("m=") && line.contains("  ") { return false }
            return true
        }
        let innerEmpty = sdp.contains("\n\n") || sdp.contains("\n\r\n")
        if !plain { return .ambiguous("not printable ASCII") }
        if bareCR { return .ambiguous("a bare CR") }
        if !agree { return .ambiguous("splitters disagree") }
        if !wellFormed { return .ambiguous("a malformed line") }
        if innerEmpty { return .ambiguous("an empty line") }
        return .clean
    }

    /// What any attribute reader finds wrong in `lines`.
    static func danger(in lines: [String]) -> String? {
        for namer in namers {
            var sectionInUse = false
            for line in lines {
                if line.hasPrefix("k=") { return "a k= key" }
                if line.hasPrefix("m=") {
                    let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
                    let port = fields.count > 1 ? fields[1].split(separator: "/").first.map(String.init) : nil
                    sectionInUse = port != "0"
                    if sectionInUse, fields.count > 2, !dtls.contains(fields[2].uppercased()) {
                        return "plain transport \(fields[2])"
                    }
                    continue
                }
                guard let name = namer(line)?.lowercased() else { continue }
                if name == "crypto" { return "SDES" }
                if name == "key-mgmt" { return "MIKEY" }
                if name == "fingerprint" {
                    let value = line.split(separator: ":", maxSplits: 1).last.map(String.init) ?? ""
                    let hash = value.split(whereSeparator: { $0 == " " || $0 == "\t" }).first?.lowercased() ?? ""
                    if !["sha-256", "sha-384", "sha-512"].contains(hash) { return "weak fingerprint \(hash)" }
                }
            }
        }
        return nil
    }
}
