/// An incremental parser of `text/event-stream` (HTML Living Standard §9.2.6), for Switchboard's clients: the CLI's
/// `calls watch` and the tests. Feed it bytes as they arrive, in chunks split anywhere; it returns whole events.
public struct SSEParser: Sendable {
    /// One dispatched event.
    public struct Event: Sendable, Equatable {
        public var id: String?
        public var name: String
        public var data: String
    }

    private var pending: [UInt8] = []
    private var id: String?
    private var name = ""
    private var data: [String] = []
    private var hasData = false
    /// The last `id:` seen, as `EventSource` keeps it for `Last-Event-ID`.
    public private(set) var lastEventID: String?
    /// The last `retry:` value, in milliseconds.
    public private(set) var retry: Int?
    /// Comment lines seen so far (heartbeats).
    public private(set) var comments = 0

    public init() {}

    /// Parses `bytes` and returns the events they complete.
    public mutating func feed(_ bytes: some Sequence<UInt8>) -> [Event] {
        pending.append(contentsOf: bytes)
        var events: [Event] = []
        var start = 0
        var index = 0
        while index < pending.count {
            let byte = pending[index]
            guard byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") else {
                index += 1
                continue
            }
            // A CR at the very end may be the first half of CRLF: wait for more.
            if byte == UInt8(ascii: "\r") && index + 1 == pending.count { break }
            let line = String(decoding: pending[start..<index], as: UTF8.self)
            index += (byte == UInt8(ascii: "\r") && pending[index + 1] == UInt8(ascii: "\n")) ? 2 : 1
            start = index
            if let event = process(line) { events.append(event) }
        }
        pending.removeFirst(start)
        return events
    }

    private mutating func process(_ line: String) -> Event? {
        if line.isEmpty {
            defer {
                name = ""
                data = []
                hasData = false
            }
            guard hasData else { return nil }
            return Event(id: lastEventID, name: name.isEmpty ? "message" : name, data: data.joined(separator: "\n"))
        }
        if line.hasPrefix(":") {
            comments += 1
            return nil
        }
        var field = Substring(line)
        var value: Substring = ""
        if let colon = line.firstIndex(of: ":") {
            field = line[..<colon]
            value = line[line.index(after: colon)...]
            if value.hasPrefix(" ") { value = value.dropFirst() }
        }
        switch field {
        case "event": name = String(value)
        case "data":
            data.append(String(value))
            hasData = true
        case "id" where !value.contains("\0"): lastEventID = String(value)
        case "retry": retry = Int(value) ?? retry
        default: break
        }
        return nil
    }
}
