// swift-tools-version:6.0
import PackageDescription

/// Debian's multiarch directory, where GLib keeps its configuration header.
#if arch(arm64)
let multiarch = "aarch64-linux-gnu"
#else
let multiarch = "x86_64-linux-gnu"
#endif

let package = Package(
    name: "Warren",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Warren", targets: ["Warren"]),
        .library(name: "WarrenConformance", targets: ["WarrenConformance"]),
        // The simulator and the tests' in-memory network (the fuzz targets in tools/fuzz use it).
        .library(name: "WarrenSimulator", targets: ["WarrenSimulator"]),
        .executable(name: "warren", targets: ["warren"]),
        .executable(name: "warren-bench", targets: ["warren-bench"]),
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
        // The bridge's event loop and HTTP/2 settings, and the metrics endpoint's HTTP server
        // (both already in the graph through gRPC).
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-http2", from: "1.46.0"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.4.1"),
        // `warren node --config FILE` (YAML, like cunīcu's cunicu.yaml).
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
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
        // Header only, for the simulator: a cache prefetch hint (__builtin_prefetch) for its hot
        // loop, and the spin-then-futex barrier of its threads.
        .systemLibrary(name: "CPrefetch"),
        .systemLibrary(name: "CSimSync"),
        // libnice (Debian: libnice-dev) and GLib, for the ICE agent: a C layer with plain C types
        // in its header, which also wraps the variadic and macro parts of their API
        // (g_object_set, g_signal_connect). Swift never imports GLib, so the shim's C compilation
        // is the one place that needs GLib's include paths. pkg-config is not consulted:
        // glib-2.0.pc brings -pthread, which SwiftPM rejects with a warning.
        .target(
            name: "CNiceShim",
            cSettings: [.unsafeFlags(["-I/usr/include/glib-2.0", "-I/usr/lib/\(multiarch)/glib-2.0/include"])],
            linkerSettings: [.linkedLibrary("nice"), .linkedLibrary("gio-2.0"), .linkedLibrary("gobject-2.0"),
                             .linkedLibrary("glib-2.0")]
        ),

        // Keys, the envelope codec, the Backend protocol, the in-process backend, generated protobuf.
        .target(
            name: "WarrenCore",
            dependencies: [
                "CSodium", "CArgon2",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The sans-I/O gossip engine: frames, de-dup, TTL, peer table, membership. The protocol
        // only: no sockets, threads or clock.
        .target(
            name: "WarrenEngine", dependencies: ["CSodium"],
            // Release builds make the engine's bodies available to the modules that drive it,
            // so the simulator's and the driver's calls into the generic receive path are
            // specialized and inlined as they were when the simulator lived in this module.
            swiftSettings: [.unsafeFlags(["-cross-module-optimization"], .when(configuration: .release))]
        ),
        // The discrete-event simulator: thousands of engines in virtual time, sharded over
        // threads, and the workload and report of `warren simulate`.
        .target(name: "WarrenSimulator", dependencies: ["WarrenEngine", "WarrenMeasure", "CPrefetch", "CSimSync"]),
        // The one percentile definition (nearest rank) of every report.
        .target(name: "WarrenMeasure"),
        // The ZeroMQ driver and the gossip:// backend.
        .target(
            name: "WarrenGossip",
            dependencies: [
                "WarrenCore", "WarrenEngine", "CZeroMQ",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // The grpc:// client backend of cunīcu's gRPC signaling service, and the service's
        // generated stubs (shared with the bridge). No ZeroMQ: a client needs only WarrenCore.
        .target(
            name: "WarrenGRPCClient",
            dependencies: [
                "WarrenCore",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The bridge a node serves: cunīcu's gRPC signaling service over the gossip overlay.
        .target(
            name: "WarrenGRPC",
            dependencies: [
                "WarrenCore", "WarrenEngine", "WarrenGossip", "WarrenGRPCClient",
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
        // The session layer: a sans-I/O state machine per remote peer and the manager that drives
        // it over any Backend with an ICE agent (docs/SESSION.md).
        .target(
            name: "WarrenSession",
            dependencies: [
                "WarrenCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // The real ICE agent: libnice on one GLib thread.
        .target(
            name: "WarrenNice",
            dependencies: [
                "WarrenSession", "CNiceShim",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Umbrella: backend factory by URL, re-exports.
        .target(
            name: "Warren",
            dependencies: [
                "WarrenCore", "WarrenEngine", "WarrenGossip", "WarrenGRPCClient", "WarrenGRPC",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Reusable backend conformance suite (used by tests and by `warren demo`).
        .target(name: "WarrenConformance", dependencies: ["Warren", "WarrenMeasure"]),
        // What both executables share: stdout/stderr lines and error sentences, key files, JSON
        // text, progress lines, the machine line of a report, the entry point.
        .target(
            name: "WarrenCLI",
            dependencies: [
                "WarrenCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        // The operator's CLI: keys, seal/open, node, status, demo, connect, simulate.
        .executableTarget(
            name: "warren",
            dependencies: [
                "Warren", "WarrenCLI", "WarrenConformance", "WarrenSession", "WarrenNice", "WarrenSimulator", "WarrenMeasure",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        // Benchmarks and comparisons (relay, latency, bridge, compare, session, soak): Warren
        // against raw ZeroMQ, NATS, a plain gRPC server and libnice over a pipe. Runs the
        // product's `warren` for the nodes it measures.
        .executableTarget(
            name: "warren-bench",
            dependencies: [
                "Warren", "WarrenCLI", "WarrenConformance", "WarrenSession", "WarrenNice", "WarrenMeasure", "CZeroMQ",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                // `warren-bench bridge`'s baseline: a minimal signaling server on the same stack.
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
            ]
        ),
        .testTarget(name: "WarrenCoreTests",
                    dependencies: ["WarrenCore", "Warren", "WarrenConformance", "WarrenTestSupport",
                                   .product(name: "PropertyBased", package: "swift-property-based")],
                    resources: [.copy("Vectors")]),
        .testTarget(name: "WarrenEngineTests",
                    dependencies: ["WarrenEngine", "WarrenSimulator", "WarrenTestSupport", .product(name: "PropertyBased", package: "swift-property-based")]),
        .testTarget(name: "WarrenSimulatorTests", dependencies: ["WarrenSimulator", "WarrenEngine", "WarrenMeasure", "WarrenTestSupport"]),
        .testTarget(name: "WarrenSessionTests", dependencies: ["WarrenSession", "WarrenCore", "WarrenEngine"]),
        .testTarget(name: "WarrenNiceTests", dependencies: ["WarrenNice", "WarrenSession", "WarrenTestSupport"]),
        .testTarget(name: "WarrenGossipTests", dependencies: ["Warren", "WarrenGossip", "WarrenConformance", "WarrenSimulator"]),
        .testTarget(name: "WarrenGRPCTests", dependencies: [
            "Warren", "WarrenGRPC", "WarrenConformance", "WarrenTestSupport",
            .product(name: "GRPCCore", package: "grpc-swift-2"),
            .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        // The executables through their command lines: WarrenCLITests runs the built `warren`
        // (keys, node, status, connect, simulate, the bridge with an independent client, network
        // namespaces), WarrenBenchTests `warren-bench`; WarrenTestSupport finds them.
        .target(name: "WarrenTestSupport", path: "Tests/WarrenTestSupport"),
        .testTarget(name: "WarrenCLITests", dependencies: ["Warren", "WarrenConformance", "WarrenTestSupport"]),
        .testTarget(name: "WarrenBenchTests", dependencies: ["WarrenTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
