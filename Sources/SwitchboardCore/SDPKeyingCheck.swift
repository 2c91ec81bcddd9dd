public import CertificateFingerprint

/// Checks the DTLS-SRTP keying material an SDP offer or answer carries, before Switchboard forwards it.
///
/// Media is keyed by DTLS-SRTP (RFC 5763/5764), so every media section that is in use must be carried over a
/// DTLS transport (RFC 5764, 7850, 8841, 8842: `UDP/TLS/RTP/SAVPF`, `UDP/DTLS/SCTP`, ...) and be covered by an
/// `a=fingerprint` (RFC 8122 §5) with a hash of at least SHA-256 and an `a=setup` role (RFC 4145 §4, RFC 5763 §5).
/// Keys in the signaling itself are refused outright: SDES (`a=crypto`, RFC 4568), MIKEY (`a=key-mgmt`, RFC 4567)
/// and `k=` lines (RFC 4566 §5.12); so is any fingerprint with a weaker hash, even next to a strong one.
///
/// The text is read as strictly as the strictest of its consumers and refused where any two could disagree (see
/// docs/threat-model.md, "SDP smuggling"): browsers split lines on LF, sdp-transform also on a bare CR, aiortc
/// (Python's `splitlines`) also on VT, FF, U+001C–U+001E, U+0085, U+2028 and U+2029; Firefox's parser skips
/// blanks and colons after `a=` and compares names case-insensitively. So an SDP must be printable ASCII in lines
/// ended by LF or CRLF; every line `x=value` with a lower-case type letter (and no blank after `a=` or `m=`); every attribute
/// name an RFC 8866 token, compared in ASCII without case; every m= line single-spaced with a numeric port. What
/// passes has one reading for every consumer, and it is the text that is forwarded.
public enum SDPKeyingCheck {
    /// Why an SDP was refused. `description` is the sentence the API returns.
    public enum Refusal: Error, Sendable, Hashable, CustomStringConvertible {
        case notSDP
        case sdesCrypto
        case keyInSignaling(String)
        case noFingerprint
        case missingFingerprint(mid: String)
        case weakFingerprintHash(String)
        case malformedFingerprint(String)
        case missingSetup(mid: String)
        case invalidSetup(String)
        case unencryptedTransport(String)
        /// A byte outside printable ASCII, CR before LF, and LF (line number, the byte or scalar as U+XXXX).
        case forbiddenCharacter(line: Int, String)
        /// A line some consumer would read differently (line number).
        case malformedLine(Int)

        public var description: String {
            switch self {
            case .notSDP: "not an SDP session description (it must start with v=0)"
            case .sdesCrypto:
                "SDES keys (a=crypto) expose the media key to the signaling path; only DTLS-SRTP is accepted"
            case .keyInSignaling(let line):
                "\(line) puts keying material in the signaling path; only DTLS-SRTP is accepted"
            case .noFingerprint: "no a=fingerprint: DTLS-SRTP keying cannot be verified"
            case .missingFingerprint(let mid): "media section \(mid) has no a=fingerprint"
            case .weakFingerprintHash(let hash): "fingerprint hash \(hash) is weaker than sha-256"
            case .malformedFingerprint(let line): "malformed fingerprint: \(line)"
            case .missingSetup(let mid): "media section \(mid) has no a=setup"
            case .invalidSetup(let value): "a=setup:\(value) is not valid here"
            case .unencryptedTransport(let proto): "transport \(proto) is not DTLS-protected"
            case .forbiddenCharacter(let line, let character):
                "line \(line) holds \(character): SDP must be printable ASCII in lines ended by CRLF or LF"
            case .malformedLine(let line):
                "line \(line) is not read the same way by every SDP parser (want type=value, a lower-case type "
                    + "letter, no blank after '=', attribute names as tokens, single-spaced m= lines)"
            }
        }
    }

    /// A fingerprint as signalled in SDP: `a=fingerprint:sha-256 AB:CD:...`; the type the DTLS engines verify.
    public typealias Fingerprint = DTLSFingerprint

    /// The outcome of a check: a value, since refusing SDP is an expected result.
    public enum Verdict: Sendable, Hashable {
        case acceptable(fingerprints: [Fingerprint])
        case refused(Refusal)
    }

    /// The transport protocols that carry DTLS (m= proto, compared whole and without case): RTP over DTLS
    /// (RFC 5764 §8, RFC 7850 §3, and the TCP/TLS form of RFC 8842 that browsers emit for ICE-TCP), SCTP over DTLS
    /// (RFC 8841 §4, with the draft's bare `DTLS/SCTP` older browsers still send) and T.38 over DTLS (RFC 7345).
    public static let dtlsProtocols: Set<String> = [
        "UDP/TLS/RTP/SAVP", "UDP/TLS/RTP/SAVPF", "TCP/TLS/RTP/SAVP", "TCP/TLS/RTP/SAVPF", "TCP/DTLS/RTP/SAVP",
        "TCP/DTLS/RTP/SAVPF", "UDP/DTLS/SCTP", "TCP/DTLS/SCTP", "DTLS/SCTP", "UDP/TLS/UDPTL",
    ]

    /// Checks `sdp`, sent as an offer or an answer.
    public static func evaluate(_ sdp: String, as kind: SessionDescription.Kind) -> Verdict {
        guard sdp.utf8.starts(with: "v=0\r\n".utf8) || sdp.utf8.starts(with: "v=0\n".utf8) || sdp == "v=0" else {
            return .refused(.notSDP)
        }
        let lines: [Substring]
        switch readLines(sdp) {
        case .success(let read): lines = read
        case .failure(let refusal): return .refused(refusal)
        }

        var session = Section(mid: "session", proto: nil, port: 0)
        var media: [Section] = []
        for (index, line) in lines.enumerated() {
            let number = index + 1
            let type = line.utf8.first
            if type == UInt8(ascii: "k") { return .refused(.keyInSignaling("k=")) }
            if type == UInt8(ascii: "m") {
                guard let section = mediaSection(line, index: media.count) else {
                    return .refused(.malformedLine(number))
                }
                media.append(section)
                continue
            }
            guard type == UInt8(ascii: "a") else { continue }
            let (name, value) = split(line.dropFirst(2))
            guard !name.isEmpty, name.utf8.allSatisfy(isTokenCharacter) else { return .refused(.malformedLine(number)) }
            var section = media.isEmpty ? session : media[media.count - 1]
            switch asciiLowercased(name) {
            case "crypto":
                return .refused(.sdesCrypto)
            case "key-mgmt":
                return .refused(.keyInSignaling("a=key-mgmt"))
            case "fingerprint":
                do {
                    section.fingerprints.append(try DTLSFingerprint.parse(value))
                } catch {
                    if error.code == .weakHash { return .refused(.weakFingerprintHash(error.hash ?? "")) }
                    return .refused(.malformedFingerprint(String(line)))
                }
            case "setup":
                let role = asciiLowercased(value.trimmingSpaces())
                switch (role, kind) {
                case ("actpass", .offer), ("active", _), ("passive", _): section.setup = role
                default: return .refused(.invalidSetup(role))
                }
            case "mid":
                section.mid = value.trimmingSpaces()
            case "bundle-only":
                section.bundleOnly = true
            default:
                break
            }
            if media.isEmpty { session = section } else { media[media.count - 1] = section }
        }

        var all = session.fingerprints
        for section in media {
            all.append(contentsOf: section.fingerprints)
            // A section with port 0 is rejected or disabled (RFC 3264 §8.2) unless it is bundled (RFC 8843 §6).
            guard section.port != 0 || section.bundleOnly else { continue }
            let proto = section.proto ?? ""
            guard dtlsProtocols.contains(asciiUppercased(proto)) else {
                return .refused(.unencryptedTransport(proto))
            }
            if section.fingerprints.isEmpty && session.fingerprints.isEmpty {
                return .refused(.missingFingerprint(mid: section.mid))
            }
            if section.setup == nil && session.setup == nil { return .refused(.missingSetup(mid: section.mid)) }
        }
        guard !all.isEmpty else { return .refused(.noFingerprint) }
        return .acceptable(fingerprints: all)
    }

    /// The lines of `sdp`, or why it has no single reading: only printable ASCII, lines ended by LF or CRLF (the
    /// last may lack its end), no empty line before the last, and every line `x=` with `x` a lower-case letter (RFC
    /// 8866 §5) and, for `a=` and `m=`, no blank after `=`.
    static func readLines(_ sdp: String) -> Result<[Substring], Refusal> {
        var lines: [Substring] = []
        var lineStart = sdp.utf8.startIndex
        var number = 1
        var index = lineStart
        let utf8 = sdp.utf8
        func finish(_ end: String.UTF8View.Index) -> Refusal? {
            let line = Substring(utf8[lineStart..<end])
            let bytes = Array(line.utf8.prefix(3))
            guard bytes.count >= 2, (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(bytes[0]),
                bytes[1] == UInt8(ascii: "=")
            else { return .malformedLine(number) }
            // A blank after `a=` or `m=` is skipped by some parsers and not by others (`s= ` is RFC 8866's own
            // advice for a session without a name, and harmless).
            if bytes.count == 3 && bytes[2] == UInt8(ascii: " ")
                && (bytes[0] == UInt8(ascii: "a") || bytes[0] == UInt8(ascii: "m"))
            {
                return .malformedLine(number)
            }
            lines.append(line)
            return nil
        }
        while index != utf8.endIndex {
            let byte = utf8[index]
            switch byte {
            case UInt8(ascii: "\n"):
                if let refusal = finish(index) { return .failure(refusal) }
                number += 1
                lineStart = utf8.index(after: index)
            case UInt8(ascii: "\r"):
                let next = utf8.index(after: index)
                guard next != utf8.endIndex, utf8[next] == UInt8(ascii: "\n") else {
                    return .failure(.forbiddenCharacter(line: number, "a CR that does not end a line"))
                }
                if let refusal = finish(index) { return .failure(refusal) }
                number += 1
                index = next
                lineStart = utf8.index(after: next)
            case 0x20...0x7E:
                break
            default:
                return .failure(.forbiddenCharacter(line: number, describe(sdp, at: index)))
            }
            index = utf8.index(after: index)
        }
        if lineStart != utf8.endIndex, let refusal = finish(utf8.endIndex) { return .failure(refusal) }
        return .success(lines)
    }

    /// An `m=<media> <port>[/<count>] <proto> <fmt> ...` line (RFC 8866 §5.14), single-spaced, with a decimal port;
    /// nil when it is anything else.
    static func mediaSection(_ line: Substring, index: Int) -> Section? {
        let parts = line.dropFirst(2).split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count >= 4, !parts.contains(where: \.isEmpty) else { return nil }
        let portParts = parts[1].split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        func isNumber(_ text: Substring) -> Bool {
            (1...5).contains(text.utf8.count)
                && text.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
        }
        guard portParts.allSatisfy(isNumber), let port = Int(portParts[0]), port <= 65535 else { return nil }
        return Section(mid: "#\(index)", proto: String(parts[2]), port: port)
    }

    /// Checks `sdp` and throws a ``CallError`` with code `insecure_sdp` when it is refused.
    public static func validate(_ sdp: String, as kind: SessionDescription.Kind) throws(CallError) {
        if case .refused(let refusal) = evaluate(sdp, as: kind) {
            throw CallError(.insecureSDP, refusal.description)
        }
    }

    struct Section {
        var mid: String
        var proto: String?
        var port: Int
        var fingerprints: [Fingerprint] = []
        var setup: String?
        var bundleOnly = false
    }

    static func split(_ attribute: Substring) -> (Substring, Substring) {
        guard let colon = attribute.firstIndex(of: ":") else { return (attribute, "") }
        return (attribute[..<colon], attribute[attribute.index(after: colon)...])
    }

    /// RFC 8866 §9 `token-char`: printable ASCII but space and `"(),/:;<=>?@[\]`.
    static func isTokenCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "!"), 0x23...0x27, 0x2A, 0x2B, 0x2D, 0x2E, 0x30...0x39, 0x41...0x5A, 0x5E...0x7E: true
        default: false
        }
    }

    static func asciiLowercased(_ text: some StringProtocol) -> String {
        String(decoding: text.utf8.map { (0x41...0x5A).contains($0) ? $0 + 0x20 : $0 }, as: UTF8.self)
    }

    static func asciiUppercased(_ text: some StringProtocol) -> String {
        String(decoding: text.utf8.map { (0x61...0x7A).contains($0) ? $0 - 0x20 : $0 }, as: UTF8.self)
    }

    /// The character at `index` as `U+XXXX` (or the byte, when it starts no valid scalar).
    private static func describe(_ sdp: String, at index: String.UTF8View.Index) -> String {
        if let scalarIndex = index.samePosition(in: sdp.unicodeScalars) {
            let value = sdp.unicodeScalars[scalarIndex].value
            let hex = String(value, radix: 16, uppercase: true)
            return "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
        }
        return "byte 0x" + String(sdp.utf8[index], radix: 16, uppercase: true)
    }
}

extension Substring {
    fileprivate func trimmingSpaces() -> String {
        String(
            self.drop(while: { $0 == " " || $0 == "\t" }).reversed().drop(while: { $0 == " " || $0 == "\t" }).reversed()
        )
    }
}
