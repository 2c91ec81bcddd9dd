import Foundation
import Logging
import NIOCore
import NIOSSL
import ServiceLifecycle
import SwiftASN1
import Synchronization
import UnixSignals
import X509

/// The server's certificate chain and private key, re-read from their files on SIGHUP without dropping a
/// connection: every TLS listener's configuration carries a context callback that hands each new handshake the
/// pair last loaded, while handshakes already done keep the one they used.
final class ServerIdentity: Sendable {
    let certificatePath: String
    let keyPath: String
    private let current: Mutex<Loaded>

    struct Loaded: Sendable {
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
        /// The leaf's serial number in hex, for the log line of a reload.
        let serial: String
    }

    init(certificatePath: String, keyPath: String) throws {
        self.certificatePath = certificatePath
        self.keyPath = keyPath
        current = Mutex(try Self.load(certificatePath: certificatePath, keyPath: keyPath))
    }

    var loaded: Loaded { current.withLock { $0 } }

    /// Reads both files again. A pair that does not load, or whose key is not the leaf's, is refused and the old
    /// pair stays in use.
    @discardableResult
    func reload() throws -> Loaded {
        let loaded = try Self.load(certificatePath: certificatePath, keyPath: keyPath)
        current.withLock { $0 = loaded }
        return loaded
    }

    /// A server configuration presenting this identity, TLS 1.2+ with `cipherSuites`.
    func tlsConfiguration(cipherSuites: String) -> TLSConfiguration {
        let loaded = self.loaded
        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: loaded.chain.map { .certificate($0) }, privateKey: .privateKey(loaded.key))
        tls.minimumTLSVersion = .tlsv12
        tls.cipherSuites = cipherSuites
        // How long a closing connection waits for the peer's close_notify: a hostile client never sends one, so
        // every connection a deadline cuts would otherwise hold its descriptor 5 s more (NIOSSL's default).
        tls.shutdownTimeout = .seconds(1)
        tls.sslContextCallback = { [self] _, promise in
            let loaded = self.loaded
            var override = NIOSSLContextConfigurationOverride()
            override.certificateChain = loaded.chain.map { .certificate($0) }
            override.privateKey = .privateKey(loaded.key)
            promise.succeed(override)
        }
        return tls
    }

    private static func load(certificatePath: String, keyPath: String) throws -> Loaded {
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
        let leaf: Certificate
        let keyPEM: String
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificatePath)
            // Read once: what is served and what is checked against the certificate are the same bytes, even if
            // the file is replaced meanwhile.
            keyPEM = try String(contentsOfFile: keyPath, encoding: .utf8)
            key = try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem)
            guard let first = chain.first else { throw ServerError("no certificate in \(certificatePath)") }
            leaf = try Certificate(derEncoded: try first.toDERBytes())
        } catch let error as ServerError {
            throw error
        } catch {
            throw ServerError("cannot load the TLS certificate \(certificatePath) or key \(keyPath): \(error)")
        }
        // The key file may hold other blocks (`openssl ecparam -genkey` writes EC PARAMETERS first): the private key
        // is the block swift-certificates reads. One it cannot read (that NIOSSL could) is served unchecked.
        let documents = (try? PEMDocument.parseMultiple(pemString: keyPEM)) ?? []
        if let privateKey = documents.lazy.compactMap({ try? Certificate.PrivateKey(pemDocument: $0) }).first,
            privateKey.publicKey != leaf.publicKey
        {
            throw ServerError("the key \(keyPath) is not the key of the certificate \(certificatePath)")
        }
        return Loaded(chain: chain, key: key, serial: leaf.serialNumber.description)
    }
}

/// Reloads on SIGHUP what can change without a restart: the certificate and key (new handshakes get the new pair,
/// open connections keep theirs) and the identity provider's JWKS; and refreshes a JWKS URL as its cache headers
/// say. A reload that fails keeps what was loaded and says why in the log.
struct ReloadService: Service {
    let identity: ServerIdentity
    let identityProvider: KeySetFetcher?
    let logger: Logger

    func run() async throws {
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        await withDiscardingTaskGroup { group in
            if let identityProvider {
                group.addTask { await cancelWhenGracefulShutdown { await identityProvider.run() } }
            }
            group.addTask {
                await cancelWhenGracefulShutdown {
                    for await _ in hangups { await reload() }
                }
            }
        }
        await identityProvider?.shutdown()
    }

    /// What SIGHUP does.
    func reload() async {
        do {
            let loaded = try identity.reload()
            logger.notice(
                "certificate reloaded",
                metadata: ["certificate": "\(identity.certificatePath)", "serial": "\(loaded.serial)"])
        } catch {
            logger.error("certificate not reloaded: \(error)")
        }
        if let identityProvider {
            do {
                try await identityProvider.load()
            } catch {
                logger.error("identity provider keys not reloaded: \(error)")
            }
        }
    }
}
