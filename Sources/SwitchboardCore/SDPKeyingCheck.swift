public import CertificateFingerprint

/// Checks the DTLS-SRTP keying material an SDP offer or answer carries, before Switchboard forwards it.
///
/// Media is keyed by DTLS-SRTP (RFC 5763/5764), so every media section that is in use must be carried over a
/// DTLS transport (`UDP/TLS/RTP/SAVPF`, `UDP/DTLS/SCTP`, ...) and be covered by an `a=fingerprint` (RFC 8122 §5)
/// with a hash of at least SHA-256 and an `a=setup` role (RFC 4145 §4, RFC 5763 §5). SDES keys (`a=crypto`,
/// RFC 4568) put the SRTP master key in the signaling itself and are refused outright, as is any fingerprint
/// with a weaker hash, even next to a strong one.
public enum SDPKeyingCheck {
    /// Why an SDP was refused. `description` is the sentence the API returns.
    public enum Refusal: Sendable, Hashable, CustomStringConvertible {
        case notSDP
        case sdesCrypto
        case noFingerprint
        case missingFingerprint(mid: String)
        case weakFingerprintHash(String)
        case malformedFingerprint(String)
        case missingSetup(mid: String)
        case invalidSetup(String)
        case unencryptedTransport(String)

        public var description: String {
            switch self {
            case .notSDP: "not an SDP session description (it must start with v=0)"
            case .sdesCrypto:
                "SDES keys (a=crypto) expose the media key to the signaling path; only DTLS-SRTP is accepted"
            case .noFingerprint: "no a=fingerprint: DTLS-SRTP keying cannot be verified"
            case .missingFingerprint(let mid): "media section \(mid) has no a=fingerprint"
            case .weakFingerprintHash(let hash): "fingerprint hash \(hash) is weaker than sha-256"
            case .malformedFingerprint(let line): "malformed fingerprint: \(line)"
            case .missingSetup(let mid): "media section \(mid) has no a=setup"
            case .invalidSetup(let value): "a=setup:\(value) is not valid here"
            case .unencryptedTransport(let proto): "transport \(proto) is not DTLS-protected"
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

    /// Checks `sdp`, sent as an offer or an answer.
    public static func evaluate(_ sdp: String, as kind: SessionDescription.Kind) -> Verdict {
        var lines = sdp.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
            .map { $0.hasSuffix("\r") ? $0.dropLast() : $0 }
        lines.removeAll { $0.isEmpty }
        guard lines.first == "v=0" else { return .refused(.notSDP) }

        var session = Section(mid: "session", proto: nil, port: 0)
        var media: [Section] = []
        for line in lines {
            if line.hasPrefix("m=") {
                let parts = line.dropFirst(2).split(separator: " ")
                let port = parts.count > 1 ? Int(parts[1].split(separator: "/").first ?? "") ?? -1 : -1
                let proto = parts.count > 2 ? String(parts[2]) : ""
                media.append(Section(mid: "#\(media.count)", proto: proto, port: port))
                continue
            }
            guard line.hasPrefix("a=") else { continue }
            let attribute = line.dropFirst(2)
            let (name, value) = split(attribute)
            var section = media.isEmpty ? session : media[media.count - 1]
            switch name.lowercased() {
            case "crypto":
                return .refused(.sdesCrypto)
            case "fingerprint":
                do {
                    section.fingerprints.append(try DTLSFingerprint.parse(value))
                } catch {
                    if error.code == .weakHash { return .refused(.weakFingerprintHash(error.hash ?? "")) }
                    return .refused(.malformedFingerprint(String(line)))
                }
            case "setup":
                let role = value.trimmingSpaces().lowercased()
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
            let proto = (section.proto ?? "").uppercased()
            guard proto.contains("DTLS") || proto.hasPrefix("UDP/TLS/") || proto.hasPrefix("TCP/TLS/") else {
                return .refused(.unencryptedTransport(section.proto ?? ""))
            }
            if section.fingerprints.isEmpty && session.fingerprints.isEmpty {
                return .refused(.missingFingerprint(mid: section.mid))
            }
            if section.setup == nil && session.setup == nil { return .refused(.missingSetup(mid: section.mid)) }
        }
        guard !all.isEmpty else { return .refused(.noFingerprint) }
        return .acceptable(fingerprints: all)
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
}

extension Substring {
    fileprivate func trimmingSpaces() -> String {
        String(
            self.drop(while: { $0 == " " || $0 == "\t" }).reversed().drop(while: { $0 == " " || $0 == "\t" }).reversed()
        )
    }
}
