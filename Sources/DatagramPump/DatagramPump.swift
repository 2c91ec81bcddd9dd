package import CDatagram
import Foundation
public import STUN

#if canImport(Glibc)
    import Glibc
#endif

/// What a ``DatagramPump`` hands its handler: one read batch, and the writes queued while it is looked at.
///
/// Datagrams are read with `recvmmsg` into fixed slots (``slotSize`` bytes each, so a handler may grow a datagram
/// in place, e.g. by an SRTP tag); a datagram that did not fit its slot is flagged truncated by the kernel
/// (`MSG_TRUNC`), never guessed from its length. Writes queued with ``send(slot:length:to:)`` (in place, from a read
/// slot: no copy) or ``send(_:to:)`` go out with one `sendmmsg` when the batch is done.
public struct DatagramBatch {
    /// One received datagram.
    public struct Received {
        public let slot: Int
        public let length: Int
        public let source: TransportAddress
        /// The kernel cut it: it was longer than a slot.
        public let truncated: Bool
    }

    public static let slotSize = 2048

    let slots: UnsafeMutableRawPointer
    fileprivate(set) var received: [Received] = []
    fileprivate var writes: [(pointer: UnsafeRawPointer, length: Int, to: TransportAddress)] = []
    fileprivate var owned: [UnsafeMutableRawBufferPointer] = []

    /// The datagrams of this batch, in order.
    public var datagrams: [Received] { received }

    /// The bytes of read slot `slot` (``slotSize`` of them, the datagram first).
    public func buffer(_ slot: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: slots + slot * Self.slotSize, count: Self.slotSize)
    }

    /// Queues the first `length` bytes of read slot `slot` for `destination`.
    public mutating func send(slot: Int, length: Int, to destination: TransportAddress) {
        writes.append((UnsafeRawPointer(slots + slot * Self.slotSize), length, destination))
    }

    /// Queues a copy of `bytes` for `destination`.
    public mutating func send(_ bytes: [UInt8], to destination: TransportAddress) {
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 8)
        bytes.withUnsafeBytes { copy.copyMemory(from: $0) }
        owned.append(copy)
        writes.append((UnsafeRawPointer(copy.baseAddress!), bytes.count, destination))
    }
}

/// Handles what a ``DatagramPump`` reads, on the pump's own thread.
public protocol DatagramHandler: AnyObject, Sendable {
    /// One read batch: look at ``DatagramBatch/datagrams``, queue replies and forwards.
    func receive(_ batch: inout DatagramBatch)
    /// Called about every ``DatagramPump/tickInterval`` (timers), with a batch to queue writes in.
    func tick(_ batch: inout DatagramBatch)
    /// Writes that could not be sent because the socket's send buffer was full (dropped, never queued).
    func dropped(writes: Int)
}

/// One UDP socket served by its own thread: batched reads (`recvmmsg`), batched writes flushed once per read batch
/// (`sendmmsg`), and back-pressure by dropping what a full send buffer refuses. Addresses stay raw `sockaddr`s on
/// the data path (no strings, no per-datagram objects). The datagram pump of the secure relay; the TURN relay's
/// NIO path can move onto it.
public final class DatagramPump: @unchecked Sendable {
    public static let batchSize = 64
    public static let tickInterval: Duration = .milliseconds(100)

    /// The socket's bound address.
    public let localAddress: TransportAddress
    private let fd: Int32
    private let stopped = StopFlag()
    private var thread: Thread?

    /// Binds `host`:`port` (0 picks a free port).
    public init(host: String, port: Int, bufferBytes: Int32 = 4 << 20) throws {
        guard let ip = IPAddress(host) else { throw PumpError("not an IP address: \(host)") }
        let family = ip.isIPv4 ? AF_INET : AF_INET6
        let fd = socket(family, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw PumpError("socket: \(String(cString: strerror(errno)))") }
        // No SO_REUSEADDR: on Linux it would let a second UDP socket bind the same port and take its traffic.
        var size = bufferBytes
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        // Reads wake up at least every tick, for the timers and to notice a stop.
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var storage = sockaddr_storage()
        let length = SocketAddressBytes.write(TransportAddress(ip: ip, port: UInt16(clamping: port)), into: &storage)
        let bound = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw PumpError("bind \(host):\(port): \(reason)")
        }
        var local = sockaddr_storage()
        var localLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &localLength) }
        }
        self.fd = fd
        self.localAddress = SocketAddressBytes.read(&local) ?? TransportAddress(ip: ip, port: UInt16(clamping: port))
    }

    deinit {
        close(fd)
    }

    /// Starts the pump's thread.
    public func start(_ handler: any DatagramHandler) {
        let thread = Thread { [self] in self.loop(handler) }
        thread.name = "switchboard.datagram-pump"
        self.thread = thread
        thread.start()
    }

    /// Stops the thread (within a tick).
    public func stop() {
        stopped.set()
    }

    private func loop(_ handler: any DatagramHandler) {
        let count = Self.batchSize
        let slots = UnsafeMutableRawPointer.allocate(byteCount: count * DatagramBatch.slotSize, alignment: 16)
        let sources = UnsafeMutablePointer<sockaddr_storage>.allocate(capacity: count)
        let lengths = UnsafeMutablePointer<UInt32>.allocate(capacity: count)
        let truncated = UnsafeMutablePointer<Int32>.allocate(capacity: count)
        let sender = DatagramSender()
        defer {
            slots.deallocate()
            sources.deallocate()
            lengths.deallocate()
            truncated.deallocate()
        }
        var lastTick = ContinuousClock.now
        var batch = DatagramBatch(slots: slots)
        while !stopped.isSet {
            let got = sb_recv_batch(fd, slots, DatagramBatch.slotSize, UInt32(count), sources, lengths, truncated)
            batch.received.removeAll(keepingCapacity: true)
            if got > 0 {
                for index in 0..<Int(got) {
                    guard let source = SocketAddressBytes.read(sources + index) else { continue }
                    batch.received.append(
                        .init(
                            slot: index, length: Int(lengths[index]), source: source, truncated: truncated[index] != 0))
                }
                handler.receive(&batch)
            }
            let now = ContinuousClock.now
            if now - lastTick >= Self.tickInterval {
                lastTick = now
                handler.tick(&batch)
            }
            flush(&batch, handler: handler, sender: sender)
        }
    }

    private func flush(_ batch: inout DatagramBatch, handler: any DatagramHandler, sender: DatagramSender) {
        defer {
            for buffer in batch.owned { buffer.deallocate() }
            batch.owned.removeAll(keepingCapacity: true)
            batch.writes.removeAll(keepingCapacity: true)
        }
        let writes = batch.writes
        let dropped = sender.send(from: fd, count: writes.count) { writes[$0] }
        if dropped > 0 { handler.dropped(writes: dropped) }
    }
}

/// Sends datagrams from one socket with `sendmmsg`, up to 64 a call, over arrays allocated once: what a full send
/// buffer refuses is dropped (never queued without bound), a datagram the kernel refuses is skipped. One per
/// thread.
package final class DatagramSender {
    private let buffers: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    private let lengths: UnsafeMutablePointer<Int>
    private let destinations: UnsafeMutablePointer<sockaddr_storage>
    private let destinationLengths: UnsafeMutablePointer<UInt32>
    private let sources: UnsafeMutablePointer<sockaddr_storage>
    private static let capacity = Int(SB_BATCH_MAX)

    package init() {
        buffers = .allocate(capacity: Self.capacity)
        lengths = .allocate(capacity: Self.capacity)
        destinations = .allocate(capacity: Self.capacity)
        destinationLengths = .allocate(capacity: Self.capacity)
        sources = .allocate(capacity: Self.capacity)
    }

    deinit {
        buffers.deallocate()
        lengths.deallocate()
        destinations.deallocate()
        destinationLengths.deallocate()
        sources.deallocate()
    }

    /// Sends `count` datagrams from `fd`, the `index`-th being `datagram(index)`: its bytes, their length and its
    /// destination; with `source`, each leaves from the local address `source(index)` names (IP_PKTINFO: a socket
    /// bound to a wildcard address answers from the address a request came to), or as the kernel picks for nil.
    /// Returns how many were not sent, each also named to `dropped`.
    @discardableResult
    package func send(
        from fd: Int32, count: Int,
        _ datagram: (Int) -> (pointer: UnsafeRawPointer, length: Int, to: TransportAddress),
        source: ((Int) -> IPAddress?)? = nil,
        dropped onDrop: (Int) -> Void = { _ in }
    ) -> Int {
        var start = 0
        var dropped = 0
        while start < count {
            let chunk = min(Self.capacity, count - start)
            for index in 0..<chunk {
                let write = datagram(start + index)
                destinationLengths[index] = SocketAddressBytes.write(write.to, into: &destinations[index])
                buffers[index] = UnsafeMutableRawPointer(mutating: write.pointer)
                lengths[index] = write.length
                if let source {
                    if let ip = source(start + index) {
                        _ = SocketAddressBytes.write(TransportAddress(ip: ip, port: 0), into: &sources[index])
                    } else {
                        sources[index].ss_family = sa_family_t(AF_UNSPEC)
                    }
                }
            }
            let sent = Int(
                sb_send_batch(
                    fd, buffers, lengths, destinations, destinationLengths, source == nil ? nil : sources,
                    UInt32(chunk)))
            if sent > 0 && sent < chunk {
                // sendmmsg stops at the first datagram it cannot send and reports that error on the next call.
                start += sent
                continue
            }
            if sent <= 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS {
                    // A full send buffer: what it refused is dropped, never queued without bound.
                    for index in start..<count { onDrop(index) }
                    return dropped + count - start
                }
                if errno == EINTR { continue }
                // A datagram the kernel refuses (an unreachable destination, say): skip it, send the rest.
                onDrop(start)
                dropped += 1
                start += 1
                continue
            }
            start += chunk
        }
        return dropped
    }
}

/// Why a pump could not start.
public struct PumpError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

private final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}

/// `sockaddr_in`/`sockaddr_in6` to and from ``TransportAddress``, without strings.
package enum SocketAddressBytes {
    package static func write(_ address: TransportAddress, into storage: inout sockaddr_storage) -> socklen_t {
        withUnsafeMutablePointer(to: &storage) { pointer in
            if let v4 = address.ip.ipv4Value {
                return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                    sin.pointee = sockaddr_in()
                    sin.pointee.sin_family = sa_family_t(AF_INET)
                    sin.pointee.sin_port = address.port.bigEndian
                    sin.pointee.sin_addr.s_addr = v4.bigEndian
                    return socklen_t(MemoryLayout<sockaddr_in>.size)
                }
            }
            return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                sin6.pointee = sockaddr_in6()
                sin6.pointee.sin6_family = sa_family_t(AF_INET6)
                sin6.pointee.sin6_port = address.port.bigEndian
                let bytes = address.ip.bytes
                withUnsafeMutableBytes(of: &sin6.pointee.sin6_addr) { raw in
                    for index in 0..<16 { raw[index] = bytes[index] }
                }
                return socklen_t(MemoryLayout<sockaddr_in6>.size)
            }
        }
    }

    package static func read(_ storage: UnsafeMutablePointer<sockaddr_storage>) -> TransportAddress? {
        switch Int32(storage.pointee.ss_family) {
        case AF_INET:
            return storage.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                TransportAddress(
                    ip: IPAddress(ipv4: UInt32(bigEndian: sin.pointee.sin_addr.s_addr)),
                    port: UInt16(bigEndian: sin.pointee.sin_port))
            }
        case AF_INET6:
            return storage.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                var address = sin6.pointee.sin6_addr
                let (high, low) = withUnsafeBytes(of: &address) { raw in
                    (
                        UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                        UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
                    )
                }
                return TransportAddress(
                    ip: IPAddress(ipv6High: high, low: low), port: UInt16(bigEndian: sin6.pointee.sin6_port))
            }
        default:
            return nil
        }
    }

    package static func read(_ storage: inout sockaddr_storage) -> TransportAddress? {
        withUnsafeMutablePointer(to: &storage) { read($0) }
    }
}
