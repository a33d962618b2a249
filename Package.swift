// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "tidemark",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "tidemarkd", targets: ["tidemarkd"]),
        .executable(name: "tidemark", targets: ["tidemark"]),
        .executable(name: "tidemark-stagebench", targets: ["tidemark-stagebench"]),
        .executable(name: "tidemark-storage", targets: ["tidemark-storage"]),
        .executable(name: "tidemark-fuzz", targets: ["tidemark-fuzz"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.0"..<"5.0.0"),
    ],
    targets: [
        // C libraries, found by pkg-config (http-parser ships no .pc file, so it is linked by name).
        .systemLibrary(name: "CLibUV", pkgConfig: "libuv", providers: [.apt(["libuv1-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CHTTPParser", providers: [.apt(["libhttp-parser-dev"])]),

        // CRC-32C with the CPU's instruction where it has one (Swift has no intrinsics for it).
        .target(name: "CCRC32C"),
        .target(name: "TidemarkCore"),
        .target(
            name: "TidemarkStages",
            dependencies: [
                "TidemarkCore",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]),
        .target(
            name: "TidemarkConfig",
            dependencies: ["TidemarkCore", "TidemarkStorage", "TidemarkIO", "Yams"],
            resources: [.embedInCode("stages.yaml")]),
        // Files, logs and byte codecs: what the storage engine and consensus both stand on.
        .target(
            name: "TidemarkIO",
            dependencies: ["TidemarkCore", "CCRC32C", .product(name: "Logging", package: "swift-log")]),
        .target(
            name: "TidemarkStorage",
            dependencies: ["TidemarkCore", "TidemarkIO", "CZstd", .product(name: "Logging", package: "swift-log")]),
        .target(
            name: "TidemarkConsensus",
            dependencies: [
                "TidemarkCore", "TidemarkIO",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        // The cluster: partition table, allocator, meta state (pure cores), and the regions a node holds.
        .target(name: "TidemarkCluster", dependencies: ["TidemarkCore", "TidemarkIO", "TidemarkConsensus", "TidemarkStorage", "TidemarkQuery",
                                                 .product(name: "Logging", package: "swift-log")]),
        .target(name: "TidemarkWire", dependencies: ["TidemarkCore", "TidemarkStorage", "TidemarkIO"]),
        .target(name: "TidemarkQuery", dependencies: ["TidemarkCore", "TidemarkStorage", "TidemarkIO"]),
        .target(
            name: "TidemarkNet",
            dependencies: [
                "TidemarkCore", "CLibUV", "CHTTPParser",
                .product(name: "DequeModule", package: "swift-collections"),
            ]),
        .target(
            name: "TidemarkServer",
            dependencies: [
                "TidemarkCore", "TidemarkStages", "TidemarkConfig", "TidemarkNet", "TidemarkStorage", "TidemarkIO", "TidemarkWire", "TidemarkQuery",
                "TidemarkConsensus", "TidemarkCluster",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        .executableTarget(
            name: "tidemarkd",
            dependencies: [
                "TidemarkServer", "TidemarkCluster", "TidemarkConfig", "TidemarkStorage", "TidemarkIO",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .executableTarget(
            name: "tidemark",
            dependencies: [
                "TidemarkNet", "TidemarkServer", "TidemarkQuery", "TidemarkCluster",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .executableTarget(
            name: "tidemark-storage",
            dependencies: [
                "TidemarkStorage", "TidemarkIO", "TidemarkTestSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        // Grammar-driven fuzzing of whole paths (statement to answer, write path, recovery); `make fuzz` runs it.
        .executableTarget(
            name: "tidemark-fuzz",
            dependencies: [
                "TidemarkStorage", "TidemarkIO", "TidemarkQuery", "TidemarkWire", "TidemarkConsensus", "TidemarkCluster", "TidemarkServer", "TidemarkTestSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .executableTarget(
            name: "tidemark-stagebench",
            dependencies: [
                "TidemarkStages",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),

        // Helpers shared by the test targets (a blocking HTTP client, process control).
        .target(name: "TidemarkTestSupport", dependencies: ["TidemarkNet", "TidemarkStorage", "TidemarkIO"], path: "Tests/TidemarkTestSupport"),
        .testTarget(name: "TidemarkStagesTests", dependencies: ["TidemarkStages", "TidemarkTestSupport"]),
        .testTarget(name: "TidemarkConfigTests", dependencies: ["TidemarkConfig", "TidemarkStorage", "TidemarkIO"]),
        .testTarget(name: "TidemarkStorageTests", dependencies: ["TidemarkStorage", "TidemarkIO", "TidemarkTestSupport"]),
        // testdata/*.txt are read from the source tree by the script tests.
        .testTarget(
            name: "TidemarkConsensusTests", dependencies: ["TidemarkConsensus", "TidemarkCluster", "TidemarkStorage", "TidemarkIO", "TidemarkTestSupport"],
            exclude: ["testdata"]),
        .testTarget(name: "TidemarkClusterTests", dependencies: ["TidemarkCluster", "TidemarkConsensus", "TidemarkIO", "TidemarkStorage", "TidemarkTestSupport", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "TidemarkWireTests", dependencies: ["TidemarkWire", "TidemarkTestSupport"]),
        .testTarget(name: "TidemarkQueryTests", dependencies: ["TidemarkQuery", "TidemarkStorage", "TidemarkIO", "TidemarkTestSupport"]),
        .testTarget(name: "TidemarkNetTests", dependencies: ["TidemarkNet", "TidemarkTestSupport"]),
        .testTarget(
            name: "TidemarkServerTests",
            dependencies: [
                "TidemarkServer", "TidemarkCluster", "TidemarkNet", "TidemarkStages", "TidemarkConfig", "TidemarkStorage", "TidemarkQuery", "TidemarkWire", "TidemarkIO", "TidemarkTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "InMemoryLogging", package: "swift-log"),
            ]),
    ],
    swiftLanguageModes: [.v6]
)
