import AsyncHTTPClient
import Foundation
import Logging
import Media
import NIOCore
import NIOHTTP1
import NIOSSL
import Relay
import ServiceLifecycle
import SwitchboardAPI
import SwitchboardServer
import Synchronization
import Testing

/// A real Switchboard server on an ephemeral loopback port with TLS, its own CA, and a client that trusts it.
final class TestServer: Sendable {
    let port: Int
    let directory: URL
    let caPath: String
    let authority: TokenAuthority
    let logs: LogCollector
    let client: HTTPClient
    /// The secure relay's media endpoint and its bound port, when the configuration runs one.
    let media: MediaServer?
    let mediaPort: Int?
    /// The TURN relay, when the configuration runs one.
    let relay: RelayServer?
    /// The in-process server's services; nil for a server in another process (``attach(port:directory:caPath:secret:)``).
    private let group: ServiceGroup?
    private let task: Task<Void, any Error>?

    var baseURL: String { "https://127.0.0.1:\(port)" }

    /// `clock` is the server's time (tokens, rate limits, deadlines): a fixed one makes a test independent of how
    /// fast the machine runs it.
    static func start(
        _ configure: (inout ServerConfiguration) -> Void = { _ in }, clock: @escaping @Sendable () -> Date = { Date() }
    ) async throws -> TestServer {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "switchboard-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let material = try DevCertificates.make()
        let caPath = directory.appendingPathComponent("ca.pem").path
        try material.caPEM.write(toFile: caPath, atomically: true, encoding: .utf8)
        try material.certificatePEM.write(
            toFile: directory.appendingPathComponent("cert.pem").path, atomically: true, encoding: .utf8)
        try material.privateKeyPEM.write(
            toFile: directory.appendingPathComponent("key.pem").path, atomically: true, encoding: .utf8)

        let secret = Array("test-secret-\(UUID().uuidString)".utf8)
        var configuration = ServerConfiguration(tokenSecret: secret)
        configuration.host = "127.0.0.1"
        configuration.port = 0
        configuration.certificatePath = directory.appendingPathComponent("cert.pem").path
        configuration.privateKeyPath = directory.appendingPathComponent("key.pem").path
        configuration.rateLimitPerSecond = 0
        configuration.unauthenticatedRateLimitPerSecond = 0
        configuration.media?.port = 0
        configure(&configuration)

        let logs = LogCollector()
        var logger = Logger(label: "switchboard-test", factory: { _ in CollectingLogHandler(collector: logs) })
        logger.logLevel = .info
        let server = try await SwitchboardServer(configuration: configuration, logger: logger, clock: clock)
        let (ready, readyContinuation) = AsyncStream<Int>.makeStream()
        let group = ServiceGroup(
            configuration: .init(
                services: try server.services(onReady: { port in readyContinuation.yield(port) }).map {
                    .init(service: $0)
                },
                logger: logger))
        let task = Task { try await group.run() }
        var iterator = ready.makeAsyncIterator()
        guard let port = await iterator.next() else { throw TestFailure("server did not start") }
        let mediaPort = try await server.media?.boundPort()

        return TestServer(
            port: port, directory: directory, caPath: caPath, secret: secret, media: server.media, mediaPort: mediaPort,
            relay: server.relay, group: group, task: task, logs: logs)
    }

    /// A client of a `switchboard serve` running in another process, with the test's certificate and secret.
    static func attach(port: Int, directory: URL, caPath: String, secret: [UInt8]) -> TestServer {
        TestServer(
            port: port, directory: directory, caPath: caPath, secret: secret, media: nil, mediaPort: nil, relay: nil,
            group: nil, task: nil, logs: LogCollector())
    }

    private convenience init(
        port: Int, directory: URL, caPath: String, secret: [UInt8], media: MediaServer?, mediaPort: Int?,
        relay: RelayServer?, group: ServiceGroup?, task: Task<Void, any Error>?, logs: LogCollector
    ) {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .file(caPath)
        // The server does not read a connection while it streams events, so it answers no close_notify there:
        // do not wait 5 s for it when a test drops its streams.
        tls.shutdownTimeout = .milliseconds(50)
        var clientConfiguration = HTTPClient.Configuration(tlsConfiguration: tls)
        clientConfiguration.connectionPool = .init(
            idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: 32)
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration)
        self.init(
            port: port, directory: directory, caPath: caPath, authority: TokenAuthority(secret: secret), logs: logs,
            client: client, media: media, mediaPort: mediaPort, relay: relay, group: group, task: task)
    }

    private init(
        port: Int, directory: URL, caPath: String, authority: TokenAuthority, logs: LogCollector, client: HTTPClient,
        media: MediaServer?, mediaPort: Int?, relay: RelayServer?, group: ServiceGroup?, task: Task<Void, any Error>?
    ) {
        self.media = media
        self.relay = relay
        self.mediaPort = mediaPort
        self.port = port
        self.directory = directory
        self.caPath = caPath
        self.authority = authority
        self.logs = logs
        self.client = client
        self.group = group
        self.task = task
    }

    func token(_ user: String, admin: Bool = false, device: String? = nil, ttl: TimeInterval = 600) async -> String {
        await authority.issue(Identity(user: user, isAdmin: admin, device: device), ttl: ttl)
    }

    /// Graceful shutdown, as SIGTERM would trigger it.
    func shutdown() async {
        await group?.triggerGracefulShutdown()
        _ = await task?.result
    }

    func stop() async {
        // The client goes first: a server closing a kept-alive TLS connection waits for the peer's close_notify.
        try? await client.shutdown()
        await shutdown()
        try? FileManager.default.removeItem(at: directory)
    }

    /// Runs `body` against a fresh server and always stops it.
    static func with<T>(
        _ configure: (inout ServerConfiguration) -> Void = { _ in },
        clock: @escaping @Sendable () -> Date = { Date() },
        _ body: (TestServer) async throws -> T
    ) async throws -> T {
        let server = try await start(configure, clock: clock)
        do {
            let result = try await body(server)
            await server.stop()
            return result
        } catch {
            await server.stop()
            throw error
        }
    }

    // MARK: Requests

    struct Reply: Sendable {
        let status: Int
        let headers: [(String, String)]
        let body: String

        var json: [String: Any] {
            (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:]
        }
        var call: [String: Any] { json["call"] as? [String: Any] ?? [:] }
        var callID: String { call["id"] as? String ?? "" }
        var errorCode: String? { (json["error"] as? [String: Any])?["code"] as? String }
        func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
    }

    @discardableResult
    func request(
        _ method: HTTPMethod,
        _ path: String,
        token: String? = nil,
        body: String? = nil,
        headers: [(String, String)] = []
    ) async throws -> Reply {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
        }
        let response = try await client.execute(request, timeout: .seconds(20))
        let collected = try await response.body.collect(upTo: 8 << 20)
        return Reply(
            status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) },
            body: String(buffer: collected))
    }

    @discardableResult
    func post(_ path: String, token: String, json: [String: Any]) async throws -> Reply {
        let data = try JSONSerialization.data(withJSONObject: json)
        return try await request(.POST, path, token: token, body: String(decoding: data, as: UTF8.self))
    }

    /// `POST /v1/calls` from `caller` on `device` to `callee`, with `media` (`secure-relay`) when given.
    @discardableResult
    func invite(
        _ caller: String, device: String = "d1", to callee: String, offer: String? = nil, media: String? = nil
    ) async throws -> Reply {
        var body: [String: Any] = ["to": callee, "device": device]
        if let offer { body["sdp"] = ["type": "offer", "sdp": offer] }
        if let media { body["media"] = media }
        return try await post("/v1/calls", token: token(caller), json: body)
    }

    @discardableResult
    func act(_ action: String, _ id: String, as user: String, device: String = "d1", extra: [String: Any] = [:])
        async throws -> Reply
    {
        var body: [String: Any] = ["device": device]
        for (key, value) in extra { body[key] = value }
        return try await post("/v1/calls/\(id)/\(action)", token: token(user), json: body)
    }

    func metrics() async throws -> String {
        try await request(.GET, "/metrics").body
    }

    /// The value of one metric line, e.g. `switchboard_calls{state="active"}`.
    func metric(_ name: String) async throws -> Double? {
        let text = try await metrics()
        for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.dropFirst(name.count + 1))
        }
        return nil
    }

    /// Opens one stream per (user, device) and reads each one's `hello`.
    func helloStreams(_ devices: [(user: String, device: String)]) async throws -> [EventStreamClient] {
        var streams: [EventStreamClient] = []
        for (user, device) in devices {
            let opened = try await stream(user, device: device)
            streams.append(opened)
            try await opened.expect("hello")
        }
        return streams
    }

    /// Opens an event stream with async-http-client.
    func stream(
        _ user: String, device: String? = "d1", lastEventID: String? = nil, token: String? = nil, query: String = ""
    ) async throws -> EventStreamClient {
        var path = "/v1/events"
        var items: [String] = []
        if let device { items.append("device=\(device)") }
        if !query.isEmpty { items.append(query) }
        if !items.isEmpty { path += "?" + items.joined(separator: "&") }
        var request = HTTPClientRequest(url: baseURL + path)
        let bearer: String
        if let token { bearer = token } else { bearer = await self.token(user) }
        request.headers.add(name: "Authorization", value: "Bearer \(bearer)")
        request.headers.add(name: "Accept", value: "text/event-stream")
        if let lastEventID { request.headers.add(name: "Last-Event-ID", value: lastEventID) }
        let response = try await client.execute(request, deadline: .distantFuture)
        return EventStreamClient(response: response)
    }
}

/// The next element of a single-consumer stream, or nil at its end; fails after `timeout` seconds.
func nextElement<T: Sendable>(of stream: AsyncStream<T>, timeout: Double) async throws -> T? {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask {
            var iterator = stream.makeAsyncIterator()
            return await iterator.next()
        }
        group.addTask {
            try await Task.sleep(for: .seconds(timeout))
            throw TestFailure("nothing arrived within \(timeout) s")
        }
        let first = try await group.next()!
        group.cancelAll()
        return first
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Reads an SSE response in the background and hands out its events in order.
final class EventStreamClient: Sendable {
    let status: Int
    let contentType: String?
    private let events: AsyncStream<SSEParser.Event>
    private let reader: Task<Void, Never>
    private let state = LockedBox<(lastID: String?, retry: Int?, comments: Int, ended: Bool)>((nil, nil, 0, false))

    init(response: HTTPClientResponse) {
        status = Int(response.status.code)
        contentType = response.headers.first(name: "content-type")
        let (events, continuation) = AsyncStream<SSEParser.Event>.makeStream()
        self.events = events
        let state = self.state
        reader = Task {
            var parser = SSEParser()
            do {
                for try await chunk in response.body {
                    for event in parser.feed(chunk.readableBytesView) {
                        // The id is recorded before the event is handed out: a test that reads `lastEventID` right
                        // after an event must see that event's id, not the one before it.
                        if let id = event.id { state.withLock { $0.lastID = id } }
                        continuation.yield(event)
                    }
                    let snapshot = parser
                    state.withLock { $0 = (snapshot.lastEventID, snapshot.retry, snapshot.comments, false) }
                }
            } catch {}
            state.withLock { $0.ended = true }
            continuation.finish()
        }
    }

    var lastEventID: String? { state.withLock { $0.lastID } }
    var retry: Int? { state.withLock { $0.retry } }
    var comments: Int { state.withLock { $0.comments } }

    /// The next event, or nil when the stream ended; fails after `timeout` seconds.
    func next(timeout: Double = 10) async throws -> SSEParser.Event? {
        try await nextElement(of: events, timeout: timeout)
    }

    /// The next event, which must be named `name`; returns its JSON data.
    @discardableResult
    func expect(_ name: String, timeout: Double = 10, sourceLocation: SourceLocation = #_sourceLocation) async throws
        -> [String: Any]
    {
        guard let event = try await next(timeout: timeout) else {
            Issue.record("stream ended while waiting for \(name)", sourceLocation: sourceLocation)
            throw TestFailure("stream ended")
        }
        #expect(event.name == name, "got \(event.name) \(event.data)", sourceLocation: sourceLocation)
        guard event.name == name else { throw TestFailure("expected \(name), got \(event.name)") }
        return (try? JSONSerialization.jsonObject(with: Data(event.data.utf8))) as? [String: Any] ?? [:]
    }

    /// Waits for the stream to end (the server closed it).
    func expectEnd(timeout: Double = 10) async throws {
        while let event = try await next(timeout: timeout) {
            Issue.record("unexpected event \(event.name) before the end")
        }
    }

    func close() {
        reader.cancel()
    }
}

/// A value behind a lock, shareable between tasks.
final class LockedBox<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<T>(_ body: (inout Value) -> T) -> T { mutex.withLock { body(&$0) } }
}

/// Log records of one test server, to prove what is and is not logged.
final class LogCollector: Sendable {
    private let lines = Mutex<[String]>([])
    func append(_ line: String) { lines.withLock { $0.append(line) } }
    var all: [String] { lines.withLock { $0 } }
}

struct CollectingLogHandler: LogHandler {
    let collector: LogCollector
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        let rendered = all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        collector.append("\(event.level) \(event.message) \(rendered) \(event.source)")
    }
}

/// Real browser SDP captured for the core tests (Tests/SwitchboardCoreTests/Fixtures/sdp).
enum Fixture {
    static func sdp(_ name: String) throws -> String {
        try String(contentsOfFile: path(name), encoding: .utf8)
    }

    /// The file of the SDP fixture `name`.
    static func path(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("SwitchboardCoreTests/Fixtures/sdp/\(name).sdp").path
    }
}

/// A program whose output is read on a thread of its own and handed out as parsed elements, as they come.
final class StreamingProcess<Element: Sendable>: Sendable {
    let process: Process
    private let elements: AsyncStream<Element>

    init<State: Sendable>(
        _ path: String,
        _ arguments: [String],
        state: State,
        mergeStandardError: Bool = false,
        feed: @escaping @Sendable (inout State, Data) -> [Element]
    ) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = mergeStandardError ? pipe : FileHandle.nullDevice
        let (elements, continuation) = AsyncStream<Element>.makeStream()
        self.elements = elements
        try process.run()
        let handle = pipe.fileHandleForReading
        Thread.detachNewThread {
            var state = state
            while true {
                let data = handle.availableData
                if data.isEmpty { break }
                for element in feed(&state, data) { continuation.yield(element) }
            }
            continuation.finish()
        }
        self.process = process
    }

    func next(timeout: Double = 10) async throws -> Element? {
        try await nextElement(of: elements, timeout: timeout)
    }

    func stop() {
        // SIGKILL: a child spawned from a worker thread may inherit a mask that blocks SIGTERM.
        kill(process.processIdentifier, SIGKILL)
    }
}

/// A `curl -N` reading an event stream, as a real client no one here wrote.
final class CurlStream: Sendable {
    private let output: StreamingProcess<SSEParser.Event>

    init(url: String, caPath: String, headers: [String] = [], extraArguments: [String] = []) throws {
        var arguments = ["-sS", "-N", "--cacert", caPath, "-H", "Accept: text/event-stream"]
        for header in headers { arguments += ["-H", header] }
        output = try StreamingProcess(
            "/usr/bin/curl", arguments + extraArguments + [url], state: SSEParser(),
            feed: { parser, data in parser.feed(data) })
    }

    func next(timeout: Double = 10) async throws -> SSEParser.Event? {
        try await output.next(timeout: timeout)
    }

    @discardableResult
    func expect(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) async throws -> [String: Any] {
        let event = try await next()
        #expect(event?.name == name, "got \(event?.name ?? "end") \(event?.data ?? "")", sourceLocation: sourceLocation)
        guard let event, event.name == name else { throw TestFailure("expected \(name)") }
        return (try? JSONSerialization.jsonObject(with: Data(event.data.utf8))) as? [String: Any] ?? [:]
    }

    func stop() { output.stop() }
}
