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

/// The keys of one JWKS, each in a jwt-kit key collection of its own: a token's `kid` selects its own key and no
/// other (a collection falls back to its default key for a `kid` it lacks, which would let a token pick a key).
struct IdentityProviderKeys: Sendable {
    /// By `kid`.
    let byID: [String: JWTKeyCollection]
    /// The key a token without `kid` is checked against: only when the set holds exactly one.
    let sole: JWTKeyCollection?
    /// Keys the set held that were skipped: encryption keys, unknown key types, malformed keys.
    let skipped: Int

    var count: Int { byID.count }

    /// Reads a JWKS document (RFC 7517 §5). Keys Switchboard cannot verify signatures with are skipped, not fatal:
    /// a provider's set may hold encryption keys or key types of the future.
    init(jwks data: Data) async throws {
        guard let document = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let keys = document["keys"] as? [Any]
        else { throw KeySetError("not a JWKS document (an object with a \"keys\" array)") }
        var byID: [String: JWTKeyCollection] = [:]
        var skipped = 0
        for (index, entry) in keys.enumerated() {
            guard let fields = entry as? [String: Any], fields["use"] as? String ?? "sig" == "sig",
                fields["d"] == nil,
                let encoded = try? JSONSerialization.data(withJSONObject: fields),
                var jwk = try? JSONDecoder().decode(JWK.self, from: encoded)
            else {
                skipped += 1
                continue
            }
            // A set of one key may leave out `kid`; give it one that no token can name.
            let kid = jwk.keyIdentifier?.string ?? "#\(index)"
            jwk.keyIdentifier = JWKIdentifier(string: kid)
            guard byID[kid] == nil else { throw KeySetError("two keys with kid \(kid)") }
            let collection = JWTKeyCollection()
            do {
                try await collection.add(jwk: jwk)
            } catch {
                skipped += 1
                continue
            }
            byID[kid] = collection
        }
        guard !byID.isEmpty else { throw KeySetError("no signature key Switchboard can use") }
        self.byID = byID
        self.sole = byID.count == 1 ? byID.values.first : nil
        self.skipped = skipped
    }

    /// The collection holding the key a token's header names.
    func collection(kid: String?) -> JWTKeyCollection? {
        guard let kid else { return sole }
        // The synthetic ids of keys without one are not for tokens to name.
        guard !kid.hasPrefix("#") else { return nil }
        return byID[kid]
    }
}

struct KeySetError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
