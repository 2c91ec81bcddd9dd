import Crypto
import CryptoExtras
import Foundation
import JWTKit
import SwitchboardServer
import Testing

/// Tokens from an identity provider: RS256, ES256 and EdDSA tokens signed by keys made here and published in a
/// JWKS (a file, or an HTTPS URL), checked end to end by a real server; every kind of bad token refused with 401.
@Suite struct IdentityProviderTests {
    /// `POST`/`GET` as the holder of `token`: the status of `GET /v1/calls` and the number of calls it lists.
    static func listCalls(_ server: TestServer, _ token: String) async throws -> (status: Int, calls: Int) {
        let reply = try await server.request(.GET, "/v1/calls", token: token)
        return (reply.status, (reply.json["calls"] as? [Any])?.count ?? 0)
    }

    @Test func providerTokensOfEveryAlgorithmAreAcceptedAndMapped() async throws {
        let provider = try await TestIdentityProvider()
        let jwks = try provider.writeJWKS(kids: ["rsa-1", "ec-1", "ed-1"])
        try await TestServer.with({
            $0.jwks = .file(path: jwks)
            $0.tokenPolicy.issuer = TestIdentityProvider.issuer
            $0.tokenPolicy.audience = "switchboard"
            $0.tokenPolicy.userClaim = "preferred_username"
            $0.tokenPolicy.adminClaim = "groups"
            $0.tokenPolicy.adminValue = "call-admins"
        }) { server in
            // A call by alice (Switchboard's own token), so that an admin has something to see.
            #expect(try await server.invite("alice", to: "bob").status == 201)
            for kid in ["rsa-1", "ec-1", "ed-1"] {
                let carol = try await provider.token(kid: kid, ["preferred_username": .string("carol")])
                #expect(try await Self.listCalls(server, carol) == (200, 0), "\(kid)")
                let admin = try await provider.token(
                    kid: kid, ["preferred_username": .string("root"), "groups": .array(["staff", "call-admins"])])
                #expect(try await Self.listCalls(server, admin) == (200, 1), "\(kid)")
            }
            // The audience may be one of several.
            let several = try await provider.token(
                kid: "ec-1", ["preferred_username": .string("carol"), "aud": .array(["other", "switchboard"])])
            #expect(try await Self.listCalls(server, several).status == 200)
            // Switchboard's own tokens still work beside the provider's, without iss or aud.
            #expect(try await Self.listCalls(server, await server.token("alice")) == (200, 1))
        }
    }

    @Test func badTokensAreRefused() async throws {
        let provider = try await TestIdentityProvider()
        let jwks = try provider.writeJWKS(kids: ["rsa-1", "ec-1"])
        try await TestServer.with({
            $0.jwks = .file(path: jwks)
            $0.tokenPolicy.issuer = TestIdentityProvider.issuer
            $0.tokenPolicy.audience = "switchboard"
            $0.tokenPolicy.maxLifetime = 3600
        }) { server in
            let now = Date().timeIntervalSince1970
            let user: [String: TestClaim] = ["sub": .string("carol")]
            let good = try await provider.token(kid: "rsa-1", user)
            #expect(try await Self.listCalls(server, good).status == 200)
            var refused: [(String, String)] = [
                (
                    "wrong iss",
                    try await provider.token(kid: "rsa-1", user.merging(["iss": .string("https://evil")]) { $1 })
                ),
                ("wrong aud", try await provider.token(kid: "rsa-1", user.merging(["aud": .string("other")]) { $1 })),
                ("no aud", try await provider.token(kid: "rsa-1", user.merging(["aud": .null]) { $1 })),
                (
                    "expired",
                    try await provider.token(
                        kid: "ec-1", user.merging(["exp": .number(now - 600), "iat": .number(now - 900)]) { $1 })
                ),
                ("no exp", try await provider.token(kid: "ec-1", user.merging(["exp": .null]) { $1 })),
                (
                    "not yet valid",
                    try await provider.token(kid: "ec-1", user.merging(["nbf": .number(now + 600)]) { $1 })
                ),
                (
                    "issued in the future",
                    try await provider.token(kid: "ec-1", user.merging(["iat": .number(now + 600)]) { $1 })
                ),
                (
                    "lives too long",
                    try await provider.token(
                        kid: "ec-1", user.merging(["iat": .number(now), "exp": .number(now + 7200)]) { $1 })
                ),
                (
                    "exp as a string",
                    try await provider.token(kid: "ec-1", user.merging(["exp": .string("\(Int(now) + 60)")]) { $1 })
                ),
                ("bad user id", try await provider.token(kid: "ec-1", ["sub": .string("carol|google")])),
                // A key of the set, but not the one the header names.
                ("kid of another key", try await provider.token(kid: "rsa-1", user, headerKid: .named("ec-1"))),
                // A key the set does not hold (rotated in at the provider, not yet published).
                ("unknown kid", try await provider.token(kid: "ed-1", user)),
                ("no kid with several keys", try await provider.token(kid: "ec-1", user, headerKid: .omitted)),
                // A well-formed signature by a key of another provider, under a kid of this one.
                ("foreign key", try await TestIdentityProvider().token(kid: "rsa-1", user)),
                (
                    "EdDSA signature under an RSA kid",
                    try await provider.token(kid: "ed-1", user, headerKid: .named("rsa-1"))
                ),
            ]
            // alg none, with and without a signature.
            let payload = try TestIdentityProvider.encode(provider.claims(user))
            refused.append(("alg none", TestIdentityProvider.b64(#"{"alg":"none","typ":"JWT"}"#) + "." + payload + "."))
            refused.append(
                (
                    "alg none signed",
                    TestIdentityProvider.b64(#"{"alg":"none","kid":"rsa-1"}"#) + "." + payload + ".c2ln"
                ))
            // Algorithm confusion: HS256 signed with the provider's public RSA key as the secret.
            let publicPEM = try provider.rsaPublicPEM()
            for kid in ["rsa-1", nil] {
                let header = TestIdentityProvider.b64(
                    kid.map { #"{"alg":"HS256","typ":"JWT","kid":"\#($0)"}"# } ?? #"{"alg":"HS256","typ":"JWT"}"#)
                let input = header + "." + payload
                let mac = HMAC<SHA256>.authenticationCode(
                    for: Data(input.utf8), using: SymmetricKey(data: Data(publicPEM.utf8)))
                refused.append(
                    (
                        "HS256 with the public key (kid \(kid ?? "none"))",
                        input + "." + TestIdentityProvider.b64(Data(mac))
                    ))
            }
            // A critical header extension Switchboard does not understand (RFC 7515 §4.1.11).
            refused.append(
                (
                    "crit",
                    try await provider.token(
                        kid: "rsa-1", user, extraHeader: ["crit": .array(["exp"]), "exp": .number(now)])
                ))
            // A good token with its signature cut or its payload changed.
            refused.append(("cut signature", String(good.dropLast(4))))
            let parts = good.split(separator: ".")
            refused.append(
                (
                    "changed payload",
                    parts[0] + "." + (try TestIdentityProvider.encode(provider.claims(["sub": .string("root")]))) + "."
                        + parts[2]
                ))
            for (name, token) in refused {
                let reply = try await server.request(.GET, "/v1/calls", token: token)
                #expect(reply.status == 401, "\(name)")
                #expect(reply.errorCode == "unauthorized", "\(name)")
            }
        }
    }

    @Test func rotatedKeysAreFetchedFromTheURL() async throws {
        let provider = try await TestIdentityProvider()
        let site = try JWKSSite()
        defer { site.stop() }
        try provider.writeJWKS(kids: ["rsa-1"], to: site.jwksPath)
        try await site.start()
        try await TestServer.with({
            $0.jwks = .url(URL(string: "https://127.0.0.1:\(site.port)/jwks.json")!)
            $0.jwksTrustRoots = site.caPath
            $0.tokenPolicy.issuer = TestIdentityProvider.issuer
            $0.tokenPolicy.audience = "switchboard"
        }) { server in
            let user: [String: TestClaim] = ["sub": .string("carol")]
            #expect(try await Self.listCalls(server, try await provider.token(kid: "rsa-1", user)).status == 200)
            #expect(site.requests == 1)
            // The provider rotates: it publishes a new key and signs with it. The first token naming the new kid
            // makes the server read the URL again, and it holds.
            try provider.writeJWKS(kids: ["rsa-1", "ec-1"], to: site.jwksPath)
            #expect(try await Self.listCalls(server, try await provider.token(kid: "ec-1", user)).status == 200)
            #expect(site.requests == 2)
            // A kid never published: refused, and the URL is not read again within 30 s of the last read.
            #expect(try await Self.listCalls(server, try await provider.token(kid: "ed-1", user)).status == 401)
            #expect(site.requests == 2)
        }
    }

    @Test func aKeyWithoutAlgCannotBeLockedToAnotherAlgorithmByAForgedHeader() async throws {
        let provider = try await TestIdentityProvider()
        // As some providers publish them: no `alg` on the keys.
        let jwks = try provider.writeJWKS(kids: ["rsa-1", "ec-1"], withAlgorithms: false)
        try await TestServer.with({
            $0.jwks = .file(path: jwks)
            $0.tokenPolicy.issuer = TestIdentityProvider.issuer
            $0.tokenPolicy.audience = "switchboard"
        }) { server in
            let user: [String: TestClaim] = ["sub": .string("carol")]
            // Forged headers naming the RSA key with other RSA algorithms, and the EC key with another curve's.
            let payload = try TestIdentityProvider.encode(provider.claims(user))
            for header in [
                #"{"alg":"PS256","kid":"rsa-1"}"#, #"{"alg":"RS512","kid":"rsa-1"}"#, #"{"alg":"ES384","kid":"ec-1"}"#,
            ] {
                let forged = TestIdentityProvider.b64(header) + "." + payload + ".c2lnbmF0dXJl"
                #expect(try await Self.listCalls(server, forged).status == 401, "\(header)")
            }
            // The provider's real tokens still verify.
            #expect(try await Self.listCalls(server, try await provider.token(kid: "rsa-1", user)).status == 200)
            #expect(try await Self.listCalls(server, try await provider.token(kid: "ec-1", user)).status == 200)
        }
    }

    @Test func aJWKSNeedsAnIssuerAndAnAudience() async throws {
        let provider = try await TestIdentityProvider()
        let jwks = try provider.writeJWKS(kids: ["rsa-1"])
        await #expect(throws: ServerError.self) {
            try await TestServer.with({ $0.jwks = .file(path: jwks) }) { _ in }
        }
    }
}
