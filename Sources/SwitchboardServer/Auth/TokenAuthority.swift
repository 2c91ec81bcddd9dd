public import Foundation
import JWTKit
import Synchronization

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

/// Issues Switchboard's own HS256 tokens and verifies bearer tokens: those, and when an identity provider's JWKS is
/// configured, its RS256/RS384/RS512, PS256/PS384/PS512, ES256/ES384/ES512 and EdDSA tokens. jwt-kit checks the
/// signatures; ``TokenPolicy`` the claims.
///
/// The header's `alg` picks the key family before any signature is checked: HS256 is checked only against the
/// secret and every other algorithm only against the JWKS key of the token's `kid` (of that family), so a token
/// cannot make a public key into an HMAC secret (algorithm confusion), and `alg: none` is refused. A header with
/// `crit` is refused: Switchboard understands no JWS extension (RFC 7515 §4.1.11).
public final class TokenAuthority: Sendable {
    private let secret: [UInt8]
    private let ownKeys = JWTKeyCollection()
    private let ownKeysReady = Atomic<Bool>(false)
    let policy: TokenPolicy
    /// The identity provider's keys, when configured.
    let identityProvider: KeySetFetcher?

    /// Algorithms an identity provider's key may sign with.
    static let asymmetricAlgorithms: Set<String> = [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
    ]
    /// The longest token read.
    static let maxTokenBytes = 8192

    init(secret: [UInt8], policy: TokenPolicy, identityProvider: KeySetFetcher?) {
        precondition(!secret.isEmpty, "the token secret must not be empty")
        self.secret = secret
        self.policy = policy
        self.identityProvider = identityProvider
    }

    /// An authority for Switchboard's own tokens only, with the default policy.
    public convenience init(secret: [UInt8]) {
        self.init(secret: secret, policy: TokenPolicy(), identityProvider: nil)
    }

    /// Why a token was refused.
    public enum Refusal: Error, Sendable, Equatable {
        case malformed
        case badSignature
        case unsupportedAlgorithm
        case unknownKey
        case criticalHeader
        case expired
        case notYetValid
        case lifetimeTooLong
        case wrongIssuer
        case wrongAudience
        case invalidSubject
        case invalidClaims
    }

    /// A signed token for `identity`, valid for `ttl` seconds from `now`.
    public func issue(_ identity: Identity, ttl: TimeInterval, now: Date = Date()) async -> String {
        var claims: [String: ClaimValue] = [
            "sub": .string(identity.user),
            "exp": .number((now.timeIntervalSince1970 + ttl).rounded(.down)),
            "iat": .number(now.timeIntervalSince1970.rounded(.down)),
        ]
        if identity.isAdmin { claims["role"] = .string("admin") }
        if let device = identity.device { claims["device"] = .string(device) }
        do {
            return try await hmacKeys().sign(ClaimSet(claims), header: ["alg": "HS256", "typ": "JWT"])
        } catch {
            // Encoding a dictionary of strings and numbers and an HMAC cannot fail.
            preconditionFailure("signing a token failed: \(error)")
        }
    }

    /// The identity a token proves, or why it proves nothing.
    public func verify(_ token: String, now: Date = Date()) async -> Result<Identity, Refusal> {
        let parts = token.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard token.utf8.count <= Self.maxTokenBytes, parts.count == 3,
            let headerBytes = Base64URL.decode(Substring(parts[0])),
            let header = try? JSONSerialization.jsonObject(with: Data(headerBytes)) as? [String: Any]
        else { return .failure(.malformed) }
        guard let algorithm = header["alg"] as? String else { return .failure(.unsupportedAlgorithm) }
        guard header["crit"] == nil else { return .failure(.criticalHeader) }
        let keys: JWTKeyCollection
        let signer: TokenPolicy.Signer
        if algorithm == "HS256" {
            keys = await hmacKeys()
            signer = .ownSecret
        } else if Self.asymmetricAlgorithms.contains(algorithm), let identityProvider {
            guard header["kid"] == nil || header["kid"] is String else { return .failure(.malformed) }
            let kid = header["kid"] as? String
            var found = identityProvider.keys?.collection(kid: kid, algorithm: algorithm)
            // A kid the set lacks: the provider may have rotated its keys.
            if found == nil, let kid, identityProvider.keys?.contains(kid: kid) != true,
                await identityProvider.refreshForUnknownKey()
            {
                found = identityProvider.keys?.collection(kid: kid, algorithm: algorithm)
            }
            guard let found else {
                let known = kid.map { identityProvider.keys?.contains(kid: $0) == true } ?? false
                return .failure(known ? .unsupportedAlgorithm : .unknownKey)
            }
            // Each collection holds one key pinned to one algorithm; checked again all the same.
            guard (try? await found.getKey(alg: algorithm))?.name == algorithm else {
                return .failure(.unsupportedAlgorithm)
            }
            keys = found
            signer = .identityProvider
        } else {
            return .failure(.unsupportedAlgorithm)
        }
        let claims: ClaimSet
        do {
            claims = try await keys.verify(token, as: ClaimSet.self)
        } catch let error as JWTError where error.errorType == .malformedToken {
            return .failure(.malformed)
        } catch {
            return .failure(.badSignature)
        }
        return policy.identity(from: claims.claims, signedBy: signer, now: now)
    }

    /// The collection holding the HS256 secret, filled on first use (a collection is an actor).
    private func hmacKeys() async -> JWTKeyCollection {
        if !ownKeysReady.load(ordering: .acquiring) {
            await ownKeys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
            ownKeysReady.store(true, ordering: .releasing)
        }
        return ownKeys
    }
}
