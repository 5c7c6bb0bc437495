// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Warren",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Warren", targets: ["Warren"]),
        .library(name: "WarrenConformance", targets: ["WarrenConformance"]),
        .executable(name: "warren", targets: ["warren"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-http2", from: "1.46.0"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.4.1"),
        // Tests only: property-based campaigns (docs/FUZZING.md).
        .package(url: "https://github.com/x-sheep/swift-property-based", exact: "2.0.1"),
    ],
    targets: [
        // System libraries (Debian: libzmq3-dev, libsodium-dev, libargon2-dev; see ./bootstrap).
        // libzmq's .pc file adds -isystem flags that SwiftPM rejects with a warning; its headers
        // live in /usr/include and the module map links -lzmq, so pkg-config is not consulted here.
        .systemLibrary(name: "CZeroMQ", providers: [.apt(["libzmq3-dev"])]),
        .systemLibrary(name: "CSodium", pkgConfig: "libsodium", providers: [.apt(["libsodium-dev"])]),
        .systemLibrary(name: "CArgon2", pkgConfig: "libargon2", providers: [.apt(["libargon2-dev"])]),
        // Header only: a cache prefetch hint (__builtin_prefetch) for the simulator's hot loop.
        .systemLibrary(name: "CPrefetch"),
        .systemLibrary(name: "CSimSync"),

        // Keys, the envelope codec, the Backend protocol, the in-process backend, generated protobuf.
        .target(
            name: "WarrenCore",
            dependencies: [
                "CSodium", "CArgon2",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The sans-I/O gossip engine: frames, de-dup, TTL, peer table, membership.
        .target(name: "WarrenEngine", dependencies: ["CSodium", "CPrefetch", "CSimSync"]),
        // The ZeroMQ driver and the gossip:// backend.
        .target(
            name: "WarrenGossip",
            dependencies: [
                "WarrenCore", "WarrenEngine", "CZeroMQ",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // cunīcu's gRPC signaling service: the bridge a node serves and the grpc:// client backend.
        .target(
            name: "WarrenGRPC",
            dependencies: [
                "WarrenCore", "WarrenGossip",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Umbrella: backend factory by URL, re-exports.
        .target(
            name: "Warren",
            dependencies: [
                "WarrenCore", "WarrenEngine", "WarrenGossip", "WarrenGRPC",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Reusable backend conformance suite (used by tests and by `warren demo`).
        .target(name: "WarrenConformance", dependencies: ["Warren"]),
        .executableTarget(
            name: "warren",
            dependencies: [
                "Warren", "WarrenConformance", "CZeroMQ",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                // `warren bench bridge`'s baseline: a minimal signaling server on the same stack.
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
            ]
        ),
        .testTarget(name: "WarrenCoreTests",
                    dependencies: ["WarrenCore", "Warren", "WarrenConformance",
                                   .product(name: "PropertyBased", package: "swift-property-based")],
                    resources: [.copy("Vectors")]),
        .testTarget(name: "WarrenEngineTests",
                    dependencies: ["WarrenEngine", .product(name: "PropertyBased", package: "swift-property-based")]),
        .testTarget(name: "WarrenGossipTests", dependencies: ["Warren", "WarrenGossip", "WarrenConformance"]),
        .testTarget(name: "WarrenGRPCTests", dependencies: [
            "Warren", "WarrenGRPC", "WarrenConformance",
            .product(name: "GRPCCore", package: "grpc-swift-2"),
            .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
        ]),
    ],
    swiftLanguageModes: [.v6]
)
