import Foundation
import SwitchboardCore

/// A call as both databases keep it, one column per field: dates as seconds since the reference date (exact both
/// ways), the device list and the offer as JSON text. PostgreSQL reads and writes it as jsonb, SQLite column by
/// column.
struct CallRow: Codable {
    var id, caller, callerDevice, callee, state: String
    var endReason: String?
    var createdAt: Double
    var answeredAt, endedAt: Double?
    var answeredBy: String?
    var ringingDevices: String
    var ringDeadline: Double?
    var offer: String?
    var timelineLength: Int
    var media: String
    var failure: String?
    var mediaNode: String?
}

extension CallRow {
    init(_ call: Call) {
        id = call.id
        caller = call.caller
        callerDevice = call.callerDevice
        callee = call.callee
        state = call.state.rawValue
        endReason = call.endReason?.rawValue
        createdAt = call.createdAt.timeIntervalSinceReferenceDate
        answeredAt = call.answeredAt?.timeIntervalSinceReferenceDate
        endedAt = call.endedAt?.timeIntervalSinceReferenceDate
        answeredBy = call.answeredBy
        ringingDevices = RowJSON.encode(call.ringingDevices)
        ringDeadline = call.ringDeadline?.timeIntervalSinceReferenceDate
        offer = call.offer.map(RowJSON.encode)
        timelineLength = call.timelineLength
        media = call.media.rawValue
        failure = call.failure
        mediaNode = call.mediaNode
    }

    func call() throws -> Call {
        guard let state = CallState(rawValue: state), let media = MediaPath(rawValue: media) else {
            throw StoreCorruption("call \(id) has an unknown state or media path")
        }
        let endReason = try endReason.map { raw in
            guard let reason = EndReason(rawValue: raw) else { throw StoreCorruption("unknown end reason \(raw)") }
            return reason
        }
        return Call(
            id: id, caller: caller, callerDevice: callerDevice, callee: callee, state: state, endReason: endReason,
            createdAt: Date(timeIntervalSinceReferenceDate: createdAt),
            answeredAt: answeredAt.map(Date.init(timeIntervalSinceReferenceDate:)),
            endedAt: endedAt.map(Date.init(timeIntervalSinceReferenceDate:)), answeredBy: answeredBy,
            ringingDevices: try RowJSON.strings(ringingDevices),
            ringDeadline: ringDeadline.map(Date.init(timeIntervalSinceReferenceDate:)),
            offer: try offer.map(RowJSON.offer),
            timelineLength: timelineLength, media: media, failure: failure, mediaNode: mediaNode)
    }
}

/// The two JSON columns of a call row, the device list (`["d1","d2"]`) and the offer (`{"sdp":"…","type":"offer"}`),
/// written and read without Foundation's JSONEncoder/JSONDecoder: every transition writes its call and loads the
/// calls it needs, and a browser's offer is several KiB, so the generic coders were a tenth of a SQLite server's CPU
/// under load. The text is plain JSON (what JSONEncoder wrote before reads back the same, `\/` included), and
/// anything but these two shapes is handed to JSONDecoder.
enum RowJSON {
    static func encode(_ strings: [String]) -> String {
        var out: [UInt8] = [UInt8(ascii: "[")]
        for (index, string) in strings.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            quote(string, into: &out)
        }
        out.append(UInt8(ascii: "]"))
        return String(decoding: out, as: UTF8.self)
    }

    static func encode(_ offer: SessionDescription) -> String {
        var out = Array(#"{"sdp":"#.utf8)
        out.reserveCapacity(offer.sdp.utf8.count + 40)
        quote(offer.sdp, into: &out)
        out += Array(#","type":"#.utf8)
        quote(offer.type.rawValue, into: &out)
        out.append(UInt8(ascii: "}"))
        return String(decoding: out, as: UTF8.self)
    }

    static func strings(_ text: String) throws -> [String] {
        var bytes = Array(text.utf8)[...]
        if let strings = parseStrings(&bytes), bytes.isEmpty { return strings }
        return try JSONDecoder().decode([String].self, from: Data(text.utf8))
    }

    static func offer(_ text: String) throws -> SessionDescription {
        var bytes = Array(text.utf8)[...]
        if let offer = parseOffer(&bytes), bytes.isEmpty { return offer }
        return try JSONDecoder().decode(SessionDescription.self, from: Data(text.utf8))
    }

    /// A JSON string: quotes, backslashes and control characters escaped (RFC 8259 §7), the rest as UTF-8.
    static func quote(_ string: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case UInt8(ascii: "\n"): out += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case UInt8(ascii: "\r"): out += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            case UInt8(ascii: "\t"): out += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out += Array("\\u00".utf8) + [hex[Int(byte >> 4)], hex[Int(byte & 0xF)]]
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// `["a","b"]`, nothing else (no whitespace: what ``encode(_:)-([String])`` and JSONEncoder write).
    private static func parseStrings(_ bytes: inout ArraySlice<UInt8>) -> [String]? {
        guard bytes.popFirst() == UInt8(ascii: "[") else { return nil }
        var strings: [String] = []
        if bytes.first == UInt8(ascii: "]") {
            bytes.removeFirst()
            return strings
        }
        while true {
            guard let string = parseString(&bytes) else { return nil }
            strings.append(string)
            switch bytes.popFirst() {
            case UInt8(ascii: ","): continue
            case UInt8(ascii: "]"): return strings
            default: return nil
            }
        }
    }

    /// `{"sdp":"…","type":"offer"|"answer"}` with its two keys in either order.
    private static func parseOffer(_ bytes: inout ArraySlice<UInt8>) -> SessionDescription? {
        guard bytes.popFirst() == UInt8(ascii: "{") else { return nil }
        var sdp: String?
        var kind: SessionDescription.Kind?
        while true {
            guard let key = parseString(&bytes), bytes.popFirst() == UInt8(ascii: ":"),
                let value = parseString(&bytes)
            else { return nil }
            switch key {
            case "sdp" where sdp == nil: sdp = value
            case "type" where kind == nil:
                guard let parsed = SessionDescription.Kind(rawValue: value) else { return nil }
                kind = parsed
            default: return nil
            }
            switch bytes.popFirst() {
            case UInt8(ascii: ","): continue
            case UInt8(ascii: "}"):
                guard let sdp, let kind else { return nil }
                return SessionDescription(type: kind, sdp: sdp)
            default: return nil
            }
        }
    }

    /// A JSON string with its escapes (`\uXXXX` and surrogate pairs included); nil when it is not one.
    static func parseString(_ bytes: inout ArraySlice<UInt8>) -> String? {
        guard bytes.popFirst() == UInt8(ascii: "\"") else { return nil }
        var out: [UInt8] = []
        while let byte = bytes.popFirst() {
            switch byte {
            case UInt8(ascii: "\""):
                return String(validating: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard let escaped = bytes.popFirst() else { return nil }
                switch escaped {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(escaped)
                case UInt8(ascii: "n"): out.append(UInt8(ascii: "\n"))
                case UInt8(ascii: "r"): out.append(UInt8(ascii: "\r"))
                case UInt8(ascii: "t"): out.append(UInt8(ascii: "\t"))
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "u"):
                    guard var scalar = hex4(&bytes) else { return nil }
                    if (0xD800..<0xDC00).contains(scalar) {
                        guard bytes.popFirst() == UInt8(ascii: "\\"), bytes.popFirst() == UInt8(ascii: "u"),
                            let low = hex4(&bytes), (0xDC00..<0xE000).contains(low)
                        else { return nil }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let unicode = Unicode.Scalar(scalar) else { return nil }
                    out += Array(String(Character(unicode)).utf8)
                default: return nil
                }
            case 0..<0x20: return nil
            default: out.append(byte)
            }
        }
        return nil
    }

    private static func hex4(_ bytes: inout ArraySlice<UInt8>) -> UInt32? {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let byte = bytes.popFirst() else { return nil }
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: return nil
            }
            value = value << 4 | UInt32(digit)
        }
        return value
    }
}
