// Text parsing for IPAddress, over UTF-8 code units; every path returns nil rather than trapping.

extension IPAddress {
    private static let dot = UInt8(ascii: ".")
    private static let colon = UInt8(ascii: ":")

    /// A strict dotted quad: four decimal fields 0–255, no leading zeros, nothing else.
    static func parseIPv4(_ text: ArraySlice<UInt8>) -> UInt32? {
        guard text.count >= 7, text.count <= 15 else { return nil }
        var value: UInt32 = 0
        var fields = 0
        for field in text.split(separator: dot, omittingEmptySubsequences: false) {
            guard let octet = decimal(field, maximumDigits: 3), octet <= 255 else { return nil }
            value = value << 8 | UInt32(octet)
            fields += 1
        }
        return fields == 4 ? value : nil
    }

    /// A decimal number without sign or leading zeros, at most `maximumDigits` digits.
    static func decimal(_ digits: ArraySlice<UInt8>, maximumDigits: Int) -> Int? {
        guard !digits.isEmpty, digits.count <= maximumDigits else { return nil }
        if digits.count > 1 && digits.first == UInt8(ascii: "0") { return nil }
        var value = 0
        for digit in digits {
            guard digit >= UInt8(ascii: "0"), digit <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int(digit - UInt8(ascii: "0"))
        }
        return value
    }

    private static func hexDigit(_ c: UInt8) -> UInt16? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt16(c - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt16(c - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt16(c - UInt8(ascii: "A") + 10)
        default: nil
        }
    }

    /// The 16-bit groups of one side of a `::` (or of the whole address), with an optional trailing dotted quad.
    private static func groups(_ text: ArraySlice<UInt8>, allowIPv4Tail: Bool) -> [UInt16]? {
        if text.isEmpty { return [] }
        var result: [UInt16] = []
        let pieces = text.split(separator: colon, omittingEmptySubsequences: false)
        for (index, piece) in pieces.enumerated() {
            if piece.contains(dot) {
                guard allowIPv4Tail, index == pieces.count - 1, let v4 = parseIPv4(piece) else { return nil }
                result.append(UInt16(truncatingIfNeeded: v4 >> 16))
                result.append(UInt16(truncatingIfNeeded: v4))
                continue
            }
            guard !piece.isEmpty, piece.count <= 4 else { return nil }
            var group: UInt16 = 0
            for c in piece {
                guard let nibble = hexDigit(c) else { return nil }
                group = group << 4 | nibble
            }
            result.append(group)
        }
        return result
    }

    /// RFC 4291 §2.2 text: eight groups, or fewer around a single `::`, optionally ending in a dotted quad.
    static func parseIPv6(_ text: [UInt8]) -> (UInt64, UInt64)? {
        guard text.count >= 2, text.count <= 45 else { return nil }
        var gap: Int? = nil
        var index = 0
        while index + 1 < text.count {
            if text[index] == colon && text[index + 1] == colon {
                guard gap == nil else { return nil }  // a second "::", or ":::"
                gap = index
            }
            index += 1
        }
        var all: [UInt16]
        if let gap {
            guard let left = groups(text[..<gap], allowIPv4Tail: false),
                let right = groups(text[(gap + 2)...], allowIPv4Tail: true),
                left.count + right.count <= 7
            else { return nil }
            all = left
            all.append(contentsOf: [UInt16](repeating: 0, count: 8 - left.count - right.count))
            all.append(contentsOf: right)
        } else {
            guard let whole = groups(text[...], allowIPv4Tail: true), whole.count == 8 else { return nil }
            all = whole
        }
        var high: UInt64 = 0
        var low: UInt64 = 0
        for i in 0..<4 {
            high = high << 16 | UInt64(all[i])
            low = low << 16 | UInt64(all[4 + i])
        }
        return (high, low)
    }
}
