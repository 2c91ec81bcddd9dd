import Foundation

/// Time-limited TURN credentials of the TURN REST API (draft-uberti-behave-turn-rest-00 §2.2), as coturn's
/// `--use-auth-secret` checks them: username `"<expiry unix seconds>:<user>"`, password
/// `base64(HMAC-SHA1(secret, username))`.
///
/// The relay derives the password from the username and the shared secret, then uses it as a long-term
/// credential password. Checking the expiry against the clock is the caller's job (time is passed in, never read).
public enum EphemeralCredential {
    /// A username valid until `expiry` (Unix seconds) for `user`, and its password.
    public static func make(secret: [UInt8], user: String, expiry: Int64) -> (username: String, password: String) {
        let username = "\(expiry):\(user)"
        return (username, password(secret: secret, username: username))
    }

    /// A username for `user` that is good only for the relay legs of call `call` (Switchboard's call-scoped
    /// credentials): `"<expiry>:<user>:call=<call>"`. The call is inside what the password signs, so it cannot be
    /// changed; a relay that knows nothing of calls reads it as user `"<user>:call=<call>"`.
    public static func make(secret: [UInt8], user: String, call: String, expiry: Int64)
        -> (username: String, password: String)
    {
        make(secret: secret, user: "\(user)\(callMarker)\(call)", expiry: expiry)
    }

    static let callMarker = ":call="

    /// The user and the call of a user part made by ``make(secret:user:call:expiry:)``; nil call for any other.
    public static func scope(of user: String) -> (user: String, call: String?) {
        guard let marker = user.range(of: callMarker, options: .backwards), !user[marker.upperBound...].isEmpty,
            marker.lowerBound > user.startIndex
        else { return (user, nil) }
        return (String(user[..<marker.lowerBound]), String(user[marker.upperBound...]))
    }

    /// ``make(secret:user:expiry:)-(Array<UInt8>,_,_)`` with the secret's UTF-8 bytes.
    public static func make(secret: String, user: String, expiry: Int64) -> (username: String, password: String) {
        make(secret: Array(secret.utf8), user: user, expiry: expiry)
    }

    /// `base64(HMAC-SHA1(secret, username))`, standard alphabet with padding.
    public static func password(secret: [UInt8], username: String) -> String {
        Data(CredentialDigest.hmacSHA1(key: secret, Array(username.utf8))).base64EncodedString()
    }

    /// ``password(secret:username:)-(Array<UInt8>,_)`` with the secret's UTF-8 bytes.
    public static func password(secret: String, username: String) -> String {
        password(secret: Array(secret.utf8), username: username)
    }

    /// Splits a username at its first `:` into the expiry (decimal Unix seconds) and the user, which may itself
    /// contain `:` or be empty. A username without `:` is all expiry, as coturn reads it. Nil when the expiry is not
    /// a run of ASCII digits that fits in an `Int64`.
    public static func parse(username: String) -> (expiry: Int64, user: String)? {
        let expiryText: Substring
        let user: Substring
        if let colon = username.firstIndex(of: ":") {
            expiryText = username[..<colon]
            user = username[username.index(after: colon)...]
        } else {
            expiryText = username[...]
            user = ""
        }
        guard !expiryText.isEmpty, expiryText.count <= 20,
            expiryText.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            let expiry = Int64(expiryText)
        else { return nil }
        return (expiry, String(user))
    }
}
