import Foundation

/// Rows as the flat JSON objects PostgreSQL's functions take (`jsonb_populate_recordset`) and give (`to_jsonb`),
/// written and read by hand: with JSONEncoder's and JSONDecoder's snake_case key conversions they were a sixth of
/// a PostgreSQL node's CPU under load (perf, Benchmarks/run-store.sh). Values are strings, numbers and nulls;
/// anything else read is left to JSONDecoder.
struct JSONRowWriter {
    private var bytes: [UInt8] = []
    private var fields = 0

    /// `[{…},{…}]`, each object written by `write`.
    static func array<Row>(_ rows: [Row], _ write: (Row, inout JSONRowWriter) -> Void) -> String {
        var writer = JSONRowWriter()
        writer.bytes.append(UInt8(ascii: "["))
        for (index, row) in rows.enumerated() {
            if index > 0 { writer.bytes.append(UInt8(ascii: ",")) }
            writer.bytes.append(UInt8(ascii: "{"))
            writer.fields = 0
            write(row, &writer)
            writer.bytes.append(UInt8(ascii: "}"))
        }
        writer.bytes.append(UInt8(ascii: "]"))
        return String(decoding: writer.bytes, as: UTF8.self)
    }

    mutating func field(_ key: StaticString, _ value: String?) {
        name(key)
        if let value { RowJSON.quote(value, into: &bytes) } else { null() }
    }

    /// A number as Swift writes it, the shortest text that reads back the same value.
    mutating func field(_ key: StaticString, _ value: Double?) {
        name(key)
        if let value, value.isFinite { bytes += Array(value.description.utf8) } else { null() }
    }

    mutating func field(_ key: StaticString, _ value: Int) {
        name(key)
        bytes += Array(String(value).utf8)
    }

    private mutating func name(_ key: StaticString) {
        if fields > 0 { bytes.append(UInt8(ascii: ",")) }
        fields += 1
        bytes.append(UInt8(ascii: "\""))
        key.withUTF8Buffer { bytes += $0 }
        bytes += [UInt8(ascii: "\""), UInt8(ascii: ":")]
    }

    private mutating func null() { bytes += Array("null".utf8) }
}

/// A flat JSON object as `to_jsonb` writes it (`{"id": "c1", "answered_at": null, "created_at": 8.1E8, …}`):
/// strings unescaped, numbers as their text, nulls as nil. Nil for anything else (a nested value, a malformed
/// text), which the caller hands to JSONDecoder.
struct JSONRowReader {
    private var values: [String: String?] = [:]

    init?(_ text: String) {
        var bytes = Array(text.utf8)[...]
        guard Self.next(&bytes) == UInt8(ascii: "{") else { return nil }
        bytes.removeFirst()
        if Self.next(&bytes) == UInt8(ascii: "}") {
            bytes.removeFirst()
            guard Self.next(&bytes) == nil else { return nil }
            return
        }
        while true {
            guard Self.next(&bytes) == UInt8(ascii: "\""), let key = RowJSON.parseString(&bytes),
                Self.next(&bytes) == UInt8(ascii: ":")
            else { return nil }
            bytes.removeFirst()
            switch Self.next(&bytes) {
            case UInt8(ascii: "\""):
                guard let string = RowJSON.parseString(&bytes) else { return nil }
                values[key] = .some(string)
            case UInt8(ascii: "n"):
                guard bytes.starts(with: "null".utf8) else { return nil }
                bytes.removeFirst(4)
                values[key] = .some(nil)
            case let first? where first == UInt8(ascii: "-") || Self.digits.contains(first):
                let number = bytes.prefix { Self.digits.contains($0) || Self.numberMarks.contains($0) }
                bytes.removeFirst(number.count)
                values[key] = .some(String(decoding: number, as: UTF8.self))
            default:
                return nil
            }
            switch Self.next(&bytes) {
            case UInt8(ascii: ","): bytes.removeFirst()
            case UInt8(ascii: "}"):
                bytes.removeFirst()
                guard Self.next(&bytes) == nil else { return nil }
                return
            default: return nil
            }
        }
    }

    /// The string at `key`; nil when it is null or absent.
    func string(_ key: String) -> String? { values[key] ?? nil }

    /// The number at `key`; nil when it is null or absent, or is not a number.
    func double(_ key: String) -> Double? { string(key).flatMap { Double($0) } }

    private static let digits = UInt8(ascii: "0")...UInt8(ascii: "9")
    private static let numberMarks: Set<UInt8> = Set("-+.eE".utf8)

    /// The first byte that is not whitespace, left in `bytes`; nil at the end.
    private static func next(_ bytes: inout ArraySlice<UInt8>) -> UInt8? {
        while let byte = bytes.first, [0x20, 0x09, 0x0A, 0x0D].contains(byte) { bytes.removeFirst() }
        return bytes.first
    }
}
