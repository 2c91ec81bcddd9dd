import ArgumentParser
import Foundation
import Logging
import Relay
import RelayCore
import STUN
import ServiceLifecycle
import SwitchboardAPI
import SwitchboardServer

/// The TURN relay's flags, shared by `serve` and `relay run`.
struct RelayOptions: ParsableArguments {
    @Option(help: "UDP address of the TURN server.") var turnHost: String = "127.0.0.1"
    @Option(help: "UDP port of the TURN server (0 picks a free one).") var turnPort: Int = 3478
    @Option(help: "TCP port of the TURN server on --turn-host (default: the UDP port's number; 0 picks a free one).")
    var turnTcpPort: Int?
    @Flag(help: "No TURN over TCP.") var noTurnTcp = false
    @Option(help: "TLS port of the TURN server on --turn-host (turns:; 443 is what restrictive networks let through).")
    var turnsPort: Int = 5349
    @Flag(help: "No TURN over TLS.") var noTurns = false
    @Option(
        help:
            "Address relay sockets bind to and that clients are told (default: --turn-host); one IPv4 and one IPv6 address (repeat the flag) offer IPv6 and dual-stack allocations."
    ) var relayIP: [String] = []
    @Option(help: "Address relay sockets bind to when clients must be told another (--relay-ip), e.g. behind 1:1 NAT.")
    var relayBindIP: String?
    @Option(help: "Port range of relayed addresses, LOW-HIGH.") var relayPorts: String = "49152-65535"
    @Option(help: "UDP relay threads, each with its own socket on the TURN port (default: one per core).")
    var relayThreads: Int?
    @Option(help: "Long-term credential realm.") var realm: String = "switchboard"
    @Option(help: "TURN REST API shared secret (or env SWITCHBOARD_TURN_SECRET; default: the dev secret file).")
    var turnSecret: String?
    @Option(help: "File holding the TURN shared secret.") var turnSecretFile: String?
    @Option(help: "A static TURN user NAME:PASSWORD (repeatable).") var turnUser: [String] = []
    @Option(help: "A special-purpose peer range to allow anyway, e.g. 127.0.0.0/8 (repeatable).") var allowPeer:
        [String] = []
    @Option(help: "A peer range to refuse on top of the special-purpose ones (repeatable).") var denyPeer: [String] = []
    @Option(help: "Allocations one user may hold.") var maxAllocationsPerUser: Int = 10
    @Option(help: "Allocations the relay holds in all.") var maxAllocations: Int = 10_000
    @Option(help: "Longest allocation lifetime in seconds.") var maxLifetime: Int = 3600
    @Flag(help: "Accept RFC 5766 channel numbers 0x5000-0x7FFF too (older clients such as coturn's uclient).")
    var rfc5766Channels = false
    @Option(help: "Host name clients are given in turn: URLs (default: the relay IP).") var turnPublicHost: String?
    @Option(help: "Lifetime in seconds of the credentials /v1/turn-credentials issues.") var turnCredentialTtl: Int =
        3600

    /// - Parameter requireSecret: refuse to fall back to the dev secret file (a production server whose relays run
    ///   elsewhere must be given the shared secret, not make one up).
    func settings(certsDir: String, requireSecret: Bool = false) throws -> RelaySettings {
        var relayAddresses: [AddressFamily: IPAddress] = [:]
        // The first one given names the relay in turn: URLs.
        var firstAddress: IPAddress?
        for relayText in relayIP.isEmpty ? [turnHost] : relayIP {
            guard let address = IPAddress(relayText) else {
                throw CommandFailure("--relay-ip must be an IP address (got '\(relayText)')")
            }
            guard !address.isUnspecified else {
                throw CommandFailure(
                    "the relay listens on all addresses: give the address clients reach with --relay-ip")
            }
            guard relayAddresses.updateValue(address, forKey: address.family) == nil else {
                throw CommandFailure("--relay-ip takes at most one IPv4 and one IPv6 address")
            }
            if firstAddress == nil { firstAddress = address }
        }
        guard let relayAddress = firstAddress else { throw CommandFailure("--relay-ip must be an IP address") }
        let bounds = relayPorts.split(separator: "-").compactMap { Int($0) }
        guard bounds.count == 2, bounds[0] >= 1024, bounds[0] <= bounds[1], bounds[1] <= 65535 else {
            throw CommandFailure("--relay-ports must be LOW-HIGH within 1024-65535 (got '\(relayPorts)')")
        }
        var users: [String: String] = [:]
        for entry in turnUser {
            guard let colon = entry.firstIndex(of: ":"), colon != entry.startIndex else {
                throw CommandFailure("--turn-user must be NAME:PASSWORD")
            }
            users[String(entry[..<colon])] = String(entry[entry.index(after: colon)...])
        }
        func ranges(_ texts: [String], _ flag: String) throws -> [CIDR] {
            try texts.map { text in
                guard
                    let range = CIDR(text) ?? IPAddress(text).flatMap({ CIDR(network: $0, prefixLength: $0.bitWidth) })
                else { throw CommandFailure("\(flag) takes an address or CIDR range (got '\(text)')") }
                return range
            }
        }
        guard maxAllocationsPerUser > 0, maxAllocations > 0, maxLifetime >= 600, turnCredentialTtl > 0 else {
            throw CommandFailure("allocation limits must be positive and --max-lifetime at least 600")
        }
        var bindAddress: IPAddress?
        if let relayBindIP {
            guard let parsed = IPAddress(relayBindIP), relayAddresses[parsed.family] != nil else {
                throw CommandFailure("--relay-bind-ip must be an IP address of a --relay-ip family")
            }
            bindAddress = parsed
        }
        var core = RelayConfiguration(
            realm: realm, staticUsers: users,
            sharedSecrets: [try secret(certsDir: certsDir, requireSecret: requireSecret)],
            relayAddresses: relayAddresses, maximumLifetime: .seconds(maxLifetime),
            maximumAllocationsPerUser: maxAllocationsPerUser, maximumAllocations: maxAllocations,
            peerPolicy: PeerPolicy(
                allowed: try ranges(allowPeer, "--allow-peer"), denied: try ranges(denyPeer, "--deny-peer")),
            channelNumbers: rfc5766Channels
                ? RelayConfiguration.rfc5766ChannelNumbers : RelayConfiguration.rfc8656ChannelNumbers)
        core.software = "Switchboard"
        for (flag, port) in [
            ("--turn-port", turnPort), ("--turn-tcp-port", turnTcpPort ?? 0), ("--turns-port", turnsPort),
        ]
        where !(0...65535).contains(port) {
            throw CommandFailure("\(flag) must be a port number, 0-65535 (got \(port))")
        }
        if let relayThreads, !(1...256).contains(relayThreads) {
            throw CommandFailure("--relay-threads must be 1-256 (got \(relayThreads))")
        }
        var server = RelayServerConfiguration(
            host: turnHost, port: turnPort, relayPorts: bounds[0]...bounds[1], relayBindAddress: bindAddress,
            core: core,
            tcpPort: noTurnTcp ? nil : (turnTcpPort ?? turnPort)
        )
        if let relayThreads { server.threads = relayThreads }
        return RelaySettings(
            server: server, publicHost: turnPublicHost ?? relayAddress.description, credentialTTL: turnCredentialTtl,
            turnsPort: noTurns ? nil : turnsPort)
    }

    private func secret(certsDir: String, requireSecret: Bool) throws -> [UInt8] {
        if let given = try givenSecret(
            flag: turnSecret, environment: "SWITCHBOARD_TURN_SECRET", file: turnSecretFile, name: "TURN secret")
        {
            return given
        }
        if requireSecret {
            throw CommandFailure(
                "give the TURN shared secret (SWITCHBOARD_TURN_SECRET, --turn-secret-file or --turn-secret), or --no-relay"
            )
        }
        return try DevCertificates(directory: certsDir).turnSecret()
    }
}

struct RelayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relay", abstract: "The TURN relay: run it alone, or list a server's allocations.",
        subcommands: [Run.self, Allocations.self], defaultSubcommand: Run.self)

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run only the TURN relay (UDP, TCP and TLS), sharing its secret with the signaling servers.")
        @OptionGroup var relay: RelayOptions
        @Option(help: "Directory of the dev secrets.") var certsDir: String = "certs"
        @Option(help: "PEM certificate chain for TURN over TLS (with --key; without both, no TLS).") var cert: String?
        @Option(help: "PEM private key for TURN over TLS.") var key: String?
        @Option(
            help: ArgumentHelp(
                "The cluster's PostgreSQL store (postgres://…, or env SWITCHBOARD_DATABASE_URL), to end call-scoped allocations when their call ends.",
                discussion:
                    "Without it, call-scoped credentials (/v1/turn-credentials?call=ID) live out their expiry here."))
        var store: String?
        @Option(help: "Log level.") var logLevel: String = "info"

        func run() async throws {
            try await failingCleanly {
                _ = try bootstrapLogging(logLevel)
                let settings = try relay.settings(certsDir: certsDir)
                let logger = Logger(label: "switchboard.relay")
                var configuration = settings.server
                switch (cert, key, settings.turnsPort) {
                case (let cert?, let key?, let port?):
                    do {
                        configuration.tls = (
                            port, try RelayServerConfiguration.tlsContext(certificatePath: cert, keyPath: key)
                        )
                    } catch {
                        throw CommandFailure("cannot load the TLS certificate \(cert) or key \(key): \(error)")
                    }
                case (nil, nil, _), (_, _, nil):
                    if settings.turnsPort != nil {
                        logger.notice("TURN over TLS off: give --cert and --key to serve it")
                    }
                default:
                    throw CommandFailure("--cert and --key go together")
                }
                let server = RelayServer(configuration: configuration, logger: logger)
                var following: CallScopedRelay.Following?
                if let url = store ?? ProcessInfo.processInfo.environment["SWITCHBOARD_DATABASE_URL"] {
                    guard url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") else {
                        throw CommandFailure("--store must be a postgres:// URL (the cluster's store)")
                    }
                    do {
                        following = try await CallScopedRelay.follow(url: url, relay: server, logger: logger)
                    } catch {
                        // The URL may hold a password: never print it.
                        throw CommandFailure("cannot reach the PostgreSQL store: \(String(reflecting: error))")
                    }
                    logger.info("following the cluster store: call-scoped allocations end with their call")
                }
                defer { following?.stop() }
                let group = ServiceGroup(
                    configuration: .init(
                        services: [.init(service: server)], gracefulShutdownSignals: [.sigterm, .sigint],
                        logger: logger))
                try await group.run()
            }
        }
    }

    struct Allocations: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List a server's live relay allocations (admin token).")
        @OptionGroup var client: ClientOptions
        @Flag(help: "Print the server's JSON.") var json = false

        func run() async throws {
            try await failingCleanly {
                let list = try await client.get("/v1/relay/allocations", as: AllocationListJSON.self)
                if json { return print(String(decoding: try JSONEncoder.pretty.encode(list), as: UTF8.self)) }
                let header = ["ID", "USER", "CLIENT", "RELAYED", "PEERS", "AGE", "BYTES OUT/IN"]
                let rows = list.allocations.map { allocation in
                    [
                        allocation.id, allocation.user, "\(allocation.transport ?? "udp") \(allocation.client)",
                        allocation.relayed,
                        allocation.permissions.joined(separator: ","), "\(allocation.ageSeconds)s",
                        "\(allocation.bytesToPeers)/\(allocation.bytesFromPeers)",
                    ]
                }
                print(Table.render([header] + rows))
            }
        }
    }
}
