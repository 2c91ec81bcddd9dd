import ArgumentParser
import Foundation
import SwitchboardCore
import SwitchboardServer

struct Token: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Mint tokens.", subcommands: [Issue.self])

    struct Issue: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print one signed token on stdout, with the same secret as the server.")

        @Option(help: "User id (1-64 of [A-Za-z0-9._~-]).") var user: String
        @Flag(help: "Give the token the admin role.") var admin = false
        @Option(help: "Bind the token to one device id.") var device: String?
        @Option(help: "Lifetime in seconds (servers refuse tokens living longer than their --jwt-max-lifetime).")
        var ttl: Int = 3600
        @OptionGroup var secret: SecretOptions

        func run() async throws {
            try await failingCleanly {
                guard Identifier.isValid(user) else { throw CommandFailure("invalid user id '\(user)'") }
                if let device, !Identifier.isValid(device) { throw CommandFailure("invalid device id '\(device)'") }
                guard ttl > 0 else { throw CommandFailure("--ttl must be positive") }
                let maximum = Int(TokenPolicy().maxLifetime)
                if ttl > maximum {
                    FileHandle.standardError.write(
                        Data(
                            "warning: a server with the default --jwt-max-lifetime (\(maximum) s) refuses this token\n"
                                .utf8))
                }
                let authority = TokenAuthority(secret: try secret.resolve().secret)
                print(
                    await authority.issue(Identity(user: user, isAdmin: admin, device: device), ttl: TimeInterval(ttl)))
            }
        }
    }
}

struct Certs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Dev certificates.", subcommands: [Generate.self])

    struct Generate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a dev CA and a server certificate for localhost, 127.0.0.1 and ::1.")

        @Option(help: "Output directory.") var dir: String = "certs"
        @Option(help: "Extra DNS names for the server certificate.") var hostname: [String] = []
        @Flag(help: "Replace a valid existing set.") var force = false

        func run() async throws {
            try await failingCleanly {
                let dev = DevCertificates(directory: dir)
                let wrote = try dev.ensure(force: force, hostnames: hostname)
                _ = try dev.tokenSecret()
                print(
                    wrote
                        ? "wrote \(dev.caPath), \(dev.certificatePath), \(dev.privateKeyPath)"
                        : "a valid dev certificate is already in \(dir) (use --force to replace it)")
            }
        }
    }
}
