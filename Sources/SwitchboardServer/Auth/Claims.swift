import JWTKit

/// One claim of a token's payload, whatever JSON it holds: an identity provider's tokens carry claims Switchboard
/// cannot know in advance, and ``TokenPolicy`` picks the ones it is told to.
enum ClaimValue: Codable, Sendable, Equatable {
    case string(String)
    case number(Double)
    case bool(Bool)
    case array([ClaimValue])
    case object([String: ClaimValue])
    case null

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([ClaimValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: ClaimValue].self))
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let value): try container.encode(value)
        case .number(let value): try container.encode(value)
        case .bool(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        case .null: try container.encodeNil()
        }
    }
}

/// A token's payload as jwt-kit hands it over once the signature holds: every claim, checked afterwards by
/// ``TokenPolicy`` (jwt-kit's own claim checks cannot express the claim mapping, leeway and lifetime bound).
struct ClaimSet: JWTPayload {
    var claims: [String: ClaimValue]

    init(_ claims: [String: ClaimValue]) { self.claims = claims }

    init(from decoder: any Decoder) throws { claims = try [String: ClaimValue](from: decoder) }

    func encode(to encoder: any Encoder) throws { try claims.encode(to: encoder) }

    func verify(using algorithm: some JWTAlgorithm) async throws {}
}
