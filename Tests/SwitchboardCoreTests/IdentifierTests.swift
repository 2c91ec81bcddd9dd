import SwitchboardCore
import Testing

/// User, device and call ids: 1–64 characters of `[A-Za-z0-9._~-]`.
@Suite struct IdentifierTests {
    @Test(arguments: [
        "a", "Z", "0", "alice", "Alice.Smith", "a-b_c.d~e", "~", ".", "-", "_", "..", "0123456789",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._",
        String(repeating: "a", count: 64), String(repeating: "9", count: 63),
        "550e8400-e29b-41d4-a716-446655440000",
    ])
    func valid(_ value: String) {
        #expect(Identifier.isValid(value))
    }

    @Test(arguments: [
        "", String(repeating: "a", count: 65), String(repeating: "a", count: 1000), "a b", " a", "a ", "a/b", "/",
        "a\\b", "a:b", "a@b", "a+b", "a%2F", "a?b", "a#b", "a&b", "a=b", "a,b", "a;b", "a\"b", "a'b", "a*b",
        "a\nb", "a\r", "a\tb", "a\0b", "é", "e\u{301}", "alicé", "日本", "🙂", "ａ", "a\u{200B}b",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~",
    ])
    func invalid(_ value: String) {
        #expect(!Identifier.isValid(value))
    }

    @Test func theLimitIsCountedInBytesNotCharacters() {
        #expect(Identifier.maxLength == 64)
        // 64 characters, but the last one is two bytes, and not allowed anyway.
        let almost = String(repeating: "a", count: 63) + "é"
        #expect(almost.count == 64)
        #expect(!Identifier.isValid(almost))
        #expect(Identifier.isValid(String(repeating: "a", count: 63) + "~"))
        #expect(!Identifier.isValid(String(repeating: "a", count: 64) + "~"))
    }
}
