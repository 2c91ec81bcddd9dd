import Foundation
import Media
import NIOCore
import SwitchboardAPI
import SwitchboardCore

/// JSON encoding and strict decoding for the API.
enum JSON {
    static func encode(_ value: some Encodable) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Every value the API encodes is a plain tree of strings, numbers and arrays: this cannot fail.
        return (try? Array(encoder.encode(value))) ?? Array(#"{}"#.utf8)
    }

    static func buffer(_ value: some Encodable) -> ByteBuffer {
        ByteBuffer(bytes: encode(value))
    }

    /// Decodes a request body strictly (``RequestBodies/decode(_:from:)``); a refusal is a 400 saying why.
    static func decodeBody<T: SwitchboardAPI.RequestBody>(_ type: T.Type, from buffer: ByteBuffer) throws(APIError) -> T
    {
        do {
            return try RequestBodies.decode(type, from: Data(buffer.readableBytesView))
        } catch {
            throw .badRequest(error.message)
        }
    }
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
