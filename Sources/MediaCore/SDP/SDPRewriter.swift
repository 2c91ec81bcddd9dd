public import STUN

/// What the secure relay puts in the SDP it gives a party in place of the other party's transport: its own ICE-lite
/// agent, its certificate and its host candidates.
public struct LocalTransport: Sendable, Hashable {
    public var credentials: ICECredentials
    /// `sha-256 AB:CD:...`, the value of `a=fingerprint` (RFC 8122 §5).
    public var fingerprint: String
    /// The media endpoint's advertised address(es): one host candidate each.
    public var candidates: [TransportAddress]

    public init(credentials: ICECredentials, fingerprint: String, candidates: [TransportAddress]) {
        self.credentials = credentials
        self.fingerprint = fingerprint
        self.candidates = candidates
    }
}

/// The transport a party signalled in its SDP: what Switchboard needs to be its ICE and DTLS peer.
public struct RemoteTransport: Sendable, Hashable {
    public var credentials: ICECredentials
    /// `sha-256 AB:CD:...` as signalled.
    public var fingerprint: String
    /// `actpass`, `active` or `passive` (RFC 4145 §4).
    public var setup: String
    /// The mids of the sections in use, in order.
    public var mids: [String]

    public init(credentials: ICECredentials, fingerprint: String, setup: String, mids: [String]) {
        self.credentials = credentials
        self.fingerprint = fingerprint
        self.setup = setup
        self.mids = mids
    }
}

/// Builds the SDP each party of a secure-relay call sees (the approach of rtpengine's `WebRTC` flag and of Janus):
/// the other party's media sections unchanged — m-lines, mids, codecs, payload types, extmaps, SSRCs, `a=sctp-port`
/// and `a=max-message-size` — with every line about the other party's transport replaced by Switchboard's own.
///
/// Removed: `a=candidate`, `a=end-of-candidates`, `a=ice-ufrag`, `a=ice-pwd`, `a=ice-options`, `a=ice-lite`,
/// `a=fingerprint`, `a=setup`, `a=tls-id` and `a=identity` (both about the other party's DTLS association),
/// `a=rtcp` (it carries an address), `a=remote-candidates` and the session-level `c=`
/// (Chrome dislikes it, as Janus notes); `o=` gets Switchboard's own origin, so neither party learns the other's
/// address. Added: session-level `a=ice-lite` (RFC 8445 §2.5), and in each section in use `c=` and the port of the
/// media endpoint, `a=ice-ufrag`/`a=ice-pwd`, `a=fingerprint` (SHA-256), `a=setup`, `a=rtcp-mux` for RTP, one host
/// candidate per advertised address and `a=end-of-candidates`.
public enum SDPRewriter {
    static let transportAttributes: Set<String> = [
        "candidate", "end-of-candidates", "ice-ufrag", "ice-pwd", "ice-options", "ice-lite", "fingerprint", "setup",
        "rtcp", "remote-candidates", "ice-pacing", "tls-id", "identity",
    ]

    /// Reads a party's transport from its offer or answer and checks that the secure relay can be its peer: ICE
    /// credentials, a fingerprint, UDP transports only, one BUNDLE group over every section in use (one 5-tuple per
    /// leg), and `a=rtcp-mux` on RTP sections. `setups` are the roles accepted from this party.
    public static func remoteTransport(of sdp: String, setups: Set<String>) throws(MediaError) -> RemoteTransport {
        let parsed = try SDPLines(parsing: sdp)
        let active = parsed.media.filter { section in
            guard let line = MediaLine(section[0]) else { return false }
            return !line.isRejected || SDPLines.attribute("bundle-only", in: section) != nil
        }
        guard !active.isEmpty else { throw MediaError(.unsupportedSDP, "no media section in use") }
        func first(_ name: String, _ section: [String]) -> String? {
            SDPLines.attribute(name, in: section) ?? SDPLines.attribute(name, in: parsed.session)
        }
        var mids: [String] = []
        for section in active {
            let line = MediaLine(section[0])!
            guard line.proto.uppercased().hasPrefix("UDP/") else {
                throw MediaError(.unsupportedSDP, "the secure relay carries media over UDP only, not \(line.proto)")
            }
            guard let mid = SDPLines.attribute("mid", in: section), !mid.isEmpty else {
                throw MediaError(.unsupportedSDP, "every media section needs an a=mid")
            }
            if line.proto.uppercased().contains("RTP"), SDPLines.attribute("rtcp-mux", in: section) == nil {
                throw MediaError(.unsupportedSDP, "media section \(mid) lacks a=rtcp-mux")
            }
            mids.append(mid)
        }
        if mids.count > 1 {
            let bundled = SDPLines.attributes("group", in: parsed.session).contains { group in
                let tokens = group.split(separator: " ").map(String.init)
                return tokens.first?.uppercased() == "BUNDLE" && Set(mids).isSubset(of: Set(tokens.dropFirst()))
            }
            guard bundled else {
                throw MediaError(.unsupportedSDP, "the secure relay needs one a=group:BUNDLE over every media section")
            }
        }
        let section = active[0]
        guard let ufrag = first("ice-ufrag", section), let password = first("ice-pwd", section), !ufrag.isEmpty,
            !password.isEmpty
        else { throw MediaError(.unsupportedSDP, "no a=ice-ufrag and a=ice-pwd") }
        guard let fingerprint = first("fingerprint", section) else {
            throw MediaError(.unsupportedSDP, "no a=fingerprint")
        }
        let setup = (first("setup", section) ?? "").trimmingCharacters(in: " \t").lowercased()
        guard setups.contains(setup) else {
            throw MediaError(
                .unsupportedSDP,
                "a=setup:\(setup) is not accepted here (Switchboard is the DTLS server of every leg)")
        }
        return RemoteTransport(
            credentials: ICECredentials(
                ufrag: ufrag.trimmingCharacters(in: " \t"), password: password.trimmingCharacters(in: " \t")),
            fingerprint: fingerprint.trimmingCharacters(in: " \t"), setup: setup, mids: mids)
    }

    /// `sdp` with its transport replaced by `local`, with `a=setup:setup`; `origin` is the session id and version
    /// of Switchboard's `o=` line.
    public static func rewrite(
        _ sdp: String, local: LocalTransport, setup: String, origin: (id: UInt64, version: UInt64)
    ) throws(MediaError) -> String {
        let parsed = try SDPLines(parsing: sdp)
        let family = local.candidates.first.map { $0.ip.isIPv4 ? "IP4" : "IP6" } ?? "IP4"
        let connectionAddress = local.candidates.first.map { "\($0.ip)" } ?? "0.0.0.0"
        let port = local.candidates.first.map { Int($0.port) } ?? 9

        var session: [String] = []
        for line in parsed.session {
            if line.hasPrefix("o=") {
                session.append("o=- \(origin.id) \(origin.version) IN IP4 0.0.0.0")
            } else if line.hasPrefix("c=") {
                continue
            } else if let name = SDPLines.attributeName(line), transportAttributes.contains(name) {
                continue
            } else {
                session.append(line)
            }
        }
        session.append("a=ice-lite")

        var media: [[String]] = []
        for section in parsed.media {
            guard var mediaLine = MediaLine(section[0]) else {
                throw MediaError(.unsupportedSDP, "malformed m-line: \(section[0])")
            }
            let inUse = !mediaLine.isRejected || SDPLines.attribute("bundle-only", in: section) != nil
            if !mediaLine.isRejected { mediaLine.port = port }
            var head = [mediaLine.line]
            var tail: [String] = []
            var hasConnection = false
            for line in section.dropFirst() {
                if line.hasPrefix("c=") {
                    if !hasConnection { head.append("c=IN \(family) \(connectionAddress)") }
                    hasConnection = true
                } else if line.hasPrefix("a=") {
                    if let name = SDPLines.attributeName(line), transportAttributes.contains(name) { continue }
                    tail.append(line)
                } else {
                    head.append(line)
                }
            }
            if !hasConnection {
                // c= goes after i= and before b= (RFC 8866 §5): right after the m-line and any title.
                let index = head.firstIndex { !$0.hasPrefix("m=") && !$0.hasPrefix("i=") } ?? head.count
                head.insert("c=IN \(family) \(connectionAddress)", at: index)
            }
            if inUse {
                head += [
                    "a=ice-ufrag:\(local.credentials.ufrag)", "a=ice-pwd:\(local.credentials.password)",
                    "a=fingerprint:\(local.fingerprint)", "a=setup:\(setup)",
                ]
                if mediaLine.proto.uppercased().contains("RTP"), SDPLines.attribute("rtcp-mux", in: tail) == nil {
                    tail.append("a=rtcp-mux")
                }
                for (index, candidate) in local.candidates.enumerated() {
                    // RFC 8839 §5.1; priority as RFC 8445 §5.1.2.1 gives a host candidate (type preference 126).
                    let priority = (126 << 24) | ((65_535 - index) << 8) | 255
                    tail.append("a=candidate:\(index + 1) 1 udp \(priority) \(candidate.ip) \(candidate.port) typ host")
                }
                tail.append("a=end-of-candidates")
            }
            media.append(head + tail)
        }
        return SDPLines(session: session, media: media).text
    }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        let characters = Set(set)
        var slice = Substring(self)
        while let first = slice.first, characters.contains(first) { slice = slice.dropFirst() }
        while let last = slice.last, characters.contains(last) { slice = slice.dropLast() }
        return String(slice)
    }
}
