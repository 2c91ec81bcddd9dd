import DTLSSRTP
import Foundation
import Glibc
import Testing

/// The engine against a DTLS peer no one here wrote: `openssl s_server` / `s_client` over real UDP on loopback,
/// both roles, each profile, with the peers' exported keying material (`-keymatexport EXTRACTOR-dtls_srtp`)
/// compared byte for byte with the engine's split keys.
@Suite(.serialized) struct OpenSSLInteropTests {
    @Test(arguments: SRTPProfile.allCases)
    func engineAsClientAgainstOpenSSLServer(profile: SRTPProfile) async throws {
        let result = try await onThread { () throws -> (SRTPKeyingMaterial, [UInt8]) in
            let serverIdentity = try DTLSIdentity.generate()
            let files = try PEMFiles(serverIdentity)
            defer { files.remove() }
            let socket = try UDPSocket()
            let port = try UDPSocket.freePort()
            let server = try OpenSSLProcess([
                "s_server", "-dtls1_2", "-accept", "127.0.0.1:\(port)", "-cert", files.certificate, "-key", files.key,
                "-use_srtp", profile.openSSLName, "-keymatexport", "EXTRACTOR-dtls_srtp",
                "-keymatexportlen", String(profile.keyingMaterialLength), "-naccept", "1",
            ])
            defer { server.stop() }
            try server.waitForLine(containing: "ACCEPT")
            let engine = try DTLSEngine(
                .init(
                    role: .client, identity: try DTLSIdentity.generate(),
                    remoteFingerprint: serverIdentity.fingerprint()))
            try socket.pump(engine, first: try engine.start(), peerPort: port)
            let line = try server.waitForLine(containing: "Keying material:")
            guard case .established(let keys) = engine.state else { throw TestError("not established") }
            return (keys, try hexBytes(after: "Keying material:", in: line))
        }
        let (keys, exported) = result
        #expect(keys.profile == profile)
        #expect(keys.localKey + keys.remoteKey + keys.localSalt + keys.remoteSalt == exported)
    }

    @Test(arguments: SRTPProfile.allCases)
    func engineAsServerAgainstOpenSSLClient(profile: SRTPProfile) async throws {
        let result = try await onThread { () throws -> (SRTPKeyingMaterial, [UInt8]) in
            let clientIdentity = try DTLSIdentity.generate()
            let files = try PEMFiles(clientIdentity)
            defer { files.remove() }
            let socket = try UDPSocket()
            let engine = try DTLSEngine(
                .init(
                    role: .server, identity: try DTLSIdentity.generate(),
                    remoteFingerprint: clientIdentity.fingerprint()))
            let client = try OpenSSLProcess([
                "s_client", "-dtls1_2", "-connect", "127.0.0.1:\(socket.port)", "-cert", files.certificate, "-key",
                files.key, "-use_srtp", profile.openSSLName, "-keymatexport", "EXTRACTOR-dtls_srtp",
                "-keymatexportlen", String(profile.keyingMaterialLength),
            ])
            defer { client.stop() }
            try socket.pump(engine, first: [], peerPort: nil)
            let line = try client.waitForLine(containing: "Keying material:")
            guard case .established(let keys) = engine.state else { throw TestError("not established") }
            return (keys, try hexBytes(after: "Keying material:", in: line))
        }
        let (keys, exported) = result
        #expect(keys.profile == profile)
        // The client's keys come first in the export: for the server they are the remote ones.
        #expect(keys.remoteKey + keys.localKey + keys.remoteSalt + keys.localSalt == exported)
    }
}

struct TestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Runs blocking socket and process work on a thread of its own, off the cooperative pool.
func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
    }
}

func hexBytes(after marker: String, in line: String) throws -> [UInt8] {
    guard let range = line.range(of: marker) else { throw TestError("no \(marker) in \(line)") }
    let hex = line[range.upperBound...].trimmingCharacters(in: .whitespaces)
    var bytes: [UInt8] = []
    var index = hex.startIndex
    while index < hex.endIndex, let next = hex.index(index, offsetBy: 2, limitedBy: hex.endIndex) {
        guard let byte = UInt8(hex[index..<next], radix: 16) else { throw TestError("bad hex in \(line)") }
        bytes.append(byte)
        index = next
    }
    return bytes
}

/// An identity written to temporary PEM files for the openssl command.
struct PEMFiles {
    let certificate: String
    let key: String

    init(_ identity: DTLSIdentity) throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("dtls-\(UUID().uuidString)").path
        certificate = base + "-cert.pem"
        key = base + "-key.pem"
        try identity.certificatePEM.write(toFile: certificate, atomically: true, encoding: .utf8)
        try identity.privateKeyPEM.write(toFile: key, atomically: true, encoding: .utf8)
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: certificate)
        try? FileManager.default.removeItem(atPath: key)
    }
}

/// An `openssl` subcommand whose stdout is read line by line; stdin stays open so s_client keeps its session.
final class OpenSSLProcess: @unchecked Sendable {
    private let process = Process()
    private let stdin = Pipe()
    private let output: FileHandle
    private var pending = Data()

    init(_ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        let stdout = Pipe()
        process.standardOutput = stdout
        process.standardError = stdout
        process.standardInput = stdin
        output = stdout.fileHandleForReading
        try process.run()
    }

    /// Reads until a line contains `text` (10 s at most).
    @discardableResult
    func waitForLine(containing text: String) throws -> String {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                pending.removeSubrange(pending.startIndex...newline)
                if line.contains(text) { return line }
            }
            var poller = pollfd(fd: output.fileDescriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 200) > 0 else { continue }
            let data = output.availableData
            if data.isEmpty { break }
            pending.append(data)
        }
        throw TestError("openssl \(process.arguments?.first ?? "") printed no line with '\(text)'")
    }

    func stop() {
        kill(process.processIdentifier, SIGKILL)
    }
}

/// A blocking UDP socket on 127.0.0.1.
final class UDPSocket {
    let fd: Int32
    let port: UInt16
    private var peer = sockaddr_in()

    init() throws {
        let descriptor = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard descriptor >= 0 else { throw TestError("socket failed") }
        var address = Self.loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0
            }
        }
        guard bound else {
            close(descriptor)
            throw TestError("bind failed")
        }
        fd = descriptor
        port = UInt16(bigEndian: address.sin_port)
    }

    deinit { close(fd) }

    static func loopback(port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = port.bigEndian
        return address
    }

    static func freePort() throws -> UInt16 { try UDPSocket().port }

    func send(_ datagram: [UInt8]) {
        var destination = peer
        _ = withUnsafePointer(to: &destination) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(fd, datagram, datagram.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }

    /// One datagram, remembering its sender as the peer; nil after `timeout` milliseconds.
    func receive(timeout: Int32) -> [UInt8]? {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, timeout) > 0 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var source = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let count = withUnsafeMutablePointer(to: &source) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                recvfrom(fd, &buffer, buffer.count, 0, $0, &length)
            }
        }
        guard count >= 0 else { return nil }
        peer = source
        return Array(buffer.prefix(count))
    }

    /// Exchanges datagrams between `engine` and the peer until the engine is established (10 s at most).
    func pump(_ engine: DTLSEngine, first: [[UInt8]], peerPort: UInt16?) throws {
        if let peerPort { peer = Self.loopback(port: peerPort) }
        for datagram in first { send(datagram) }
        let deadline = Date().addingTimeInterval(10)
        while !engine.isEstablished && Date() < deadline {
            guard let datagram = receive(timeout: 200) else { continue }
            for reply in try engine.receive(datagram) { send(reply) }
        }
        // Let the last flight reach the peer before anyone is stopped.
        guard engine.isEstablished else { throw TestError("the handshake did not complete") }
    }
}
