public import Foundation
import SwitchboardCore

/// What a verified token's claims must say, and which claims name the user and the admin role (`--jwt-issuer`,
/// `--jwt-audience`, `--user-claim`, `--admin-claim`, `--admin-claim-value`, `--jwt-leeway`,
/// `--jwt-max-lifetime`).
///
/// The time checks hold for every token. The issuer, audience and claim mapping hold for tokens signed by the
/// identity provider's keys; Switchboard's own HS256 tokens always name the user in `sub`, the admin role as
/// `role: "admin"`, and carry no `iss` or `aud`.
public struct TokenPolicy: Sendable, Equatable {
    /// The `iss` an identity provider's token must carry; nil: any.
    public var issuer: String?
    /// A value the `aud` of an identity provider's token must be or contain; nil: any.
    public var audience: String?
    /// The claim that names the user in an identity provider's token; its value must be a Switchboard identifier.
    public var userClaim = "sub"
    /// The claim that grants the admin role when it is (a string) or contains (an array) ``adminValue``.
    public var adminClaim = "role"
    public var adminValue = "admin"
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    public var leeway: TimeInterval = 60
    /// The longest a token may live, from its `iat` (or from now, without one) to its `exp`, in seconds.
    public var maxLifetime: TimeInterval = 86_400

    public init() {}

    /// Where a token's signature came from.
    enum Signer {
        /// Switchboard's own HS256 secret.
        case ownSecret
        /// A key of the identity provider's JWKS.
        case identityProvider
    }

    /// The identity `claims` prove at `now`, or why they prove nothing.
    func identity(from claims: [String: ClaimValue], signedBy signer: Signer, now: Date) -> Result<
        Identity, TokenAuthority.Refusal
    > {
        let now = now.timeIntervalSince1970
        guard case .number(let expiry)? = claims["exp"], expiry.isFinite else { return .failure(.invalidClaims) }
        guard expiry + leeway > now else { return .failure(.expired) }
        var issuedAt: Double?
        for name in ["nbf", "iat"] {
            guard let claim = claims[name] else { continue }
            guard case .number(let time) = claim, time.isFinite else { return .failure(.invalidClaims) }
            guard time - leeway <= now else { return .failure(.notYetValid) }
            if name == "iat" { issuedAt = time }
        }
        // From iat when the token has one; else from now, with the leeway the clocks may disagree by.
        let lifetime = issuedAt.map { expiry - $0 } ?? (expiry - now - leeway)
        guard lifetime <= maxLifetime else { return .failure(.lifetimeTooLong) }

        let userClaim: String
        let adminClaim: String
        let adminValue: String
        switch signer {
        case .ownSecret:
            (userClaim, adminClaim, adminValue) = ("sub", "role", "admin")
        case .identityProvider:
            (userClaim, adminClaim, adminValue) = (self.userClaim, self.adminClaim, self.adminValue)
            if let issuer, claims["iss"] != .string(issuer) { return .failure(.wrongIssuer) }
            if let audience {
                switch claims["aud"] {
                case .string(let value) where value == audience: break
                case .array(let values) where values.contains(.string(audience)): break
                default: return .failure(.wrongAudience)
                }
            }
        }
        guard case .string(let user)? = claims[userClaim], Identifier.isValid(user) else {
            return .failure(.invalidSubject)
        }
        var isAdmin = false
        switch claims[adminClaim] {
        case nil: break
        case .string(let value): isAdmin = value == adminValue
        case .array(let values) where values.allSatisfy({ if case .string = $0 { true } else { false } }):
            isAdmin = values.contains(.string(adminValue))
        default: return .failure(.invalidClaims)
        }
        var device: String?
        switch claims["device"] {
        case nil: break
        case .string(let value) where Identifier.isValid(value): device = value
        default: return .failure(.invalidClaims)
        }
        return .success(Identity(user: user, isAdmin: isAdmin, device: device))
    }
}
