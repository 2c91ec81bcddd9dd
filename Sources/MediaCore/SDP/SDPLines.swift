/// An SDP session description (RFC 8866) as lines: the session part, then one list of lines per media section,
/// each starting with its `m=` line. Only what the secure relay rewrites is interpreted; every other line is kept
/// byte for byte.
public struct SDPLines: Sendable, Hashable {
    public var session: [String]
    public var media: [[String]]

    /// Splits `text` on CRLF or LF (RFC 8866 §5 allows a bare LF on input); empty lines are dropped.
    public init(parsing text: String) throws(MediaError) {
        var session: [String] = []
        var media: [[String]] = []
        // "\r\n" is one Character in Swift: split on both it and a bare "\n", as SDPKeyingCheck does.
        for raw in text.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            let line = raw.hasSuffix("\r") ? String(raw.dropLast()) : String(raw)
            if line.isEmpty { continue }
            if line.hasPrefix("m=") {
                media.append([line])
            } else if media.isEmpty {
                session.append(line)
            } else {
                media[media.count - 1].append(line)
            }
        }
        guard session.first == "v=0" else { throw MediaError(.unsupportedSDP, "not an SDP session description") }
        self.session = session
        self.media = media
    }

    public init(session: [String], media: [[String]]) {
        self.session = session
        self.media = media
    }

    /// The description as text, CRLF after every line (RFC 8866 §5).
    public var text: String {
        (session + media.flatMap { $0 }).map { $0 + "\r\n" }.joined()
    }

    /// The value of the first `a=name:value` (or `a=name`) among `lines`, nil when absent.
    public static func attribute(_ name: String, in lines: [String]) -> String? {
        attributes(name, in: lines).first
    }

    /// Every value of `a=name:value` (or `a=name`, as "") among `lines`, in order. Names compare case-insensitively.
    public static func attributes(_ name: String, in lines: [String]) -> [String] {
        lines.compactMap { line in
            guard line.hasPrefix("a=") else { return nil }
            let body = line.dropFirst(2)
            let colon = body.firstIndex(of: ":")
            let key = colon.map { body[..<$0] } ?? body
            guard key.lowercased() == name.lowercased() else { return nil }
            return colon.map { String(body[body.index(after: $0)...]) } ?? ""
        }
    }

    /// The name of an `a=` line (`a=ice-ufrag:xyz` → `ice-ufrag`), lower-cased; nil for other lines.
    public static func attributeName(_ line: String) -> String? {
        guard line.hasPrefix("a=") else { return nil }
        let body = line.dropFirst(2)
        return String(body.prefix { $0 != ":" }).lowercased()
    }
}

/// One `m=` line's fields: `m=<media> <port> <proto> <fmt> ...` (RFC 8866 §5.14).
public struct MediaLine: Sendable, Hashable {
    public var kind: String
    public var port: Int
    public var proto: String
    public var formats: [String]

    public init?(_ line: String) {
        guard line.hasPrefix("m=") else { return nil }
        let parts = line.dropFirst(2).split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        guard parts.count >= 3, let port = Int(parts[1].split(separator: "/").first ?? "") else { return nil }
        kind = parts[0]
        self.port = port
        proto = parts[2]
        formats = Array(parts.dropFirst(3))
    }

    public var line: String { (["m=\(kind)", String(port), proto] + formats).joined(separator: " ") }

    /// A section with port 0 is rejected (RFC 3264 §6), unless `a=bundle-only` keeps it in a BUNDLE group.
    public var isRejected: Bool { port == 0 }
}
