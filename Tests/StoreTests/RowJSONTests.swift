import Foundation
import SwitchboardCore
import Testing

@testable import Store

/// The call row's two JSON columns, written and read without Foundation's coders: what they write is JSON that
/// JSONDecoder reads the same, and what JSONEncoder wrote before (rows already in a database) reads back the same.
@Suite struct RowJSONTests {
    static let awkward = [
        "", "plain", "quote \" and backslash \\ and slash /", "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\na=x\tz\r\n",
        "control \u{01}\u{08}\u{0C}\u{1F} end", "ünïcödé — 通話 📞", "\u{7F}\u{2028}\u{2029}",
    ]

    @Test(arguments: awkward)
    func anOfferRoundTripsAndIsJSON(sdp: String) throws {
        for kind in [SessionDescription.Kind.offer, .answer] {
            let offer = SessionDescription(type: kind, sdp: sdp)
            let text = RowJSON.encode(offer)
            #expect(try RowJSON.offer(text) == offer)
            #expect(try JSONDecoder().decode(SessionDescription.self, from: Data(text.utf8)) == offer)
            // A row JSONEncoder wrote (slashes escaped, keys sorted or not) reads back the same.
            for formatting in [JSONEncoder.OutputFormatting.sortedKeys, []] {
                let encoder = JSONEncoder()
                encoder.outputFormatting = formatting
                let old = String(decoding: try encoder.encode(offer), as: UTF8.self)
                #expect(try RowJSON.offer(old) == offer)
            }
        }
    }

    @Test func deviceListsRoundTripAndReadWhatJSONEncoderWrote() throws {
        for list in [[], ["d1"], ["web-abc", "d/2", "quote\"d"], Self.awkward] {
            let text = RowJSON.encode(list)
            #expect(try RowJSON.strings(text) == list)
            #expect(try JSONDecoder().decode([String].self, from: Data(text.utf8)) == list)
            let old = String(decoding: try JSONEncoder().encode(list), as: UTF8.self)
            #expect(try RowJSON.strings(old) == list)
        }
    }

    @Test func otherJSONGoesToJSONDecoderAndBrokenTextIsAnError() throws {
        // Whitespace, \u escapes with surrogate pairs: not the fast path's shape, still read.
        #expect(try RowJSON.strings(#" [ "a" , "\ud83d\udcde" ] "#) == ["a", "📞"])
        #expect(try RowJSON.strings(#"["\u00e9\ud83d\udcde"]"#) == ["é📞"])
        #expect(
            try RowJSON.offer(#"{ "type": "answer", "sdp": "x" }"#) == SessionDescription(type: .answer, sdp: "x"))
        for broken in [#"["a""#, "", #"["\ud83d"]"#, "[\"a\u{01}\"]"] {
            #expect(throws: (any Error).self) { try RowJSON.strings(broken) }
        }
        for broken in [#"{"sdp":"x"}"#, #"{"sdp":"x","type":"pranswer"}"#, #"{"sdp":1,"type":"offer"}"#] {
            #expect(throws: (any Error).self) { try RowJSON.offer(broken) }
        }
    }
}

/// The rows handed to PostgreSQL's functions and read from `to_jsonb`, written and read without Foundation's coders.
@Suite struct JSONRowsTests {
    @Test func writtenRowsAreJSONThatReadsBackTheSame() throws {
        let values: [Double?] = [0, -1.5, 812_345_678.123_456_7, 1e-7, 1e21, nil]
        let rows = RowJSONTests.awkward.enumerated().map { index, text in
            (text: text, number: values[index % values.count], count: index - 3)
        }
        let text = JSONRowWriter.array(rows) { row, object in
            object.field("text", row.text)
            object.field("number", row.number)
            object.field("count", row.count)
            object.field("none", nil as String?)
        }
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]])
        #expect(parsed.count == rows.count)
        for (object, row) in zip(parsed, rows) {
            #expect(object["text"] as? String == row.text)
            #expect((object["number"] as? NSNumber)?.doubleValue == row.number)
            #expect(object["count"] as? Int == row.count)
            #expect(object["none"] is NSNull)
        }
        // What the writer wrote, one object at a time, reads back exactly (numbers included).
        for row in rows {
            let one = JSONRowWriter.array([row]) { row, object in
                object.field("text", row.text)
                object.field("number", row.number)
            }
            let reader = try #require(JSONRowReader(String(one.dropFirst().dropLast())))
            #expect(reader.string("text") == row.text)
            #expect(reader.double("number") == row.number)
        }
    }

    @Test func readsWhatToJSONBWritesAndNothingElse() throws {
        let reader = try #require(
            JSONRowReader(#"{"id": "c\"1\u00e9", "offer": null, "created_at": 8.1234E+8, "timeline_length": 3}"#))
        #expect(reader.string("id") == "c\"1é")
        #expect(reader.string("offer") == nil)
        #expect(reader.string("missing") == nil)
        #expect(reader.double("created_at") == 812_340_000)
        #expect(reader.string("timeline_length") == "3")
        #expect(JSONRowReader("{}") != nil)
        for other in [#"{"a": [1]}"#, #"{"a": {"b": 1}}"#, #"{"a": true}"#, #"{"a": 1} x"#, #"{"a" 1}"#, "", "[]"] {
            #expect(JSONRowReader(other) == nil, "\(other)")
        }
    }
}
