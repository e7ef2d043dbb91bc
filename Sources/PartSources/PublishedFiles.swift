#if canImport(Glibc)
import Glibc
#endif
import ImageAssembly
import JigdoFormat
import Logging

/// The files a .jigdo refers to besides its parts, as publishers ship them: templates given by
/// URL (also from a local .jigdo, as the SME wiki's `wget` workflow leaves it) and `[Include]`d
/// .jigdo files on a server. Fetched copies live in the cache (`<cache>/sources/<hash of URL>/`)
/// and are reused offline.
public enum PublishedFiles {
    /// An `[Include]` fetcher: the URL's bytes, downloaded into the cache (reused when
    /// `downloader` is nil, i.e. offline), at most `JigdoDescriptor.maxFileSize`.
    public static func includeFetcher(cache: PartCache, downloader: HTTPDownloader?) -> JigdoDescriptor.IncludeFetcher {
        { url in
            let path = try cache.sourceDirectory(forURL: url) + "/include.jigdo"
            if let downloader {
                try downloader.fetch(url: url, to: path + ".download", maxLength: Int64(JigdoDescriptor.maxFileSize))
                guard Syscalls.rename(path + ".download", path) == 0 else {
                    throw JigdoError(.io, path: path, "cannot store the downloaded file", errno: SystemErrno(errno))
                }
            } else if !fileExists(path) {
                throw JigdoError(.partUnavailable, path: url, "not in the cache, and downloads are off (--offline)")
            }
            try CacheTrust.checkFileIfPresent(path)
            let file = try ReadOnlyFile(path: path, extraFlags: O_NOFOLLOW)
            guard file.size <= JigdoDescriptor.maxFileSize else {
                throw JigdoError(.syntax, path: url, "larger than \(JigdoDescriptor.maxFileSize >> 20) MiB: not a .jigdo file")
            }
            return try file.readAll()
        }
    }

    /// Opens the template of `descriptor`'s image (its `image`) and checks it against the
    /// .jigdo's `Template-*Sum`. In this order, each location once:
    /// - `override` (`--template FILE`), alone if given;
    /// - for a local .jigdo (`jigdoURL` nil): a file with the Template value's base name next to
    ///   the .jigdo (a local copy wins), then the value resolved as a local path;
    /// - for a .jigdo from a server: the base name next to the .jigdo's URL (libjte writes a
    ///   placeholder absolute URL);
    /// - the value resolved as a URL (absolute, or relative to the .jigdo's URL): a cached copy
    ///   that matches the checksum is used; else it is downloaded into the cache (without a
    ///   downloader, a cached copy is used as it is).
    /// A failure names every location tried. With `templates`, a template already opened by
    /// another image is shared (see `SharedTemplates`).
    public static func openTemplate(
        descriptor: JigdoDescriptor, jigdoURL: String?, cache: PartCache?, downloader: HTTPDownloader?,
        override: String? = nil, templates: SharedTemplates? = nil, logger: Logger = Logger(label: "jigdofs.download")
    ) throws -> JigdoImage {
        if let override {
            return try JigdoImage.open(descriptor: descriptor, templatePath: override, templates: templates)
        }
        let value = descriptor.image.template.value
        var locals: [String] = []
        var urls: [String] = []
        for name in templateNames(value) {
            if let jigdoURL {
                urls.append(directoryOf(jigdoURL) + name)
            } else {
                locals.append(directoryOf(absolutePath(descriptor.path)) + name)
            }
        }
        var resolver = LocationResolver(descriptor: descriptor)
        resolver.allowLocalFromJigdo = jigdoURL == nil
        for loc in resolver.resolve(descriptor.image.template) {
            switch loc {
            case .local(let p): if !locals.contains(p) { locals.append(p) }
            case .remote(let u): if !urls.contains(u) { urls.append(u) }
            }
        }
        var tried: [String] = []
        for path in locals {
            if fileExists(path), !isDirectory(path) {
                return try JigdoImage.open(descriptor: descriptor, templatePath: path, templates: templates)
            }
            tried.append("\(RawNames.display(path)) (no such file)")
        }
        guard !urls.isEmpty else {
            throw JigdoError(.io, path: descriptor.path,
                "template \(RawNames.display(value)) not found (tried \(tried.joined(separator: ", "))); pass --template FILE")
        }
        guard let cache else {
            throw JigdoError(.io, path: descriptor.path,
                "template not found (tried \((tried + urls).joined(separator: ", "))); pass --template FILE")
        }
        var failures: [String] = []
        for url in urls {
            let dir: String
            do { dir = try cache.sourceDirectory(forURL: url) } catch {
                failures.append("\(url): \(error)")
                continue
            }
            var file = baseName(url)
            if let q = file.firstIndex(where: { $0 == "?" || $0 == "#" }) { file = String(file[..<q]) }
            if file.isEmpty || file.hasPrefix(".") { file = "image.template" }
            let cached = dir + "/" + file
            // A cached copy: used when it matches the .jigdo's checksum, or (offline) when the
            // .jigdo gives none.
            if fileExists(cached) {
                do {
                    try CacheTrust.checkFileIfPresent(cached)
                    let image = try JigdoImage.open(descriptor: descriptor, templatePath: cached, templates: templates)
                    if image.templateCheck != .notGiven || downloader == nil { return image }
                    logger.info("\(cached): cached template has no checksum in the .jigdo to check it against; downloading it again")
                } catch let e as JigdoError where e.kind == .overLimit {
                    // Not the copy's fault: a fresh one would be refused the same way.
                    throw e
                } catch where CacheTrust.isRefusal(error) {
                    // Not ours: never read. Downloaded again (the rename replaces it), or,
                    // offline, the one line says why there is no template.
                    guard downloader != nil else {
                        failures.append("\(error)")
                        continue
                    }
                    logger.warning("\(error); downloading it again")
                } catch {
                    // Truncated, corrupt or an older version: downloaded again (below), which
                    // replaces it. The reason is only logged: a fresh copy is the fix.
                    logger.info("\(error); cached template not used, downloading it again")
                }
            }
            guard let downloader else {
                failures.append("\(url) (not in the cache, and downloads are off)")
                continue
            }
            do {
                try downloader.fetch(url: url, to: cached + ".download", maxLength: RemoteSource.maxTemplateBytes)
                guard Syscalls.rename(cached + ".download", cached) == 0 else {
                    throw JigdoError(.io, path: cached, "cannot store the downloaded template", errno: SystemErrno(errno))
                }
                // Verifies the checksum; a copy that does not match is not kept.
                return try JigdoImage.open(descriptor: descriptor, templatePath: cached, templates: templates)
            } catch let e as JigdoError where e.kind == .overLimit {
                throw e
            } catch {
                Syscalls.unlink(cached + ".download")
                Syscalls.unlink(cached)
                logger.debug("\(error)")
                failures.append(shortReason(error, url: url))
            }
        }
        throw JigdoError(.io, path: descriptor.path,
            "template could not be had; tried \((tried + failures).joined(separator: ", "))")
    }

    /// The file names a template given as `value` may have next to its .jigdo: the base name
    /// of the value, or, for a mirrorlist URL (`…/mirrorlist?path=…/X.template`, as Fedora
    /// writes them), the base name of a query value that ends in `.template`.
    static func templateNames(_ value: String) -> [String] {
        let parts = value.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        var names: [String] = []
        if parts.count == 2 {
            for item in parts[1].split(separator: "&") {
                let v = item.split(separator: "=", maxSplits: 1).last.map { String($0).replacingPercentEscapes() } ?? ""
                if v.hasSuffix(".template") { names.append(baseName(v)) }
            }
        }
        let plain = baseName(String(parts[0]))
        if !plain.isEmpty, parts.count == 1 || names.isEmpty { names.append(plain) }
        return names.filter { !$0.isEmpty && !$0.hasPrefix(".") && !$0.contains("/") }
    }

    /// `url (why)` without the URL repeated by the error's own description.
    static func shortReason(_ error: any Error, url: String) -> String {
        if let e = error as? JigdoError, e.path == url { return "\(url) (\(e.reason))" }
        return "\(url) (\(error))"
    }
}
