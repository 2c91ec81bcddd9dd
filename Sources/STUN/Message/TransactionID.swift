/// The 96-bit transaction ID of a STUN message (RFC 8489 §5), which pairs a response with its request and is mixed
/// into XOR-encoded IPv6 addresses (RFC 8489 §14.2).
///
/// New IDs must be uniformly random (RFC 8489 §6): use ``random()``.
public struct TransactionID: Sendable, Hashable, CustomStringConvertible {
    // Bytes 0..<4 and 4..<12, big-endian.
    let high: UInt32
    let low: UInt64

    /// An ID from exactly 12 bytes; nil for any other count.
    public init?(bytes: some Collection<UInt8>) {
        let array = Array(bytes)
        guard array.count == STUN.transactionIDSize else { return nil }
        self.high = array.readUInt32(at: 0)
        self.low = array.readUInt64(at: 4)
    }

    /// An ID from its first 4 and last 8 bytes as big-endian integers.
    public init(high: UInt32, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// A fresh ID from the system's cryptographically secure generator.
    public static func random() -> TransactionID {
        var generator = SystemRandomNumberGenerator()
        return random(using: &generator)
    }

    /// A fresh ID from `generator` (tests pass a seeded one).
    public static func random(using generator: inout some RandomNumberGenerator) -> TransactionID {
        TransactionID(high: UInt32.random(in: .min ... .max, using: &generator), low: generator.next())
    }

    /// The 12 bytes in wire order.
    public var bytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(STUN.transactionIDSize)
        out.appendUInt32(high)
        out.appendUInt64(low)
        return out
    }

    /// Lower-case hex, 24 digits.
    public var description: String {
        bytes.map { byte in
            let digits = String(byte, radix: 16)
            return byte < 0x10 ? "0" + digits : digits
        }.joined()
    }
}
