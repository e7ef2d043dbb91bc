// swift-tools-version:6.0
import PackageDescription

// Layers, lowest first. Each layer imports only the layers before it in this list (the lower
// ones), never a later one; the README's "Source layout" table says the same in the same words.
//   CZlib, CBzip2, CSQLite,   one thin shim module per C library (macros and variadics as typed
//   CCurl, CFuse3, CPosix     jfs_ functions); CPosix: POSIX calls Swift cannot make (fork, mallopt, prctl)
//   JigdoFormat               reading .jigdo and .template files, checksums, location expansion,
//                             positional file reads, the byte-budget LRU cache, Syscalls (the
//                             one door for libc file calls; tests inject failures there)
//   ISO9660                   the file tree inside an image (ISO 9660, Rock Ridge, Joliet), read
//                             from any ImageByteSource (a plain .iso; a jigdo image via PartSources)
//   ImageAssembly             image layout, the thread-safe range reader, template chunk cache
//   PartSources               where part bytes come from: scanned dirs (persistent checksum cache),
//                             mapped mirrors, old images, the part cache and downloads (libcurl),
//                             download statistics; glue: ImageReader as an ISO9660 ImageByteSource
//   FUSEBridge                the mount: libfuse's low-level API, images as read-only files,
//                             X.iso.d browse views, the status file (server side), daemonizing
//   jigdofs                   the command line (ArgumentParser), the status client
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
        .systemLibrary(name: "CSQLite", path: "Sources/CSQLite"),
        .systemLibrary(name: "CFuse3", path: "Sources/CFuse3", pkgConfig: "fuse3"),
        .systemLibrary(name: "CCurl", path: "Sources/CCurl"),
        .systemLibrary(name: "CPosix", path: "Sources/CPosix"),
        .target(
            name: "JigdoFormat",
            dependencies: [
                "CZlib", "CBzip2",
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .target(
            name: "ISO9660",
            dependencies: ["JigdoFormat"],
            exclude: ["README.md"]
        ),
        .target(
            name: "ImageAssembly",
            dependencies: ["JigdoFormat"]
        ),
        .target(
            name: "PartSources",
            dependencies: ["JigdoFormat", "ImageAssembly", "CSQLite", "CCurl", "CPosix", "ISO9660", .product(name: "Logging", package: "swift-log")],
            exclude: ["Downloads/README.md"]
        ),
        .target(
            name: "FUSEBridge",
            dependencies: ["CFuse3", "CPosix", "JigdoFormat", "ImageAssembly", "ISO9660", "PartSources", .product(name: "Logging", package: "swift-log")],
            exclude: ["README.md"]
        ),
        .executableTarget(
            name: "jigdofs",
            dependencies: [
                "JigdoFormat", "ImageAssembly", "PartSources", "ISO9660", "FUSEBridge", "CPosix",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "TestSupport",
            dependencies: ["JigdoFormat", "ImageAssembly"],
            path: "Tests/TestSupport"
        ),
        .testTarget(
            name: "JigdoFormatTests",
            dependencies: ["JigdoFormat", "ImageAssembly", "PartSources", "TestSupport"]
        ),
        .testTarget(
            name: "ImageAssemblyTests",
            dependencies: ["JigdoFormat", "ImageAssembly", "PartSources", "TestSupport"]
        ),
        .testTarget(
            name: "ISO9660Tests",
            dependencies: ["JigdoFormat", "ImageAssembly", "PartSources", "ISO9660", "TestSupport"]
        ),
        // Mounts through the built `jigdofs` binary (root, /dev/fuse, loop devices).
        .testTarget(name: "MountTests", dependencies: ["TestSupport"]),
        // Runs the built `jigdofs` binary (see TestSupport's `CLI`).
        .testTarget(name: "CLITests", dependencies: ["JigdoFormat", "TestSupport"]),
        .testTarget(
            name: "PartSourcesTests",
            dependencies: ["JigdoFormat", "ImageAssembly", "ISO9660", "PartSources", "TestSupport", .product(name: "Logging", package: "swift-log")]
        ),
        // The bridge's routing and errno mapping, called without mounting.
        .testTarget(
            name: "FUSEBridgeTests",
            dependencies: ["JigdoFormat", "ImageAssembly", "PartSources", "ISO9660", "FUSEBridge", "TestSupport", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(
            name: "DownloadTests",
            dependencies: ["JigdoFormat", "ImageAssembly", "PartSources", "TestSupport", .product(name: "Logging", package: "swift-log")]
        ),
    ]
)

// libFuzzer targets (Fuzz/, run by scripts/fuzz.sh): declared only with JIGDOFS_FUZZ set, so a
// plain `swift build`/`swift test` never sees them (their main calls libFuzzer's driver, which
// only -sanitize=fuzzer links in).
if Context.environment["JIGDOFS_FUZZ"] != nil {
    for (name, deps) in [("FuzzJigdo", ["JigdoFormat"]), ("FuzzLocations", ["JigdoFormat"]),
                         ("FuzzTemplate", ["JigdoFormat", "ImageAssembly"]), ("FuzzISO9660", ["ISO9660"]),
                         ("FuzzNames", ["JigdoFormat", "ISO9660"])] {
        package.targets.append(.executableTarget(name: name, dependencies: deps.map { .target(name: $0) }, path: "Fuzz/\(name)"))
    }
}
