import Foundation
import NIOCore
import NIOHTTP1
import SwitchboardServer
import Testing

/// The database goes away mid-run: requests fail fast with 503 `store_unavailable`, `/healthz` says so, and the
/// node recovers by itself once the database is back, streams included.
@Suite(.serialized, .enabled(if: ClusterDatabase.serverURL != nil, "needs SWITCHBOARD_TEST_DATABASE_URL"))
struct StoreOutageTests {
    @Test func aDatabaseThatGoesAwayGives503AndTheNodeRecovers() async throws {
        let database = try await ClusterDatabase.create()
        defer { database.drop() }
        let target = try #require(URLComponents(string: database.url))
        let proxy = try TCPProxy(targetPort: try #require(target.port))
        defer { proxy.close() }
        var through = target
        through.port = proxy.port
        let url = try #require(through.string)
        try await TestServer.with({ $0.store = .postgres(url: url) }) { server in
            let health = try await server.request(.GET, "/healthz")
            #expect(health.status == 200)
            #expect((health.json["store"] as? [String: Any])?["kind"] as? String == "postgres")
            let bob = try await server.stream("bob", device: "b1")
            try await bob.expect("hello")
            #expect(try await server.invite("alice", to: "bob").status == 201)
            try await bob.expect("call.invite")

            proxy.cut()
            let started = ContinuousClock.now
            let refused = try await server.invite("carol", to: "dave")
            #expect(refused.status == 503)
            #expect(refused.errorCode == "store_unavailable")
            #expect(ContinuousClock.now - started < .seconds(10), "fails within the store's timeout")
            let down = try await server.request(.GET, "/healthz")
            #expect(down.status == 503)
            #expect((down.json["error"] as? [String: Any])?["code"] as? String == "store_unavailable")
            #expect(try await server.request(.GET, "/v1/calls", token: await server.token("alice")).status == 503)

            proxy.restore()
            // The pool reconnects on the next request: the first that succeeds proves it.
            var recovered = false
            for _ in 0..<50 where !recovered {
                recovered = try await server.request(.GET, "/healthz").status == 200
            }
            #expect(recovered)
            #expect(try await server.invite("erin", to: "bob").status == 201)
            // The stream that was open all along hears the new call once the listener is back.
            try await bob.expect("call.invite", timeout: 15)
            bob.close()
        }
    }
}

/// A loopback TCP proxy to a port, which can cut every connection and refuse new ones, then let them through again.
final class TCPProxy: @unchecked Sendable {
    let port: Int
    private let listener: Int32
    private let lock = NSLock()
    private var open: [Int32] = []
    private var refusing = false
    private var closed = false

    init(targetPort: Int) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = Self.loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard bound, listen(fd, 64) == 0 else { throw TestFailure("proxy cannot listen") }
        listener = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread.detachNewThread { [self] in accept(to: targetPort) }
    }

    static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return address
    }

    private func accept(to targetPort: Int) {
        while true {
            let client = Glibc.accept(listener, nil, nil)
            guard client >= 0 else { return }
            let refuse = lock.withLock { refusing || closed }
            guard !refuse else {
                Glibc.close(client)
                continue
            }
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = Self.loopback(port: targetPort)
            let connected = withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
                }
            }
            guard connected else {
                Glibc.close(client)
                Glibc.close(upstream)
                continue
            }
            lock.withLock { open += [client, upstream] }
            Thread.detachNewThread { Self.pump(from: client, to: upstream) }
            Thread.detachNewThread { Self.pump(from: upstream, to: client) }
        }
    }

    private static func pump(from source: Int32, to destination: Int32) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(source, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { break }
            var sent = 0
            while sent < count {
                let written = buffer.withUnsafeBytes {
                    send(destination, $0.baseAddress! + sent, count - sent, Int32(MSG_NOSIGNAL))
                }
                guard written > 0 else { break }
                sent += written
            }
            guard sent == count else { break }
        }
        shutdown(source, Int32(SHUT_RDWR))
        shutdown(destination, Int32(SHUT_RDWR))
    }

    /// Cuts every open connection and refuses new ones.
    func cut() {
        let sockets = lock.withLock {
            refusing = true
            defer { open.removeAll() }
            return open
        }
        for fd in sockets { shutdown(fd, Int32(SHUT_RDWR)) }
    }

    func restore() { lock.withLock { refusing = false } }

    func close() {
        cut()
        lock.withLock { closed = true }
        shutdown(listener, Int32(SHUT_RDWR))
        Glibc.close(listener)
    }
}
