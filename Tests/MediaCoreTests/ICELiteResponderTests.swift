import MediaCore
import STUN
import Testing

@Suite struct ICELiteResponderTests {
    let local = ICECredentials(ufrag: "srvU", password: "server-password-0123456789")
    let source = TransportAddress("192.0.2.7:50000")!

    func request(
        username: String = "srvU:cliU", password: String? = nil, priority: Bool = true, useCandidate: Bool = false,
        controlled: Bool = false, fingerprint: Bool = true
    ) throws -> STUNMessage {
        var attributes: [STUNAttribute] = [.username(username), .iceControlling(42)]
        if controlled { attributes = [.username(username), .iceControlled(42)] }
        if priority { attributes.append(.priority(0x6E00_1EFF)) }
        if useCandidate { attributes.append(.useCandidate) }
        let message = STUNMessage(type: .bindingRequest, transactionID: .random(), attributes: attributes)
        let bytes = try message.encode(
            integrity: Array((password ?? local.password).utf8), fingerprint: fingerprint)
        return try STUNMessage(decoding: bytes)
    }

    @Test func answersAValidCheckSignedWithTheLocalPassword() throws {
        let responder = ICELiteResponder(local: local, remoteUfrag: "cliU")
        let check = try request(useCandidate: true)
        guard case .answered(let bytes, let nominated) = responder.respond(to: check, from: source) else {
            Issue.record("not answered")
            return
        }
        #expect(nominated)
        let response = try STUNMessage(decoding: bytes)
        #expect(response.type == .bindingSuccess)
        #expect(response.transactionID == check.transactionID)
        #expect(try response.xorMappedAddress == source)
        #expect(response.verifyIntegrity(key: Array(local.password.utf8)) == .valid)
        #expect(response.verifyFingerprint() == true)
    }

    @Test func refusesWrongIntegrityMissingAttributesAndAControlledPeer() throws {
        let responder = ICELiteResponder(local: local, remoteUfrag: "cliU")
        func code(_ message: STUNMessage) -> Int? {
            if case .refused(_, let code) = responder.respond(to: message, from: source) { return code }
            return nil
        }
        #expect(code(try request(password: "not-the-password")) == 401)
        #expect(code(try request(username: "other:cliU")) == 401)
        #expect(code(try request(username: "srvU:someoneElse")) == 401)
        #expect(code(try request(priority: false)) == 400)
        #expect(code(try request(fingerprint: false)) == 400)
        #expect(code(try request(controlled: true)) == 487)
    }

    @Test func acceptsAnyRemoteUfragUntilItIsKnown() throws {
        let responder = ICELiteResponder(local: local, remoteUfrag: nil)
        guard
            case .answered(_, let nominated) = responder.respond(to: try request(username: "srvU:early"), from: source)
        else {
            Issue.record("an early check must be answered on the local password alone")
            return
        }
        #expect(!nominated)
        #expect(ICELiteResponder.localUfrag(of: try request(username: "srvU:early")) == "srvU")
    }
}
