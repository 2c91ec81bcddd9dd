import Foundation
import SwitchboardCore

/// A call as both databases keep it, one column per field: dates as seconds since the reference date (exact both
/// ways), the device list and the offer as JSON text. PostgreSQL reads and writes it as jsonb, SQLite column by
/// column.
struct CallRow: Codable {
    var id, caller, callerDevice, callee, state: String
    var endReason: String?
    var createdAt: Double
    var answeredAt, endedAt: Double?
    var answeredBy: String?
    var ringingDevices: String
    var ringDeadline: Double?
    var offer: String?
    var timelineLength: Int
    var media: String
    var failure: String?
    var mediaNode: String?

    init(_ call: Call) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        id = call.id
        caller = call.caller
        callerDevice = call.callerDevice
        callee = call.callee
        state = call.state.rawValue
        endReason = call.endReason?.rawValue
        createdAt = call.createdAt.timeIntervalSinceReferenceDate
        answeredAt = call.answeredAt?.timeIntervalSinceReferenceDate
        endedAt = call.endedAt?.timeIntervalSinceReferenceDate
        answeredBy = call.answeredBy
        // A list of strings and an offer of two strings: encoding them cannot fail.
        ringingDevices = String(decoding: (try? encoder.encode(call.ringingDevices)) ?? Data("[]".utf8), as: UTF8.self)
        ringDeadline = call.ringDeadline?.timeIntervalSinceReferenceDate
        offer = call.offer.flatMap { try? encoder.encode($0) }.map { String(decoding: $0, as: UTF8.self) }
        timelineLength = call.timelineLength
        media = call.media.rawValue
        failure = call.failure
        mediaNode = call.mediaNode
    }

    func call() throws -> Call {
        guard let state = CallState(rawValue: state), let media = MediaPath(rawValue: media) else {
            throw StoreCorruption("call \(id) has an unknown state or media path")
        }
        let endReason = try endReason.map { raw in
            guard let reason = EndReason(rawValue: raw) else { throw StoreCorruption("unknown end reason \(raw)") }
            return reason
        }
        let decoder = JSONDecoder()
        return Call(
            id: id, caller: caller, callerDevice: callerDevice, callee: callee, state: state, endReason: endReason,
            createdAt: Date(timeIntervalSinceReferenceDate: createdAt),
            answeredAt: answeredAt.map(Date.init(timeIntervalSinceReferenceDate:)),
            endedAt: endedAt.map(Date.init(timeIntervalSinceReferenceDate:)), answeredBy: answeredBy,
            ringingDevices: try decoder.decode([String].self, from: Data(ringingDevices.utf8)),
            ringDeadline: ringDeadline.map(Date.init(timeIntervalSinceReferenceDate:)),
            offer: try offer.map { try decoder.decode(SessionDescription.self, from: Data($0.utf8)) },
            timelineLength: timelineLength, media: media, failure: failure, mediaNode: mediaNode)
    }
}
