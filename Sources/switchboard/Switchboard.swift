import ArgumentParser
import Foundation
import Logging
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
        // One stolen token must not let anyone guess the key offline: at least 32 bytes.
        if let given = try givenSecret(
            flag: tokenSecret, environment: "SWITCHBOARD_TOKEN_SECRET", file: tokenSecretFile, name: "token secret")
        {
            return (given, false)
        }
        return (try DevCertificates(directory: certsDir).tokenSecret(), true)
    }
}

/// A secret given by flag, environment variable or file (in that order), at least 32 bytes; nil when none is given.
func givenSecret(flag: String?, environment: String, file: String?, name: String) throws -> [UInt8]? {
    var given: [UInt8]?
    if let flag, !flag.isEmpty {
        given = Array(flag.utf8)
    } else if let value = ProcessInfo.processInfo.environment[environment], !value.isEmpty {
        given = Array(value.utf8)
    } else if let file {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw CommandFailure("cannot read the \(name) file \(file)")
        }
        given = Array(text.trimmingCharacters(in: .whitespacesAndNewlines).utf8)
    }
    if let given, given.count < 32 { throw CommandFailure("the \(name) must be at least 32 bytes") }
    return given
}

/// Log lines to stderr at `levelName` (trace … critical).
func bootstrapLogging(_ levelName: String) throws -> Logger.Level {
    guard let level = Logger.Level(rawValue: levelName) else { throw CommandFailure("unknown log level \(levelName)") }
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = level
        return handler
    }
    return level
}
