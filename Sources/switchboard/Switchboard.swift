import ArgumentParser
import Foundation
import SwitchboardServer

@main
struct Switchboard: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchboard",
        abstract: "Secure media-session coordinator: HTTPS + SSE call signaling and a TURN relay.",
        subcommands: [Serve.self, RelayCommand.self, Calls.self, Token.self, Certs.self])
}

/// Prints `error: message` on one line to stderr and exits non-zero.
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension AsyncParsableCommand {
    /// Runs `body`, turning any failure into one line on stderr and exit code 1.
    func failingCleanly(_ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let error as ExitCode {
            throw error
        } catch let error as CleanExit {
            throw error
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }
}

/// Where the token secret comes from: flag, environment, file, or the dev secret in the certs directory.
struct SecretOptions: ParsableArguments {
    @Option(help: "HS256 token secret (or env SWITCHBOARD_TOKEN_SECRET).")
    var tokenSecret: String?

    @Option(help: "File holding the token secret.")
    var tokenSecretFile: String?

    @Option(help: "Directory of the dev certificate and dev token secret.")
    var certsDir: String = "certs"

    /// The secret, and whether it is the dev secret of the certs directory (made on first use).
    func resolve() throws -> (secret: [UInt8], isDevSecret: Bool) {
        var given: [UInt8]?
        if let tokenSecret, !tokenSecret.isEmpty {
            given = Array(tokenSecret.utf8)
        } else if let env = ProcessInfo.processInfo.environment["SWITCHBOARD_TOKEN_SECRET"], !env.isEmpty {
            given = Array(env.utf8)
        } else if let tokenSecretFile {
            guard let text = try? String(contentsOfFile: tokenSecretFile, encoding: .utf8) else {
                throw CommandFailure("cannot read the token secret file \(tokenSecretFile)")
            }
            given = Array(text.trimmingCharacters(in: .whitespacesAndNewlines).utf8)
        }
        if let given {
            // One stolen token must not let anyone guess the key offline.
            guard given.count >= 32 else { throw CommandFailure("the token secret must be at least 32 bytes") }
            return (given, false)
        }
        return (try DevCertificates(directory: certsDir).tokenSecret(), true)
    }
}
