public import Foundation
import JWTKit

/// Where an identity provider publishes its keys: a JWKS file (re-read on SIGHUP) or an HTTPS URL (fetched at
/// start, refreshed as its cache headers say, on SIGHUP, and when a token names a key the set lacks).
public enum JWKSSource: Sendable, Equatable, CustomStringConvertible {
    case file(path: String)
    case url(URL)

    public var description: String {
        switch self {
        case .file(let path): path
        case .url(let url): url.absoluteString
        }
    }
}

/// The keys of one JWKS, each in a jwt-kit key collection of its own per algorithm it may sign with: a token's
/// `kid` and `alg` select that key for that algorithm and nothing else. (A collection falls back to its default key
/// for a `kid` it lacks, and jwt-kit fixes the algorithm of a JWK without `alg` on the first token that asks, so a
/// shared collection would let one forged header lock a provider's RSA key to an algorithm its tokens do not use.)
struct IdentityProviderKeys: Sendable {
    /// By `kid`, then by algorithm.
    let byID: [String: [String: JWTKeyCollection]]
    /// The keys a token without `kid` is checked against: only when the set holds exactly one.
    let sole: [String: JWTKeyCollection]?
    /// Keys the set held that were skipped: encryption keys, private keys, unknown key types, malformed keys.
    let skipped: Int

    var count: Int { byID.count }

    /// Reads a JWKS document (RFC 7517 §5). Keys Switchboard cannot verify signatures with are skipped, not fatal:
    /// a provider's set may hold encryption keys or key types of the future. A key without `alg` serves every
    /// algorithm of its type (RSA: RS256/384/512 and PS256/384/512; EC: the ES algorithm of its curve; OKP: EdDSA).
    init(jwks data: Data) async throws {
        guard let document = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let keys = document["keys"] as? [Any]
        else { throw KeySetError("not a JWKS document (an object with a \"keys\" array)") }
        var byID: [String: [String: JWTKeyCollection]] = [:]
        var skipped = 0
        for (index, entry) in keys.enumerated() {
            guard let fields = entry as? [String: Any], fields["use"] as? String ?? "sig" == "sig", fields["d"] == nil
            else {
                skipped += 1
                continue
            }
            // A set of one key may leave out `kid`; give it one that no token can name.
            let kid = fields["kid"] as? String ?? "#\(index)"
            guard byID[kid] == nil else { throw KeySetError("two keys with kid \(kid)") }
            var collections: [String: JWTKeyCollection] = [:]
            for algorithm in Self.algorithms(of: fields) {
                var pinned = fields
                pinned["alg"] = algorithm
                pinned["kid"] = kid
                let collection = JWTKeyCollection()
                guard let encoded = try? JSONSerialization.data(withJSONObject: pinned),
                    let jwk = try? JSONDecoder().decode(JWK.self, from: encoded),
                    (try? await collection.add(jwk: jwk)) != nil,
                    (try? await collection.getKey(alg: algorithm))?.name == algorithm
                else { continue }
                collections[algorithm] = collection
            }
            guard !collections.isEmpty else {
                skipped += 1
                continue
            }
            byID[kid] = collections
        }
        guard !byID.isEmpty else { throw KeySetError("no signature key Switchboard can use") }
        self.byID = byID
        self.sole = byID.count == 1 ? byID.values.first : nil
        self.skipped = skipped
    }

    /// The algorithms a JWK may verify: its `alg`, or those of its key type.
    static func algorithms(of fields: [String: Any]) -> [String] {
        if let algorithm = fields["alg"] as? String {
            return TokenAuthority.asymmetricAlgorithms.contains(algorithm) ? [algorithm] : []
        }
        switch (fields["kty"] as? String, fields["crv"] as? String) {
        case ("RSA", _): return ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
        case ("EC", "P-256"): return ["ES256"]
        case ("EC", "P-384"): return ["ES384"]
        case ("EC", "P-521"): return ["ES512"]
        case ("OKP", "Ed25519"): return ["EdDSA"]
        default: return []
        }
    }

    /// Whether the set holds a key named `kid`.
    func contains(kid: String) -> Bool { !kid.hasPrefix("#") && byID[kid] != nil }

    /// The collection that checks `algorithm` with the key a token's header names.
    func collection(kid: String?, algorithm: String) -> JWTKeyCollection? {
        guard let kid else { return sole?[algorithm] }
        // The synthetic ids of keys without one are not for tokens to name.
        guard !kid.hasPrefix("#") else { return nil }
        return byID[kid]?[algorithm]
    }
}

struct KeySetError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
