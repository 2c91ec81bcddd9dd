/// ICE short-term credentials of one agent (RFC 8445 §5.3, RFC 8839 §5.4): `a=ice-ufrag` and `a=ice-pwd`.
public struct ICECredentials: Sendable, Hashable {
    public let ufrag: String
    public let password: String

    public init(ufrag: String, password: String) {
        self.ufrag = ufrag
        self.password = password
    }

    /// Fresh random credentials: a 8-character ufrag (24 bits of entropy at least, RFC 8445 §5.3) and a
    /// 24-character password (128 bits), from the ice-char alphabet of RFC 8839 §5.4.
    public static func random(using generator: inout some RandomNumberGenerator) -> ICECredentials {
        func draw(_ count: Int) -> String {
            String((0..<count).map { _ in alphabet.randomElement(using: &generator)! })
        }
        return ICECredentials(ufrag: draw(8), password: draw(24))
    }

    public static func random() -> ICECredentials {
        var generator = SystemRandomNumberGenerator()
        return random(using: &generator)
    }

    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
}
