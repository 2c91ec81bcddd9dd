// swift-tools-version:6.1
import Foundation
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

// `SWITCHBOARD_PACKAGE_SUBSET=relay` declares only the TURN relay's targets and their tests: the ThreadSanitizer
// build of scripts/test needs no more, and skips compiling the server's dependency tree a third time.
let relaySubset: (targets: Set<String>, packages: Set<String>) = (
    ["STUN", "RelayCore", "Relay", "CDatagram", "DatagramPump", "RelayCoreTests", "RelayTests"],
    ["swift-nio", "swift-nio-ssl", "swift-crypto", "swift-log", "swift-metrics", "swift-service-lifecycle"]
)
let subset = ProcessInfo.processInfo.environment["SWITCHBOARD_PACKAGE_SUBSET"] == "relay" ? relaySubset : nil

let package = Package(
    name: "switchboard",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "switchboard", targets: ["switchboard"]),
        .library(name: "SwitchboardCore", targets: ["SwitchboardCore"]),
        .library(name: "SwitchboardAPI", targets: ["SwitchboardAPI"]),
        .library(name: "SwitchboardServer", targets: ["SwitchboardServer"]),
        .library(name: "Store", targets: ["Store"]),
        .library(name: "DTLSSRTP", targets: ["DTLSSRTP"]),
        .library(name: "CertificateFingerprint", targets: ["CertificateFingerprint"]),
        .library(name: "STUN", targets: ["STUN"]),
        .library(name: "RelayCore", targets: ["RelayCore"]),
        .library(name: "Relay", targets: ["Relay"]),
        .library(name: "MediaCore", targets: ["MediaCore"]),
        .library(name: "Media", targets: ["Media"]),
        .executable(name: "switchboard-fuzz", targets: ["switchboard-fuzz"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: ["FullFoundation"]),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-nio-http2", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.1.0"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/vapor/jwt-kit", from: "5.7.1"),
    ],
    targets: [
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        .systemLibrary(
            name: "CSRTP",
            pkgConfig: "libsrtp2",
            providers: [.apt(["libsrtp2-dev"])]
        ),
        .target(
            name: "CertificateFingerprint",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "DTLSSRTP",
            dependencies: [
                "CertificateFingerprint",
                "COpenSSL",
                "CSRTP",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "SwitchboardCore",
            dependencies: ["CertificateFingerprint"],
            swiftSettings: swiftSettings
        ),
        // The API's wire models and the SSE parser: what the server sends, and what its clients (the CLI, the
        // tests) read, without the server.
        .target(
            name: "SwitchboardAPI",
            dependencies: ["SwitchboardCore"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "STUN",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto")
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "RelayCore",
            dependencies: [
                "STUN",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Relay",
            dependencies: [
                "RelayCore",
                "STUN",
                "CDatagram",
                "DatagramPump",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "MediaCore",
            dependencies: ["STUN"],
            swiftSettings: swiftSettings
        ),
        .target(name: "CDatagram"),
        .target(name: "CAllocator"),
        .target(
            name: "DatagramPump",
            dependencies: ["STUN", "CDatagram"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Media",
            dependencies: [
                "CertificateFingerprint",
                "MediaCore",
                "DTLSSRTP",
                "STUN",
                "DatagramPump",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Store",
            dependencies: [
                "SwitchboardCore",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "SwitchboardServer",
            dependencies: [
                "SwitchboardCore",
                "SwitchboardAPI",
                "Store",
                "CAllocator",
                "Media",
                "MediaCore",
                "DTLSSRTP",
                "Relay",
                "RelayCore",
                "STUN",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP2", package: "swift-nio-extras"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            resources: [.copy("Resources/Public"), .copy("Resources/openapi.yaml")],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "switchboard",
            dependencies: [
                "SwitchboardCore",
                "SwitchboardServer",
                "SwitchboardAPI",
                "Media",
                "STUN",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // libFuzzer targets (Fuzz/run.sh builds them with -sanitize=fuzzer); an ordinary build replays inputs.
        .executableTarget(
            name: "switchboard-fuzz",
            dependencies: [
                "STUN",
                "SwitchboardCore",
                "SwitchboardAPI",
                "MediaCore",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Fuzz/Sources/switchboard-fuzz",
            swiftSettings: swiftSettings
        ),
        // Helpers several test targets share (a seeded generator, random registry inputs).
        .target(
            name: "TestSupport",
            dependencies: ["SwitchboardCore"],
            path: "Tests/TestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SwitchboardCoreTests",
            dependencies: ["SwitchboardCore", "TestSupport"],
            resources: [.copy("Fixtures")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "DTLSSRTPTests",
            dependencies: [
                "DTLSSRTP",
                "CertificateFingerprint",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "StoreTests",
            dependencies: [
                "Store",
                "SwitchboardCore",
                "TestSupport",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "STUNTests",
            dependencies: ["STUN", "TestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MediaCoreTests",
            dependencies: ["MediaCore", "STUN", "SwitchboardCore"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "RelayCoreTests",
            dependencies: ["RelayCore", "STUN"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "RelayTests",
            dependencies: [
                "Relay",
                "RelayCore",
                "STUN",
                "DatagramPump",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "EndToEndTests",
            dependencies: [
                "CertificateFingerprint",
                "SwitchboardServer",
                "SwitchboardAPI",
                "Media",
                "MediaCore",
                "DTLSSRTP",
                "Relay",
                "RelayCore",
                "STUN",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)

if let subset {
    package.targets = package.targets.filter { subset.targets.contains($0.name) }
    package.products = []
    package.dependencies = package.dependencies.filter { dependency in
        guard case .sourceControl(_, let location, _) = dependency.kind else { return true }
        return subset.packages.contains(String(location.split(separator: "/").last ?? ""))
    }
}
