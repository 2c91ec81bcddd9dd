import Foundation
import Media
package import NIOCore
import SwitchboardAPI
import SwitchboardCore

/// JSON encoding and strict decoding for the API (package-wide, for the fuzz targets).
package enum JSON {
    static func encode(_ value: some Encodable) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Every value the API encodes is a plain tree of strings, numbers and arrays: this cannot fail.
        return (try? Array(encoder.encode(value))) ?? Array(#"{}"#.utf8)
    }

    static func buffer(_ value: some Encodable) -> ByteBuffer {
        ByteBuffer(bytes: encode(value))
    }

    /// Decodes a request body, refusing anything that is not a JSON object with only the fields `T` knows, and
    /// objects nested in it (`sdp`, `candidate`) with fields their types do not know.
    package static func decodeBody<T: RequestBody>(_ type: T.Type, from buffer: ByteBuffer) throws(APIError) -> T {
        let data = Data(buffer.readableBytesView)
        guard let object = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) else {
            throw .badRequest("the request body is not valid JSON")
        }
        guard let fields = object as? [String: Any] else { throw .badRequest("the request body must be a JSON object") }
        if let unknown = fields.keys.filter({ !T.fields.contains($0) }).sorted().first {
            throw .badRequest("unknown field '\(unknown)'")
        }
        for (name, known) in T.nestedFields.sorted(by: { $0.key < $1.key }) {
            guard let nested = fields[name] as? [String: Any] else { continue }
            if let unknown = nested.keys.filter({ !known.contains($0) }).sorted().first {
                throw .badRequest("unknown field '\(name).\(unknown)'")
            }
        }
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch let error as DecodingError {
            throw .badRequest(describe(error))
        } catch let error as APIError {
            throw error
        } catch {
            throw .badRequest("the request body could not be read")
        }
    }

    private static func describe(_ error: DecodingError) -> String {
        func path(_ codingPath: [any CodingKey], _ key: (any CodingKey)? = nil) -> String {
            let keys = (codingPath + (key.map { [$0] } ?? [])).map { $0.intValue.map(String.init) ?? $0.stringValue }
            return keys.isEmpty ? "the body" : "'" + keys.joined(separator: ".") + "'"
        }
        switch error {
        case .keyNotFound(let key, let context): return "missing field \(path(context.codingPath, key))"
        case .typeMismatch(_, let context): return "field \(path(context.codingPath)) has the wrong type"
        case .valueNotFound(_, let context): return "field \(path(context.codingPath)) must not be null"
        case .dataCorrupted(let context):
            return "field \(path(context.codingPath)) is invalid: \(context.debugDescription)"
        @unknown default: return "the request body could not be read"
        }
    }
}

/// A request body with a closed set of fields, and of fields in the objects it nests.
package protocol RequestBody: Decodable {
    static var fields: Set<String> { get }
    /// For each field that holds an object, the fields that object may have.
    static var nestedFields: [String: Set<String>] { get }
}

extension RequestBody {
    package static var nestedFields: [String: Set<String>] { [:] }
}

/// The fields of the objects request bodies nest.
enum NestedFields {
    /// `{"type", "sdp"}` (``SessionDescription``).
    static let sessionDescription: Set<String> = ["type", "sdp"]
    /// `{"candidate", "sdpMid", "sdpMLineIndex", "usernameFragment"}` (``ICECandidate``).
    static let candidate: Set<String> = ["candidate", "sdpMid", "sdpMLineIndex", "usernameFragment"]
}

package struct InviteBody: RequestBody {
    package static let fields: Set<String> = ["to", "device", "sdp", "media"]
    package static let nestedFields = ["sdp": NestedFields.sessionDescription]
    let to: String
    let device: String?
    let sdp: SessionDescription?
    let media: MediaPath?
}

package struct DeviceBody: RequestBody {
    package static let fields: Set<String> = ["device"]
    let device: String?
}

package struct AcceptBody: RequestBody {
    package static let fields: Set<String> = ["device", "sdp"]
    package static let nestedFields = ["sdp": NestedFields.sessionDescription]
    let device: String?
    let sdp: SessionDescription?
}

package struct SignalBody: RequestBody {
    package static let fields: Set<String> = ["device", "type", "sdp", "candidate"]
    package static let nestedFields = ["candidate": NestedFields.candidate]
    let device: String?
    let type: Signal.Kind
    let sdp: String?
    let candidate: ICECandidate?
}

package struct TicketBody: RequestBody {
    package static let fields: Set<String> = ["device"]
    let device: String?
}

extension CallJSON {
    init(_ call: Call, timeline: Bool = false, legs: [MediaLegJSON]? = nil) {
        self.init(
            id: call.id, caller: call.caller, callee: call.callee, state: call.state, endReason: call.endReason,
            createdAt: RFC3339.format(call.createdAt), answeredAt: call.answeredAt.map(RFC3339.format),
            endedAt: call.endedAt.map(RFC3339.format), answeredBy: call.answeredBy, media: call.media,
            failure: call.failure, timeline: timeline ? call.timeline.map(TimelineJSON.init) : nil, mediaLegs: legs)
    }
}

extension MediaLegJSON {
    init(_ leg: MediaLegSnapshot) {
        self.init(
            party: leg.party.rawValue, ice: leg.ice.rawValue, dtls: leg.dtls.rawValue, srtpProfile: leg.srtpProfile,
            fingerprintVerified: leg.fingerprintVerified, packetsIn: leg.counters.packetsIn,
            bytesIn: leg.counters.bytesIn, packetsOut: leg.counters.packetsOut, bytesOut: leg.counters.bytesOut,
            dropped: Dictionary(uniqueKeysWithValues: leg.counters.drops.map { ($0.key.rawValue, $0.value) }))
    }
}

extension TimelineJSON {
    init(_ entry: TimelineEntry) {
        self.init(
            at: RFC3339.format(entry.at), event: entry.event, user: entry.user, device: entry.device,
            reason: entry.reason)
    }
}

extension SignalEventJSON {
    init(_ signal: Signal) {
        self.init(
            callId: signal.callID, from: From(user: signal.fromUser, device: signal.fromDevice), type: signal.kind,
            sdp: signal.sdp, candidate: signal.candidate)
    }
}

/// The data of `call.invite`, `call.ringing`, `call.accepted` and `call.ended` events.
struct CallEventJSON: Encodable {
    let call: CallJSON
    let sdp: SessionDescription?
}

/// RFC 3339 timestamps in UTC with milliseconds, e.g. `2026-11-25T15:06:28.123Z`.
enum RFC3339 {
    static func format(_ date: Date) -> String {
        let interval = date.timeIntervalSince1970
        var seconds = time_t(interval.rounded(.down))
        let millis = Int(((interval - interval.rounded(.down)) * 1000).rounded(.down))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(millis), 3))Z"
    }
}
