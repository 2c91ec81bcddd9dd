import Foundation
import MediaCore
import NIOCore
import STUN
import SwitchboardAPI
import SwitchboardCore

/// libFuzzer targets for the parsers hostile input reaches first: the STUN decoder (and everything that reads a
/// decoded message), the SDP keying check, the SSE parser and the API's request-body decoders. Each target also
/// checks a property, trapping (a finding) when it fails.
///
/// Built with `-sanitize=fuzzer,address -DFUZZING` (see `Fuzz/run.sh`) this is a libFuzzer binary; otherwise it
/// replays files: `switchboard-fuzz TARGET FILE...`, to reproduce a finding in an ordinary build.
enum FuzzTarget: String, CaseIterable {
    case stun, sdp, sse, body

    /// The target libFuzzer runs, from `SWITCHBOARD_FUZZ_TARGET`.
    static let current: FuzzTarget = {
        let name = ProcessInfo.processInfo.environment["SWITCHBOARD_FUZZ_TARGET"] ?? ""
        guard let target = FuzzTarget(rawValue: name) else {
            fatalError("set SWITCHBOARD_FUZZ_TARGET to one of \(allCases.map(\.rawValue))")
        }
        return target
    }()

    func run(_ bytes: [UInt8]) {
        switch self {
        case .stun: Self.stun(bytes)
        case .sdp: Self.sdp(bytes)
        case .sse: Self.sse(bytes)
        case .body: Self.body(bytes)
        }
    }

    static let key = ShortTermCredential.key(password: "VOkJxbRl1RmTxUk/WvJxBt")

    /// Decoding and every reader never trap; what decodes re-encodes to a message that decodes the same.
    static func stun(_ bytes: [UInt8]) {
        _ = PacketClass.classify(bytes)
        _ = PacketClass.isRTCP(bytes)
        _ = try? ChannelData.parse(bytes)
        guard let message = try? STUNMessage(decoding: bytes) else { return }
        _ = try? message.xorMappedAddress
        _ = try? message.xorPeerAddresses
        _ = try? message.xorRelayedAddresses
        _ = try? message.mappedAddress
        _ = try? message.lifetime
        _ = try? message.requestedTransport
        _ = try? message.channelNumber
        _ = try? message.username
        _ = try? message.realm
        _ = try? message.nonce
        _ = try? message.errorCode
        _ = try? message.unknownAttributes
        _ = try? message.passwordAlgorithms
        _ = try? message.userHash
        _ = try? message.priority
        _ = try? message.iceControlling
        _ = try? message.iceControlled
        _ = message.verifyIntegrity(key: key)
        _ = message.verifyIntegrity(key: key, algorithm: .hmacSHA256)
        _ = message.verifyFingerprint()
        guard let encoded = try? message.encode() else { return }
        guard let again = try? STUNMessage(decoding: encoded) else {
            fatalError("a re-encoded message does not decode")
        }
        precondition(again.type == message.type && again.transactionID == message.transactionID)
    }

    /// The check never traps; what it accepts is printable ASCII in LF/CRLF lines (the one reading every consumer
    /// shares), and the relay's SDP reader takes it too.
    static func sdp(_ bytes: [UInt8]) {
        let text = String(decoding: bytes, as: UTF8.self)
        for kind in [SessionDescription.Kind.offer, .answer] {
            guard case .acceptable = SDPKeyingCheck.evaluate(text, as: kind) else { continue }
            let utf8 = Array(text.utf8)
            for (index, byte) in utf8.enumerated() {
                switch byte {
                case 0x20...0x7E, UInt8(ascii: "\n"): continue
                case UInt8(ascii: "\r"): precondition(index + 1 < utf8.count && utf8[index + 1] == UInt8(ascii: "\n"))
                default: fatalError("accepted SDP holds byte \(byte)")
                }
            }
            for line in utf8.split(separator: UInt8(ascii: "\n")) {
                let name = line.prefix(8).map { (0x41...0x5A).contains($0) ? $0 + 0x20 : $0 }
                precondition(name != Array("a=crypto".utf8), "accepted an a=crypto line")
            }
            _ = try? SDPLines(parsing: text)
        }
    }

    /// Events never depend on where the stream was cut: the bytes fed whole or in two pieces give the same events.
    static func sse(_ bytes: [UInt8]) {
        var whole = SSEParser()
        let all = whole.feed(bytes)
        let cut = bytes.isEmpty ? 0 : Int(bytes[0]) % (bytes.count + 1)
        var split = SSEParser()
        let pieces = split.feed(bytes[..<cut]) + split.feed(bytes[cut...])
        precondition(all == pieces, "events depend on the cut at \(cut)")
        precondition(whole.lastEventID == split.lastEventID && whole.retry == split.retry)
    }

    /// Every request-body decoder refuses or decodes; none traps, and none lets an unknown field through.
    static func body(_ bytes: [UInt8]) {
        let data = Data(bytes)
        _ = try? RequestBodies.decode(InviteBody.self, from: data)
        _ = try? RequestBodies.decode(DeviceBody.self, from: data)
        _ = try? RequestBodies.decode(AcceptBody.self, from: data)
        _ = try? RequestBodies.decode(TicketBody.self, from: data)
        if (try? RequestBodies.decode(SignalBody.self, from: data)) != nil,
            let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any]
        {
            precondition(Set(object.keys).isSubset(of: SignalBody.fields), "an unknown field was decoded")
        }
    }
}

#if FUZZING
    @_cdecl("LLVMFuzzerTestOneInput")
    public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
        FuzzTarget.current.run(Array(UnsafeBufferPointer(start: data, count: size)))
        return 0
    }
#else
    @main
    struct Replay {
        static func main() throws {
            let arguments = CommandLine.arguments.dropFirst()
            guard let name = arguments.first, let target = FuzzTarget(rawValue: name) else {
                print("usage: switchboard-fuzz \(FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")) FILE...")
                exit(2)
            }
            for path in arguments.dropFirst() {
                target.run(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
            }
            print("replayed \(arguments.count - 1) inputs through \(name)")
        }
    }
#endif
