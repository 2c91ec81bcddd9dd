internal import CDatagram
import DatagramPump
import NIOCore
import RelayCore
import STUN

#if canImport(Glibc)
    import Glibc
#endif

/// One `recvmmsg` batch in a datagram thread's slots: datagram `i` is `lengths[i]` bytes at
/// `slots + i * slotSize + headroom`, the `headroom` bytes in front of it free for a header.
struct ReadSlots {
    let slots: UnsafeMutableRawPointer
    let sources: UnsafeMutablePointer<sockaddr_storage>
    /// Each datagram's local address (IP_PKTINFO), read on a server socket bound to a wildcard address only.
    let locals: UnsafeMutablePointer<sockaddr_storage>?
    let lengths: UnsafeMutablePointer<UInt32>
    let truncated: UnsafeMutablePointer<Int32>
    let count: Int

    static let headroom = 64
    /// Room for the largest UDP datagram: the kernel's MSG_TRUNC, not a length guess, says when one did not fit.
    static let slotSize = headroom + 65_536

    func datagram(_ index: Int) -> UnsafeMutableRawPointer { slots + index * Self.slotSize + Self.headroom }
}

/// What a pass over the tables leaves to send once their lock is released: datagrams (in place from a read slot,
/// or an owned copy) and writes to TCP and TLS connections.
struct Outbox {
    /// What a datagram is, for the counters: relayed data (with its payload's length) or a STUN reply.
    enum Kind {
        case toPeer(payload: Int)
        case toClient(payload: Int)
        case reply
    }

    struct Datagram {
        var fd: Int32
        var pointer: UnsafeRawPointer
        var length: Int
        var to: TransportAddress
        /// The local address to send from (IP_PKTINFO), or nil for the socket's own.
        var from: IPAddress?
        var kind: Kind
    }

    var datagrams: [Datagram] = []
    var streams: [(channel: any Channel, buffer: ByteBuffer)] = []
    /// TCP and TLS connections to close once the lock is released: closing one on its event loop runs its
    /// `channelInactive` at once, which takes the lock again (a trap in debug builds, a deadlock in release).
    var closes: [any Channel] = []
    private var owned: [UnsafeMutableRawBufferPointer] = []
    private var order: [Int] = []
    /// Some datagram names its source address.
    private var sourced = false

    mutating func append(
        _ pointer: UnsafeRawPointer, length: Int, fd: Int32, to: TransportAddress, from: IPAddress? = nil, kind: Kind
    ) {
        datagrams.append(Datagram(fd: fd, pointer: pointer, length: length, to: to, from: from, kind: kind))
        if from != nil { sourced = true }
    }

    /// Queues a copy of `bytes`.
    mutating func append(
        copying bytes: UnsafeRawBufferPointer, fd: Int32, to: TransportAddress, from: IPAddress? = nil, kind: Kind
    ) {
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 8)
        if let base = bytes.baseAddress { copy.baseAddress!.copyMemory(from: base, byteCount: bytes.count) }
        owned.append(copy)
        append(UnsafeRawPointer(copy.baseAddress!), length: bytes.count, fd: fd, to: to, from: from, kind: kind)
    }

    /// Forgets the datagrams unsent.
    mutating func discardDatagrams() {
        for buffer in owned { buffer.deallocate() }
        owned.removeAll(keepingCapacity: true)
        datagrams.removeAll(keepingCapacity: true)
        sourced = false
    }

    /// Sends the datagrams, in order within each socket and one `sendmmsg` run per socket, and tallies what went
    /// and what a full send buffer refused. Then forgets them (the stream writes stay).
    mutating func sendDatagrams(with sender: DatagramSender, counters: inout RelayCounters) {
        defer { discardDatagrams() }
        guard !datagrams.isEmpty else { return }
        order.removeAll(keepingCapacity: true)
        order.append(contentsOf: datagrams.indices)
        let datagrams = self.datagrams
        if datagrams.count > 1 {
            order.sort { datagrams[$0].fd != datagrams[$1].fd ? datagrams[$0].fd < datagrams[$1].fd : $0 < $1 }
        }
        let order = self.order
        var start = 0
        while start < order.count {
            let fd = datagrams[order[start]].fd
            var end = start + 1
            while end < order.count && datagrams[order[end]].fd == fd { end += 1 }
            for index in order[start..<end] { counters.count(datagrams[index].kind, by: 1) }
            let first = start
            let source: ((Int) -> IPAddress?)? = sourced ? { datagrams[order[first + $0]].from } : nil
            _ = sender.send(
                from: fd, count: end - start,
                { offset in
                    let datagram = datagrams[order[first + offset]]
                    return (datagram.pointer, datagram.length, datagram.to)
                }, source: source,
                dropped: { offset in
                    counters.count(datagrams[order[first + offset]].kind, by: -1)
                    counters.drops[.congested, default: 0] += 1
                })
            start = end
        }
    }
}

extension RelayCounters {
    fileprivate mutating func count(_ kind: Outbox.Kind, by sign: Int64) {
        switch kind {
        case .toPeer(let payload):
            packetsToPeers += sign
            bytesToPeers += sign * Int64(payload)
        case .toClient(let payload):
            packetsToClients += sign
            bytesToClients += sign * Int64(payload)
        case .reply:
            break
        }
    }
}
