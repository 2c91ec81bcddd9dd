import ArgumentParser
import Foundation
import SwitchboardServer

/// `switchboard serve`'s options for tokens signed by the operator's identity provider.
struct IdentityProviderOptions: ParsableArguments {
    @Option(help: "JWKS file of the identity provider's public keys (re-read on SIGHUP).")
    var jwksFile: String?
    @Option(help: "HTTPS URL of the identity provider's JWKS (refreshed as its Cache-Control says, and on SIGHUP).")
    var jwksURL: String?
    @Option(help: "PEM file of the CAs the --jwks-url certificate must chain to (default: the system's).")
    var jwksCAFile: String?
    @Option(help: "The iss an identity provider's token must carry.") var jwtIssuer: String?
    @Option(help: "A value the aud of an identity provider's token must be or contain.") var jwtAudience: String?
    @Option(help: "The claim naming the user in an identity provider's token.") var userClaim = "sub"
    @Option(help: "The claim that grants the admin role when it is or contains --admin-claim-value.")
    var adminClaim = "role"
    @Option(help: "The value of --admin-claim that grants the admin role.") var adminClaimValue = "admin"
    @Option(help: "Seconds of clock skew allowed on exp, nbf and iat.") var jwtLeeway: Double = 60
    @Option(help: "Longest lifetime in seconds of any token, from its iat (or now) to its exp.")
    var jwtMaxLifetime: Double = 86_400

    func apply(to configuration: inout ServerConfiguration) throws {
        switch (jwksFile, jwksURL) {
        case (let file?, nil):
            configuration.jwks = .file(path: file)
        case (nil, let text?):
            guard let url = URL(string: text), url.scheme == "https", url.host != nil else {
                throw CommandFailure("--jwks-url must be an https:// URL")
            }
            configuration.jwks = .url(url)
        case (nil, nil):
            let dependent = [jwtIssuer, jwtAudience, jwksCAFile].contains { $0 != nil }
            if dependent {
                throw CommandFailure("--jwt-issuer, --jwt-audience and --jwks-ca-file need --jwks-file or --jwks-url")
            }
        case (.some, .some):
            throw CommandFailure("--jwks-file and --jwks-url are alternatives: give one")
        }
        if let jwksCAFile, !FileManager.default.isReadableFile(atPath: jwksCAFile) {
            throw CommandFailure("cannot read --jwks-ca-file \(jwksCAFile)")
        }
        configuration.jwksTrustRoots = jwksCAFile
        guard !userClaim.isEmpty, !adminClaim.isEmpty else {
            throw CommandFailure("--user-claim and --admin-claim must name a claim")
        }
        guard jwtLeeway >= 0, jwtLeeway <= 600 else { throw CommandFailure("--jwt-leeway must be 0 to 600 seconds") }
        guard jwtMaxLifetime >= 60, jwtMaxLifetime <= 31 * 86_400 else {
            throw CommandFailure("--jwt-max-lifetime must be 60 to 2678400 seconds (31 days)")
        }
        var policy = TokenPolicy()
        policy.issuer = jwtIssuer
        policy.audience = jwtAudience
        policy.userClaim = userClaim
        policy.adminClaim = adminClaim
        policy.adminValue = adminClaimValue
        policy.leeway = jwtLeeway
        policy.maxLifetime = jwtMaxLifetime
        configuration.tokenPolicy = policy
    }
}
