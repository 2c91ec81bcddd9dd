import Crypto
import STUN

extension TURNServer {
    // MARK: Authentication (RFC 8489 §9.2, RFC 8656 §5)

    enum Authentication {
        case authenticated(Identity)
        case rejected(STUNMessage)
    }

    func authenticate(_ request: STUNMessage, from fiveTuple: FiveTuple, now: RelayTime) -> Authentication {
        let algorithm: IntegrityAlgorithm
        if request.attribute(.messageIntegritySHA256) != nil {
            algorithm = .hmacSHA256
        } else if request.attribute(.messageIntegrity) != nil {
            algorithm = .hmacSHA1
        } else {
            return .rejected(challenge(request, .unauthorized, fiveTuple, now))
        }
        guard let username = try? request.username, let realm = try? request.realm, let nonce = try? request.nonce
        else {
            return .rejected(error(request, .badRequest))
        }
        guard realm == configuration.realm else {
            return .rejected(challenge(request, .unauthorized, fiveTuple, now))
        }
        guard nonceIsValid(nonce, for: fiveTuple, now: now) else {
            return .rejected(challenge(request, .staleNonce, fiveTuple, now))
        }
        // MD5 unless PASSWORD-ALGORITHM negotiated otherwise (RFC 8489 §9.2.2), which this server never offers; the
        // same key serves MESSAGE-INTEGRITY and MESSAGE-INTEGRITY-SHA256. With several shared secrets (rotation),
        // the credential is whichever one verifies.
        for (password, user, expiry) in passwords(for: username, now: now) {
            let key = LongTermCredential.key(username: username, realm: configuration.realm, password: password)
            if request.verifyIntegrity(key: key, algorithm: algorithm) == .valid {
                // Call-scoped credentials (REST ones only: a static user's name is just a name).
                let scope = expiry == nil ? (user: user, call: nil) : EphemeralCredential.scope(of: user)
                if let call = scope.call {
                    // A call that ended takes its credentials with it; one that outlives the retention is refused.
                    guard endedCalls[call] == nil, let expiry, expiry <= now + configuration.endedCallRetention else {
                        break
                    }
                }
                return .authenticated(
                    Identity(
                        username: username, user: scope.user, key: key, algorithm: algorithm, credentialExpiry: expiry,
                        call: scope.call))
            }
        }
        return .rejected(challenge(request, .unauthorized, fiveTuple, now))
    }

    /// The passwords `username` may have: a static user's, or one per shared secret for a TURN REST credential
    /// that has not expired.
    private func passwords(for username: String, now: RelayTime) -> [(String, user: String, expiry: RelayTime?)] {
        if let password = configuration.staticUsers[username] { return [(password, username, nil)] }
        guard let (expiry, user) = EphemeralCredential.parse(username: username) else { return [] }
        let expiresAt = RelayTime(seconds: expiry)
        // Expired, or further ahead than any issuer would sign (a year): not a credential of ours.
        guard expiresAt > now, expiresAt < now + .seconds(366 * 86_400) else { return [] }
        return configuration.sharedSecrets.map {
            (EphemeralCredential.password(secret: $0, username: username), user, expiresAt)
        }
    }

    private func challenge(
        _ request: STUNMessage, _ code: STUNErrorCode, _ fiveTuple: FiveTuple, _ now: RelayTime
    ) -> STUNMessage {
        error(
            request, code,
            extra: [.realm(configuration.realm), .nonce(makeNonce(for: fiveTuple, now: now))])
    }

    func makeNonce(for fiveTuple: FiveTuple, now: RelayTime) -> String {
        let expiry = (now + configuration.nonceLifetime).milliseconds
        return hex(expiry, width: 12) + nonceMAC(expiry: expiry, fiveTuple: fiveTuple)
    }

    private func nonceIsValid(_ nonce: String, for fiveTuple: FiveTuple, now: RelayTime) -> Bool {
        let utf8 = Array(nonce.utf8)
        guard utf8.count == 36, let expiry = Int64(String(decoding: utf8[0..<12], as: UTF8.self), radix: 16),
            expiry > now.milliseconds
        else { return false }
        let expected = Array(nonceMAC(expiry: expiry, fiveTuple: fiveTuple).utf8)
        return constantTimeEqual(Array(utf8[12...]), expected)
    }

    private func nonceMAC(expiry: Int64, fiveTuple: FiveTuple) -> String {
        var data = withUnsafeBytes(of: expiry.bigEndian, Array.init)
        data += fiveTuple.client.ip.bytes
        data += withUnsafeBytes(of: fiveTuple.client.port.bigEndian, Array.init)
        let mac = HMAC<SHA256>.authenticationCode(for: data, using: SymmetricKey(data: nonceKey))
        return Array(mac).prefix(12).map { hex(Int64($0), width: 2) }.joined()
    }
}
