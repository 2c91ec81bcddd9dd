package import Foundation
package import SwitchboardCore

// The API's request bodies and their strict decoder: what the server accepts, and what the fuzz targets feed,
// without the server.

/// Why a request body was refused: a sentence for the client.
package struct BodyError: Error {
    package let message: String

    init(_ message: String) { self.message = message }
}

/// Strict decoding of request bodies.
package enum RequestBodies {
    /// Decodes a request body, refusing anything that is not a JSON object with only the fields `T` knows, and
    /// objects nested in it (`sdp`, `candidate`) with fields their types do not know.
    package static func decode<T: RequestBody>(_ type: T.Type, from data: Data) throws(BodyError) -> T {
        guard let object = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) else {
            throw BodyError("the request body is not valid JSON")
        }
        guard let fields = object as? [String: Any] else { throw BodyError("the request body must be a JSON object") }
        if let unknown = fields.keys.filter({ !T.fields.contains($0) }).sorted().first {
            throw BodyError("unknown field '\(unknown)'")
        }
        for (name, known) in T.nestedFields.sorted(by: { $0.key < $1.key }) {
            guard let nested = fields[name] as? [String: Any] else { continue }
            if let unknown = nested.keys.filter({ !known.contains($0) }).sorted().first {
                throw BodyError("unknown field '\(name).\(unknown)'")
            }
        }
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch let error as DecodingError {
            throw BodyError(describe(error))
        } catch {
            throw BodyError("the request body could not be read")
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
    package let to: String
    package let device: String?
    package let sdp: SessionDescription?
    package let media: MediaPath?
}

package struct DeviceBody: RequestBody {
    package static let fields: Set<String> = ["device"]
    package let device: String?
}

package struct AcceptBody: RequestBody {
    package static let fields: Set<String> = ["device", "sdp"]
    package static let nestedFields = ["sdp": NestedFields.sessionDescription]
    package let device: String?
    package let sdp: SessionDescription?
}

package struct SignalBody: RequestBody {
    package static let fields: Set<String> = ["device", "type", "sdp", "candidate"]
    package static let nestedFields = ["candidate": NestedFields.candidate]
    package let device: String?
    package let type: Signal.Kind
    package let sdp: String?
    package let candidate: ICECandidate?
}

package struct TicketBody: RequestBody {
    package static let fields: Set<String> = ["device"]
    package let device: String?
}
