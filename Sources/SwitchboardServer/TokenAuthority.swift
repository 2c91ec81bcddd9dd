import Crypto
public import Foundation
import SwitchboardCore

/// Who is making a request: the verified claims of a bearer token (or of a stream ticket made from one).
public struct Identity: Sendable, Hashable {
    public let user: String
    public let isAdmin: Bool
    /// When the token names a device, the holder may act only as that device.
    public let device: String?

    public init(user: String, isAdmin: Bool = false, device: String? = nil) {
        self.user = user
        self.isAdmin = isAdmin
        self.device = device
    }
}

/// Issues and verifies HS256 JSON Web Tokens (RFC 7519, RFC 7515 §A.1) with the claims `sub`, `exp`, and the
/// optional `device` and `role: "admin"`.
///
/// Verification accepts only `alg: HS256`, compares the MAC in constant time (swift-crypto's
/// `isValidAuthenticationCode`) and requires `exp` in the future and a well-formed `sub`.
public struct TokenAuthority: Sendable {
    private let secret: [UInt8]
    private var key: SymmetricKey { SymmetricKey(data: secret) }

    public init(secret: [UInt8]) {
        precondition(!secret.isEmpty, "the token secret must not be empty")
        self.secret = secret
    }

    /// Why a token was refused.
    public enum Refusal: Error, Sendable, Equatable {
        case malformed
        case badSignature
        case unsupportedAlgorithm
        case expired
        case invalidSubject
        case invalidClaims
    }

    /// A signed token for `identity`, valid for `ttl` seconds from `now`.
    public func issue(_ identity: Identity, ttl: TimeInterval, now: Date = Date()) -> String {
        var claims: [String: any Sendable] = [
            "sub": identity.user,
            "exp": Int((now.timeIntervalSince1970 + ttl).rounded(.down)),
            "iat": Int(now.timeIntervalSince1970.rounded(.down)),
        ]
        if identity.isAdmin { claims["role"] = "admin" }
        if let device = identity.device { claims["device"] = device }
        let header = Base64URL.encode(Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8))
        let payload = Base64URL.encode(
            (try? JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys])).map(Array.init) ?? [])
        let signingInput = header + "." + payload
        let mac = HMAC<SHA256>.authenticationCode(for: Array(signingInput.utf8), using: key)
        return signingInput + "." + Base64URL.encode(Array(mac))
    }

    /// The identity a token proves, or why it proves nothing.
    public func verify(_ token: String, now: Date = Date()) -> Result<Identity, Refusal> {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, token.utf8.count < 4096,
            let headerBytes = Base64URL.decode(parts[0]),
            let payloadBytes = Base64URL.decode(parts[1]),
            let signature = Base64URL.decode(parts[2])
        else { return .failure(.malformed) }
        guard
            let header = try? JSONSerialization.jsonObject(with: Data(headerBytes)) as? [String: Any],
            header["alg"] as? String == "HS256"
        else { return .failure(.unsupportedAlgorithm) }
        let signingInput = Array(token.utf8.prefix(parts[0].utf8.count + 1 + parts[1].utf8.count))
        guard HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: signingInput, using: key) else {
            return .failure(.badSignature)
        }
        guard let claims = try? JSONSerialization.jsonObject(with: Data(payloadBytes)) as? [String: Any] else {
            return .failure(.malformed)
        }
        guard let exp = (claims["exp"] as? NSNumber)?.doubleValue else { return .failure(.invalidClaims) }
        guard exp > now.timeIntervalSince1970 else { return .failure(.expired) }
        guard let sub = claims["sub"] as? String, Identifier.isValid(sub) else { return .failure(.invalidSubject) }
        var device: String?
        if let claimed = claims["device"] {
            guard let claimed = claimed as? String, Identifier.isValid(claimed) else { return .failure(.invalidClaims) }
            device = claimed
        }
        var isAdmin = false
        if let role = claims["role"] {
            guard let role = role as? String else { return .failure(.invalidClaims) }
            isAdmin = role == "admin"
        }
        return .success(Identity(user: sub, isAdmin: isAdmin, device: device))
    }
}

/// base64url without padding (RFC 4648 §5), as JWTs use it.
enum Base64URL {
    static func encode(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func decode(_ text: Substring) -> [UInt8]? {
        guard text.utf8.allSatisfy({ $0 != UInt8(ascii: "=") && $0 != UInt8(ascii: "+") && $0 != UInt8(ascii: "/") })
        else { return nil }
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.utf8.count % 4 != 0 { base64.append("=") }
        return Data(base64Encoded: base64).map(Array.init)
    }

    /// `count` random bytes from the system's CSPRNG, base64url-encoded.
    static func random(bytes count: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return encode((0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }
}
