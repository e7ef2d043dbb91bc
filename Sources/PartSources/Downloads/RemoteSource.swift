#if canImport(Glibc)
import Glibc
#endif
import ImageAssembly
import JigdoFormat
import Logging

/// A .jigdo given as an http(s)/ftp URL: it and its template are fetched into the cache
/// (`<cache>/sources/<hash of URL>/`), the template's checksum is verified, and every relative
/// location resolves against the URL's directory.
public enum RemoteSource {
    /// A .jigdo larger than this is refused (real ones are a few MB; gzip-compressed less).
    public static let maxJigdoBytes: Int64 = 64 << 20
    /// A template larger than this is refused (a DVD's template is some tens of MB; this
    /// leaves room for raw-data templates of big images). The fetch also never goes past the
    /// server's Content-Length.
    public static let maxTemplateBytes: Int64 = 4 << 30

    /// Fetches (or, offline, reuses the cached copy of) the .jigdo at `url` and its template.
    /// `templatePath` overrides the template as `--template` does.
    public static func open(
        url: String, cache: PartCache, downloader: HTTPDownloader?, templatePath: String? = nil,
        templates: SharedTemplates? = nil, logger: Logger = Logger(label: "jigdofs.download")
    ) throws -> JigdoImage {
        let descriptor = try self.descriptor(url: url, cache: cache, downloader: downloader, budget: templates?.budget)
        return try PublishedFiles.openTemplate(descriptor: descriptor, jigdoURL: url, cache: cache, downloader: downloader,
                                               override: templatePath, templates: templates, logger: logger)
    }

    /// Fetches (or, offline, reuses the cached copy of) the .jigdo at `url`, with its remote
    /// `[Include]`s.
    public static func descriptor(url: String, cache: PartCache, downloader: HTTPDownloader?,
                                  budget: MetadataBudget? = nil) throws -> JigdoDescriptor {
        let dir = try cache.sourceDirectory(forURL: url)
        var name = baseName(url)
        if let q = name.firstIndex(where: { $0 == "?" || $0 == "#" }) { name = String(name[..<q]) }
        if name.isEmpty || name.hasPrefix(".") { name = "source.jigdo" }
        let jigdoPath = dir + "/" + name
        if let downloader {
            try downloader.fetch(url: url, to: jigdoPath + ".download", maxLength: maxJigdoBytes)
            if Syscalls.rename(jigdoPath + ".download", jigdoPath) != 0 {
                Syscalls.unlink(jigdoPath + ".download")
                throw JigdoError(.io, path: jigdoPath, "cannot store the downloaded .jigdo", errno: SystemErrno(errno))
            }
        } else if !fileExists(jigdoPath) {
            throw JigdoError(.partUnavailable, path: url, "not in the cache, and downloads are off (--offline)")
        }
        // Offline, a copy someone else put there would be taken for the URL's release.
        try CacheTrust.checkFileIfPresent(jigdoPath)
        return try JigdoDescriptor.load(path: jigdoPath, baseURL: directoryOf(url),
                                        fetch: PublishedFiles.includeFetcher(cache: cache, downloader: downloader), budget: budget)
    }
}
