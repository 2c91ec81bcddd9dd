import Foundation
import Hummingbird
import Relay
import RelayCore
import STUN
import SwitchboardAPI
import SwitchboardCore

/// `GET /v1/turn-credentials` in RTCIceServer shape (TURN REST API credentials signed with the relay's shared
/// secret; `?call=ID` binds them to one of the user's calls) and the admin's `GET /v1/relay/allocations`.
struct RelayRoutes: Sendable {
    let settings: RelaySettings?
    let relay: RelayServer?
    let signaling: Signaling

    func register(on v1: RouterGroup<SwitchboardContext>) {
        v1.get("turn-credentials") { request, context in
            let identity = try context.requireIdentity()
            guard let settings, let relay, let secret = settings.server.core.sharedSecrets.first else {
                throw APIError.notFound("this server runs no TURN relay")
            }
            let ports = try await relay.boundPorts()
            var ttl = settings.credentialTTL
            let credential: (username: String, password: String)
            if let callID = request.uri.queryParameters["call"].map(String.init) {
                // Credentials for one call of the user's own, not yet ended: every allocation made with them ends
                // when the call does. They live no longer than the relay refuses an ended call's credentials.
                let call = try await callToScope(callID, for: identity)
                ttl = min(ttl, Int(settings.server.core.endedCallRetention.components.seconds))
                credential = EphemeralCredential.make(
                    secret: secret, user: identity.user, call: call.id,
                    expiry: Int64(Date().timeIntervalSince1970) + Int64(ttl))
            } else {
                credential = EphemeralCredential.make(
                    secret: secret, user: identity.user, expiry: Int64(Date().timeIntervalSince1970) + Int64(ttl))
            }
            let host = settings.publicHost.contains(":") ? "[\(settings.publicHost)]" : settings.publicHost
            return Routes.json(
                .ok,
                TURNCredentialsJSON(
                    iceServers: [
                        .init(
                            urls: ["turn:\(host):\(ports.udp)?transport=udp"]
                                + (ports.tcp.map { ["turn:\(host):\($0)?transport=tcp"] } ?? [])
                                + (ports.tls.map { ["turns:\(host):\($0)?transport=tcp"] } ?? []),
                            username: credential.username, credential: credential.password)
                    ], ttl: ttl))
        }
        v1.get("relay/allocations") { _, context in
            let identity = try context.requireIdentity()
            guard identity.isAdmin else { throw APIError.forbidden("only admins can list relay allocations") }
            guard let relay else { throw APIError.notFound("this server runs no TURN relay") }
            let now = Date()
            let allocations = await relay.allocations().map { AllocationJSON($0, now: now) }
            return Routes.json(.ok, AllocationListJSON(allocations: allocations))
        }
    }

    /// The call `?call=` names: one the user takes part in (an admin too: relay legs are a party's), not ended.
    private func callToScope(_ id: String, for identity: Identity) async throws(APIError) -> Call {
        guard Identifier.isValid(id) else { throw APIError(.notFound, "call_not_found", "no such call") }
        let call: Call
        do {
            call = try await signaling.call(id, for: Identity(user: identity.user))
        } catch {
            throw APIError(error)
        }
        guard call.state != .ended else {
            throw APIError(
                .conflict, "invalid_transition", "call \(id) has ended: its relay credentials would be refused")
        }
        return call
    }
}

extension AllocationJSON {
    init(_ info: AllocationInfo, now: Date) {
        let created = Date(timeIntervalSince1970: Double(info.createdAt.milliseconds) / 1000)
        self.init(
            id: info.id.description, user: info.user, username: info.username, call: info.call,
            transport: info.fiveTuple.transport.rawValue, client: info.fiveTuple.client.description,
            server: info.fiveTuple.server.description, relayed: info.relayedAddress.description,
            relayedAddresses: info.relayedAddresses.map(\.description),
            permissions: info.permissions.map(\.description),
            channels: info.channels.sorted { $0.key < $1.key }.map {
                ChannelJSON(number: Int($0.key), peer: $0.value.description)
            },
            createdAt: RFC3339.format(created),
            expiresAt: RFC3339.format(Date(timeIntervalSince1970: Double(info.expiresAt.milliseconds) / 1000)),
            ageSeconds: max(0, Int(now.timeIntervalSince(created))), packetsToPeers: info.packetsToPeers,
            bytesToPeers: info.bytesToPeers, packetsFromPeers: info.packetsFromPeers,
            bytesFromPeers: info.bytesFromPeers)
    }
}
