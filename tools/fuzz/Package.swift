// swift-tools-version:6.0
// Coverage-guided fuzz targets (libFuzzer) over Warren's frame decoder, gossip engine and
// envelope codec. Not part of the main package: build and run them with tools/fuzz/run.sh,
// which passes -sanitize=fuzzer,address so that every Swift module, Warren's included, is
// instrumented and libFuzzer supplies `main`. See docs/FUZZING.md.
import PackageDescription

// The Warren package is two directories up; SwiftPM names a path dependency after its directory.
let warren = Context.packageDirectory.split(separator: "/").dropLast(2).last.map(String.init) ?? "Warren"

let package = Package(
    name: "WarrenFuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: "../.."),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        .target(name: "CFuzzDriver"),
        .target(name: "FuzzSupport"),
        .executableTarget(name: "FuzzFrame", dependencies: ["CFuzzDriver", "FuzzSupport", .product(name: "Warren", package: warren)]),
        .executableTarget(name: "FuzzEngine", dependencies: [
            "CFuzzDriver", "FuzzSupport", .product(name: "Warren", package: warren), .product(name: "WarrenSimulator", package: warren),
        ]),
        .executableTarget(
            name: "FuzzEnvelope",
            dependencies: [
                "CFuzzDriver", "FuzzSupport",
                .product(name: "Warren", package: warren),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]),
    ],
    swiftLanguageModes: [.v6]
)
