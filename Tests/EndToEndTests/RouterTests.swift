import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import SwitchboardServer
import Testing

/// Routes and middleware in process, through Hummingbird's router test client: no TLS, no sockets. What needs a
/// real connection (deadlines, caps, streams cut by their reader) stays in the end-to-end suites.
@Suite struct RouterTests {
    /// `body` gets a test client of a server configured by `configure` (memory store, no relay, no media) and an
    /// authority that mints its tokens.
    static func withRouter(
        _ configure: (inout ServerConfiguration) -> Void = { _ in },
        _ body: @Sendable (any TestClientProtocol, TokenAuthority) async throws -> Void
    ) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("router-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let material = try DevCertificates.make()
        let certificate = directory.appendingPathComponent("cert.pem").path
        let key = directory.appendingPathComponent("key.pem").path
        try material.certificatePEM.write(toFile: certificate, atomically: true, encoding: .utf8)
        try material.privateKeyPEM.write(toFile: key, atomically: true, encoding: .utf8)
        let secret = Array("router-test-secret-\(UUID().uuidString)".utf8)
        var configuration = ServerConfiguration(tokenSecret: secret)
        configuration.certificatePath = certificate
        configuration.privateKeyPath = key
        configuration.media = nil
        configuration.rateLimitPerSecond = 0
        configuration.unauthenticatedRateLimitPerSecond = 0
        configure(&configuration)
        // A stopped clock: rate-limit buckets refill only with time, so a slow machine cannot change the outcome.
        let now = Date()
        let server = try await SwitchboardServer(
            configuration: configuration, logger: Logger(label: "router-test"), clock: { now })
        let app = Application(router: server.makeRouter())
        try await app.test(.router) { client in try await body(client, TokenAuthority(secret: secret)) }
    }

    static func errorCode(_ response: TestResponse) -> String? {
        let object = try? JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any]
        return (object?["error"] as? [String: Any])?["code"] as? String
    }

    @Test func everyResponseCarriesItsRequestIDAndTheSecurityHeaders() async throws {
        try await Self.withRouter { client, _ in
            for path in ["/healthz", "/v1/calls", "/no/such/route"] {
                try await client.execute(uri: path, method: .get) { response in
                    #expect(response.headers[HTTPField.Name("X-Request-Id")!]?.isEmpty == false, "\(path)")
                    #expect(response.headers[.contentSecurityPolicy]?.contains("default-src 'none'") == true)
                    #expect(response.headers[HTTPField.Name("X-Frame-Options")!] == "DENY")
                }
            }
        }
    }

    @Test func errorsAreTheAPIsJSONBody() async throws {
        try await Self.withRouter { client, authority in
            let token = await authority.issue(Identity(user: "alice"), ttl: 600)
            try await client.execute(uri: "/v1/calls", method: .get) { response in
                #expect(response.status == .unauthorized)
                #expect(Self.errorCode(response) == "unauthorized")
                #expect(response.headers[.wwwAuthenticate] == "Bearer")
            }
            try await client.execute(uri: "/no/such/route", method: .get) { response in
                #expect(response.status == .notFound)
                #expect(Self.errorCode(response) == "not_found")
            }
            try await client.execute(
                uri: "/v1/calls", method: .post, headers: [.authorization: "Bearer \(token)"],
                body: ByteBuffer(string: "{\"to\": 5}")
            ) { response in
                #expect(response.status == .badRequest)
                #expect(Self.errorCode(response) == "bad_request")
            }
            try await client.execute(
                uri: "/v1/calls/nosuchcall", method: .get, headers: [.authorization: "Bearer \(token)"]
            ) {
                response in
                #expect(response.status == .notFound)
                #expect(Self.errorCode(response) == "call_not_found")
            }
        }
    }

    @Test func failedAuthenticationsCostTheirAddressFiveTimesAPublicRequest() async throws {
        // 10 requests per second, a burst of 20: four failed authentications (5 each) and the fifth is refused.
        try await Self.withRouter({ $0.unauthenticatedRateLimitPerSecond = 10 }) { client, authority in
            var statuses: [HTTPResponse.Status] = []
            for _ in 0..<5 {
                try await client.execute(uri: "/v1/calls", method: .get, headers: [.authorization: "Bearer bad"]) {
                    statuses.append($0.status)
                    if $0.status == .tooManyRequests {
                        #expect(Self.errorCode($0) == "rate_limited")
                        #expect($0.headers[.retryAfter] != nil)
                    }
                }
            }
            #expect(statuses == [.unauthorized, .unauthorized, .unauthorized, .unauthorized, .tooManyRequests])
            // A valid token is not held back by its address's failures.
            let token = await authority.issue(Identity(user: "alice"), ttl: 600)
            try await client.execute(uri: "/v1/calls", method: .get, headers: [.authorization: "Bearer \(token)"]) {
                #expect($0.status == .ok)
            }
            // Public routes draw on the same bucket: it is dry.
            try await client.execute(uri: "/healthz", method: .get) { #expect($0.status == .tooManyRequests) }
        }
    }

    @Test func eachUserHasARateLimitOfTheirOwn() async throws {
        // 1 request per second, a burst of 2.
        try await Self.withRouter({ $0.rateLimitPerSecond = 1 }) { client, authority in
            let alice = await authority.issue(Identity(user: "alice"), ttl: 600)
            let bob = await authority.issue(Identity(user: "bob"), ttl: 600)
            var statuses: [HTTPResponse.Status] = []
            for _ in 0..<3 {
                try await client.execute(uri: "/v1/calls", method: .get, headers: [.authorization: "Bearer \(alice)"]) {
                    statuses.append($0.status)
                }
            }
            #expect(statuses == [.ok, .ok, .tooManyRequests])
            try await client.execute(uri: "/v1/calls", method: .get, headers: [.authorization: "Bearer \(bob)"]) {
                #expect($0.status == .ok)
            }
        }
    }

    @Test func theOpenAPIDocumentIsServed() async throws {
        try await Self.withRouter { client, _ in
            try await client.execute(uri: "/openapi.yaml", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType]?.hasPrefix("application/yaml") == true)
                #expect(String(buffer: response.body).hasPrefix("openapi: 3.1.0"))
            }
        }
    }
}
