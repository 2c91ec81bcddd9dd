/// CRC-32 as used by the FINGERPRINT attribute (RFC 8489 §14.7): the IEEE 802.3 polynomial, reflected
/// (0xEDB88320), initial value and final XOR 0xFFFFFFFF — the same function as zlib's `crc32`.
enum CRC32 {
    /// The byte-at-a-time lookup table, computed once on first use.
    static let table: [UInt32] = (0..<256).map { index -> UInt32 in
        var crc = UInt32(index)
        for _ in 0..<8 {
            crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1
        }
        return crc
    }

    static func checksum(_ bytes: some Sequence<UInt8>) -> UInt32 {
        let table = CRC32.table
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
        }
        return crc ^ 0xFFFF_FFFF
    }
}
