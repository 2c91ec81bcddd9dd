// swift-tools-version:6.1
// The Swift side of the SRTP benchmark, a package of its own so the main build never compiles it.
import PackageDescription

let package = Package(
    name: "srtp-bench",
    dependencies: [
        .package(name: "switchboard", path: "../.."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.3"),
    ],
    targets: [
        .executableTarget(
            name: "dtls-bench",
            dependencies: [
                .product(name: "DTLSSRTP", package: "switchboard")
            ]
        ),
        .executableTarget(
            name: "srtp-bench",
            dependencies: [
                .product(name: "DTLSSRTP", package: "switchboard")
            ]
        ),
    ]
)
