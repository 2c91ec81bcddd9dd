import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOSSL
import SwitchboardAPI

/// How the CLI reaches a running server.
struct ClientOptions: ParsableArguments {
    @Option(help: "Server URL (or env SWITCHBOARD_SERVER).") var server: String?
    @Option(help: "Bearer token (or env SWITCHBOARD_TOKEN).") var token: String?
    @Option(help: "CA certificate to trust (or env SWITCHBOARD_CA; default certs/dev-ca.pem when present).") var ca:
        String?
    @Flag(help: "Do not verify the server certificate.") var insecure = false

    var environment: [String: String] { ProcessInfo.processInfo.environment }

    func baseURL() -> String {
        let url = server ?? environment["SWITCHBOARD_SERVER"] ?? "https://127.0.0.1:8443"
        return url.hasSuffix("/") ? String(url.dropLast()) : url
    }

    func bearer() throws -> String {
        guard let token = token ?? environment["SWITCHBOARD_TOKEN"], !token.isEmpty else {
            throw CommandFailure(
                "no token: pass --token or set SWITCHBOARD_TOKEN (mint one with `switchboard token issue`)")
        }
        return token
    }

    func makeClient() throws -> HTTPClient {
        guard baseURL().lowercased().hasPrefix("https://") else {
            throw CommandFailure("the server URL must be https://")
        }
        var tls = TLSConfiguration.makeClientConfiguration()
        if insecure {
            tls.certificateVerification = .none
        } else if let ca = ca ?? environment["SWITCHBOARD_CA"] {
            guard FileManager.default.fileExists(atPath: ca) else { throw CommandFailure("CA file \(ca) not found") }
            tls.trustRoots = .file(ca)
        } else if FileManager.default.fileExists(atPath: "certs/dev-ca.pem") {
            tls.trustRoots = .file("certs/dev-ca.pem")
        }
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.timeout.connect = .seconds(5)
        // A CLI should say at once that the server is not there, not retry until the timeout.
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    /// GETs `path` and decodes the JSON answer, or fails with the server's error message.
    func get<T: Decodable>(_ path: String, as type: T.Type) async throws -> T {
        let client = try makeClient()
        do {
            var request = HTTPClientRequest(url: baseURL() + path)
            request.headers.add(name: "Authorization", value: "Bearer \(try bearer())")
            let response = try await client.execute(request, timeout: .seconds(15))
            let body = try await response.body.collect(upTo: 16 << 20)
            try await client.shutdown()
            guard response.status == .ok else {
                throw CommandFailure(Self.describe(status: response.status.code, body))
            }
            return try JSONDecoder().decode(T.self, from: Data(body.readableBytesView))
        } catch {
            try? await client.shutdown()
            throw Self.clean(error, baseURL())
        }
    }

    static func describe(status: UInt, _ body: ByteBuffer) -> String {
        struct ErrorBody: Decodable {
            struct Detail: Decodable {
                let code: String
                let message: String
            }
            let error: Detail
        }
        if let decoded = try? JSONDecoder().decode(ErrorBody.self, from: Data(body.readableBytesView)) {
            return "server answered \(status) \(decoded.error.code): \(decoded.error.message)"
        }
        return "server answered \(status)"
    }

    static func clean(_ error: any Error, _ url: String) -> any Error {
        if error is CommandFailure || error is DecodingError { return error }
        return CommandFailure("cannot reach \(url): \(error)")
    }
}

struct Calls: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Inspect calls on a running server.", subcommands: [List.self, Show.self, Watch.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List calls (an admin token lists all calls).")
        @OptionGroup var client: ClientOptions
        @Option(help: "Only calls in these states (comma-separated: inviting,ringing,active,ended).") var state: String?
        @Option(help: "Calls per page (1-500).") var limit: Int = 50
        @Option(help: "Start after this cursor (the `next` a previous page printed).") var before: String?
        @Flag(help: "Print the server's JSON.") var json = false

        func run() async throws {
            try await failingCleanly {
                var items = [URLQueryItem(name: "limit", value: String(limit))]
                if let state { items.append(URLQueryItem(name: "state", value: state)) }
                if let before { items.append(URLQueryItem(name: "before", value: before)) }
                var components = URLComponents()
                components.queryItems = items
                let list = try await client.get(
                    "/v1/calls?" + (components.percentEncodedQuery ?? ""), as: CallListResponse.self)
                if json { return print(String(decoding: try JSONEncoder.pretty.encode(list), as: UTF8.self)) }
                var rows = [["ID", "STATE", "REASON", "CALLER", "CALLEE", "CREATED"]]
                for call in list.calls {
                    rows.append([
                        call.id, call.state.rawValue, call.endReason?.rawValue ?? "-", call.caller, call.callee,
                        call.createdAt,
                    ])
                }
                print(Table.render(rows))
                if let next = list.next { print("more: switchboard calls list --before \(next)") }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one call and its timeline.")
        @OptionGroup var client: ClientOptions
        @Argument(help: "Call id.") var id: String
        @Flag(help: "Print the server's JSON.") var json = false

        func run() async throws {
            try await failingCleanly {
                let path = "/v1/calls/" + (id.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? id)
                let view = try await client.get(path, as: CallResponse.self)
                if json { return print(String(decoding: try JSONEncoder.pretty.encode(view), as: UTF8.self)) }
                let call = view.call
                print("call     \(call.id)")
                print("from     \(call.caller)")
                print("to       \(call.callee)")
                print("state    \(call.state.rawValue)\(call.endReason.map { " (\($0.rawValue))" } ?? "")")
                print("created  \(call.createdAt)")
                if let answeredAt = call.answeredAt {
                    print("answered \(answeredAt)\(call.answeredBy.map { " on \($0)" } ?? "")")
                }
                if let endedAt = call.endedAt { print("ended    \(endedAt)") }
                if let media = call.media { print("media    \(media == .secureRelay ? "secure relay" : "direct")") }
                if let failure = call.failure { print("failure  \(failure)") }
                if let legs = call.mediaLegs, !legs.isEmpty {
                    print("")
                    var legRows = [
                        [
                            "LEG", "ICE", "DTLS", "SRTP", "VERIFIED", "PKTS IN", "BYTES IN", "PKTS OUT", "BYTES OUT",
                            "DROPPED",
                        ]
                    ]
                    for leg in legs {
                        let dropped = leg.dropped.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
                        legRows.append([
                            leg.party, leg.ice, leg.dtls, leg.srtpProfile ?? "-",
                            leg.fingerprintVerified ? "yes" : "no",
                            String(leg.packetsIn), String(leg.bytesIn), String(leg.packetsOut), String(leg.bytesOut),
                            dropped.isEmpty ? "-" : dropped.joined(separator: ","),
                        ])
                    }
                    print(Table.render(legRows))
                }
                print("")
                var rows = [["AT", "EVENT", "USER", "DEVICE", "REASON"]]
                for entry in call.timeline ?? [] {
                    rows.append([entry.at, entry.event, entry.user, entry.device ?? "-", entry.reason ?? "-"])
                }
                print(Table.render(rows))
            }
        }
    }

    struct Watch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print call events live from the event stream (--all: every call, admin token).")
        @OptionGroup var client: ClientOptions
        @Flag(help: "Watch every call's lifecycle (admin).") var all = false
        @Option(help: "Device id for this stream.") var device: String = "cli-watch"

        func run() async throws {
            try await failingCleanly {
                let http = try client.makeClient()
                do {
                    var request = HTTPClientRequest(
                        url: client.baseURL() + "/v1/events?device=\(device)" + (all ? "&scope=all" : ""))
                    request.headers.add(name: "Authorization", value: "Bearer \(try client.bearer())")
                    request.headers.add(name: "Accept", value: "text/event-stream")
                    let response = try await http.execute(request, deadline: .distantFuture)
                    guard response.status == .ok else {
                        let body = try await response.body.collect(upTo: 1 << 20)
                        throw CommandFailure(ClientOptions.describe(status: response.status.code, body))
                    }
                    emit(Table.row(["TIME", "EVENT", "CALL", "FROM", "TO", "STATE", "REASON"], widths: Watch.widths))
                    var parser = SSEParser()
                    streaming: for try await chunk in response.body {
                        for event in parser.feed(chunk.readableBytesView) {
                            if event.name == "shutdown" {
                                emit("server shut down")
                                break streaming
                            }
                            emit(Watch.line(for: event))
                        }
                    }
                    try await http.shutdown()
                } catch {
                    try? await http.shutdown()
                    throw ClientOptions.clean(error, client.baseURL())
                }
            }
        }

        static let widths = [24, 14, 22, 10, 10, 9, 18]

        static func line(for event: SSEParser.Event) -> String {
            let time = String(ISO8601DateFormatter().string(from: Date()))
            let data = Data(event.data.utf8)
            if let payload = try? JSONDecoder().decode(CallResponse.self, from: data) {
                let call = payload.call
                return Table.row(
                    [
                        time, event.name, call.id, call.caller, call.callee, call.state.rawValue,
                        call.endReason?.rawValue ?? "",
                    ],
                    widths: widths)
            }
            if let signal = try? JSONDecoder().decode(SignalEventJSON.self, from: data) {
                return Table.row(
                    [time, event.name, signal.callId, signal.from.user, "", signal.type.rawValue, ""], widths: widths)
            }
            return Table.row([time, event.name, "", "", "", "", ""], widths: widths)
        }
    }
}

/// Writes one line to stdout at once, unbuffered, so a pipe sees a live watch as it happens.
func emit(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

enum Table {
    static func render(_ rows: [[String]]) -> String {
        let widths = (0..<(rows.first?.count ?? 0)).map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row($0, widths: widths) }.joined(separator: "\n")
    }

    static func row(_ cells: [String], widths: [Int]) -> String {
        zip(cells, widths).map { cell, width in
            cell.padding(toLength: max(width, cell.count), withPad: " ", startingAt: 0)
        }
        .joined(separator: "  ").trimmingCharacters(in: .whitespaces)
    }
}

extension JSONEncoder {
    static var pretty: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return encoder
    }
}
