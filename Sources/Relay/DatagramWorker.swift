internal import CDatagram
import DatagramPump
import Foundation
import NIOCore
import RelayCore
import STUN
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A socket call that failed, with its errno.
struct SocketError: Error, CustomStringConvertible {
    let call: String
    let code: Int32

    init(_ call: String, code: Int32 = errno) {
        self.call = call
        self.code = code
    }

    var description: String { "\(call): \(String(cString: strerror(code)))" }
}

/// Raw UDP sockets for the data path: non-blocking, close-on-exec, no NIO channel.
enum UDPSocket {
    /// A UDP socket bound to `address`; `reusePort` lets several sockets share it (`SO_REUSEPORT`: the kernel
    /// spreads clients over them by 4-tuple hash); `bufferBytes` sets both socket buffers.
    static func bind(
        _ address: TransportAddress, reusePort: Bool = false, bufferBytes: Int32? = nil
    ) throws(SocketError) -> (fd: Int32, bound: TransportAddress) {
        let family = address.ip.isIPv4 ? AF_INET : AF_INET6
        let fd = socket(
            family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError("socket") }
        var one: Int32 = 1
        if reusePort { setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size)) }
        if family == AF_INET6 {
            // An IPv6 address means IPv6 only: IPv4 clients are served by an IPv4 socket of their own.
            setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        if var size = bufferBytes {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var storage = sockaddr_storage()
        let length = SocketAddressBytes.write(address, into: &storage)
        let bound = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, length) }
        }
        guard bound == 0 else {
            let error = SocketError("bind \(address)")
            close(fd)
            throw error
        }
        var local = sockaddr_storage()
        var localLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &localLength) }
        }
        return (fd, SocketAddressBytes.read(&local) ?? address)
    }
}

/// One of the relay's datagram threads (`--relay-threads`): it reads its own UDP server socket (one of N bound to
/// the TURN port with `SO_REUSEPORT`) and the relay sockets it owns, from one epoll set, with `recvmmsg` into fixed
/// slots, and sends with `sendmmsg`. Addresses stay raw `sockaddr`s, datagrams stay in their slots: ChannelData to
/// a peer is sent from the slot it arrived in, a peer's datagram gets its ChannelData header written in front of it
/// in place. Decisions are the shared ``RelayTables``', under their lock once per batch; the sends happen after it
/// is released.
final class DatagramWorker: @unchecked Sendable {
    let index: Int
    let serverFD: Int32
    let pollFD: Int32
    /// The server socket is bound to a wildcard address: read each client datagram's local address (IP_PKTINFO).
    let readsLocalAddress: Bool
    private let shared: SharedTables
    private let deliver: @Sendable ([(channel: any Channel, buffer: ByteBuffer)]) -> Void
    private let stopped = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)

    static let batch = 64
    /// Batches read from one socket before the others ready in the same pass get their turn.
    static let batchesPerSocket = 4
    /// How long a pass waits for a readable socket (the thread notices a stop, and lets retired sockets close).
    static let waitMilliseconds: Int32 = 100

    init(
        index: Int, serverFD: Int32, pollFD: Int32, readsLocalAddress: Bool = false, shared: SharedTables,
        deliver: @escaping @Sendable ([(channel: any Channel, buffer: ByteBuffer)]) -> Void
    ) {
        self.index = index
        self.serverFD = serverFD
        self.pollFD = pollFD
        self.readsLocalAddress = readsLocalAddress
        self.shared = shared
        self.deliver = deliver
    }

    func start() {
        let thread = Thread { [self] in
            self.loop()
            self.finished.signal()
        }
        thread.name = "switchboard.relay-\(index)"
        thread.start()
    }

    func stop() { stopped.store(true, ordering: .relaxed) }

    /// Returns once the thread has ended (within a pass after ``stop()``).
    func waitUntilEnded() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                self.finished.wait()
                continuation.resume()
            }
        }
    }

    private func loop() {
        let count = Self.batch
        let slots = UnsafeMutableRawPointer.allocate(byteCount: count * ReadSlots.slotSize, alignment: 16)
        let sources = UnsafeMutablePointer<sockaddr_storage>.allocate(capacity: count)
        let locals = UnsafeMutablePointer<sockaddr_storage>.allocate(capacity: count)
        let lengths = UnsafeMutablePointer<UInt32>.allocate(capacity: count)
        let truncated = UnsafeMutablePointer<Int32>.allocate(capacity: count)
        let tokens = UnsafeMutablePointer<UInt64>.allocate(capacity: count)
        let fds = UnsafeMutablePointer<Int32>.allocate(capacity: count)
        defer {
            slots.deallocate()
            sources.deallocate()
            locals.deallocate()
            lengths.deallocate()
            truncated.deallocate()
            tokens.deallocate()
            fds.deallocate()
        }
        let sender = DatagramSender()
        var outbox = Outbox()
        var counters = RelayCounters()
        while !stopped.load(ordering: .relaxed) {
            let ready = max(0, Int(sb_poll_wait(pollFD, tokens, Int32(count), Self.waitMilliseconds)))
            // A new pass: no descriptor looked up before it is used after it.
            shared.withLock { tables in
                tables.observe(worker: index)
                tables.counters.merge(counters)
                for slot in 0..<ready {
                    fds[slot] = tokens[slot] == 0 ? serverFD : (tables.fd(of: tokens[slot]) ?? -1)
                }
            }
            counters = RelayCounters()
            for slot in 0..<ready where fds[slot] >= 0 {
                let token = tokens[slot]
                // Local addresses only where they tell something: client datagrams on a wildcard server socket.
                let localsWanted = token == 0 && readsLocalAddress ? locals : nil
                for _ in 0..<Self.batchesPerSocket {
                    let got = Int(
                        sb_recv_batch_at(
                            fds[slot], slots, ReadSlots.slotSize, ReadSlots.headroom, UInt32(count), sources,
                            localsWanted, lengths, truncated))
                    // Nothing queued, or an error (an ICMP error reported on a relay socket): next socket.
                    guard got > 0 else { break }
                    let read = ReadSlots(
                        slots: slots, sources: sources, locals: localsWanted, lengths: lengths, truncated: truncated,
                        count: got)
                    let now = RelayTime.now()
                    shared.withLock { tables in
                        if token == 0 {
                            tables.fromClients(read, worker: index, replyFD: serverFD, now: now, into: &outbox)
                        } else {
                            tables.fromPeers(token: token, read, replyFD: serverFD, now: now, into: &outbox)
                        }
                    }
                    outbox.sendDatagrams(with: sender, counters: &counters)
                    if !outbox.streams.isEmpty {
                        deliver(outbox.streams)
                        outbox.streams.removeAll(keepingCapacity: true)
                    }
                    for channel in outbox.closes { channel.close(promise: nil) }
                    outbox.closes.removeAll()
                    if got < count { break }
                }
            }
        }
        shared.withLock { $0.counters.merge(counters) }
    }
}
