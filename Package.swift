// swift-tools-version:6.0
import PackageDescription

// Layers, bottom to top (each imports only those below it):
//   CZlib, CBzip2,     thin shims over the C libraries
//   CCurl
//   JigdoFormat        reading .jigdo and .template files (pure parsing, no part I/O)
//   ImageAssembly      image layout + thread-safe range reader over template data and parts
//   PartSources        where part bytes come from: scanned dirs, mapped mirrors, the part
//                      cache and downloads (libcurl)
//   jigdofs            the command line (ArgumentParser)
let package = Package(
    name: "jigdofs",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "jigdofs", targets: ["jigdofs"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        .systemLibrary(name: "CBzip2", path: "Sources/CBzip2"),
        .systemLibrary(name: "CCurl", path: "Sources/CCurl"),
        .target(
            name: "JigdoFormat",
            dependencies: [
                "CZlib", "CBzip2",
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .target(
            name: "ImageAssembly",
            dependencies: ["JigdoFormat", .product(name: "Logging", package: "swift-log")]
        ),
        .target(
            name: "PartSources",
            dependencies: ["CCurl", "JigdoFormat", "ImageAssembly", .product(name: "Logging", package: "swift-log")]
        ),
        .executableTarget(
            name: "jigdofs",
            dependencies: [
                "JigdoFormat", "ImageAssembly", "PartSources",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "TestSupport",
            dependencies: ["JigdoFormat"],
            path: "Tests/TestSupport"
        ),
        .testTarget(name: "JigdoFormatTests", dependencies: ["JigdoFormat", "TestSupport"]),
        .testTarget(
            name: "ImageAssemblyTests",
            dependencies: ["JigdoFormat", "ImageAssembly", "PartSources", "TestSupport"]
        ),
        .testTarget(
            name: "DownloadTests",
            dependencies: ["JigdoFormat", "ImageAssembly", "PartSources", .product(name: "Logging", package: "swift-log")]
        ),
    ]
)
