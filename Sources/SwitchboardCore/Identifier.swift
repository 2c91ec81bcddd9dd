/// Validation of the identifiers the API accepts: user ids (token `sub`), device ids and call ids.
///
/// All are 1–64 characters of `[A-Za-z0-9._~-]`, so they are safe in URLs, logs and SSE frames without escaping.
public enum Identifier {
    /// The longest identifier accepted.
    public static let maxLength = 64

    /// Whether `value` is a well-formed identifier.
    public static func isValid(_ value: String) -> Bool {
        let utf8 = value.utf8
        guard !utf8.isEmpty, utf8.count <= maxLength else { return false }
        return utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"),
                UInt8(ascii: "-"):
                return true
            default:
                return false
            }
        }
    }
}
