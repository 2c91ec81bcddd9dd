/// Compares two byte strings in time that depends only on their lengths, never on where they differ, so a
/// message-integrity check does not leak how many leading bytes of a forged HMAC were right. Lengths are public.
public func constantTimeEqual(_ lhs: ArraySlice<UInt8>, _ rhs: ArraySlice<UInt8>) -> Bool {
    guard lhs.count == rhs.count else { return false }
    var difference: UInt8 = 0
    var left = lhs.startIndex
    var right = rhs.startIndex
    while left < lhs.endIndex {
        difference |= lhs[left] ^ rhs[right]
        left += 1
        right += 1
    }
    return difference == 0
}

/// Whether two byte strings are equal, in time that depends only on their lengths: for comparing secrets such as
/// HMACs, nonce tags or tokens, where `==` would reveal the length of the matching prefix through timing.
public func constantTimeEqual(_ lhs: some Collection<UInt8>, _ rhs: some Collection<UInt8>) -> Bool {
    constantTimeEqual(ArraySlice(lhs), ArraySlice(rhs))
}
