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
        logger: Logger = Logger(label: "jigdofs.download")
    ) throws -> JigdoImage {
        let dir = try cache.sourceDirectory(forURL: url)
        var name = baseName(url)
        if let q = name.firstIndex(where: { $0 == "?" || $0 == "#" }) { name = String(name[..<q]) }
        if name.isEmpty || name.hasPrefix(".") { name = "source.jigdo" }
        let jigdoPath = dir + "/" + name
        if let downloader {
            try downloader.fetch(url: url, to: jigdoPath + ".download", maxLength: maxJigdoBytes)
            if rename(jigdoPath + ".download", jigdoPath) != 0 {
                unlink(jigdoPath + ".download")
                throw JigdoError(.io, path: jigdoPath, "cannot store the downloaded .jigdo: \(errnoText(errno))")
            }
        } else if !fileExists(jigdoPath) {
            throw JigdoError(.partUnavailable, path: url, "not in the cache, and downloads are off (--offline)")
        }
        let descriptor = try JigdoDescriptor.load(path: jigdoPath, baseURL: directoryOf(url))
        if let templatePath {
            return try JigdoImage.open(descriptor: descriptor, templatePath: templatePath)
        }

        // The template: as for a local .jigdo, first the Template value's base name next to the
        // .jigdo (libjte writes a placeholder absolute URL there), then the value resolved
        // against the .jigdo's URL.
        var resolver = LocationResolver(descriptor: descriptor)
        resolver.allowLocalFromJigdo = false
        var urls: [String] = []
        let templateBase = baseName(descriptor.image.template.value)
        if !templateBase.isEmpty { urls.append(directoryOf(url) + templateBase) }
        for loc in resolver.resolve(descriptor.image.template) {
            if case .remote(let u) = loc, !urls.contains(u) { urls.append(u) }
        }
        guard !urls.isEmpty else {
            throw JigdoError(.syntax, path: url, "[Image] Template '\(descriptor.image.template.value)' is not a downloadable location; pass --template FILE")
        }
        var templateName = baseName(urls[0])
        if templateName.isEmpty || templateName.hasPrefix(".") { templateName = "image.template" }
        let cachedTemplate = dir + "/" + templateName
        // A cached template that matches the .jigdo's checksum is used as it is.
        if fileExists(cachedTemplate), let image = try? JigdoImage.open(descriptor: descriptor, templatePath: cachedTemplate),
           image.templateCheck != .notGiven || downloader == nil {
            return image
        }
        guard let downloader else {
            throw JigdoError(.partUnavailable, path: urls[0], "template not in the cache, and downloads are off (--offline)")
        }
        var errors: [String] = []
        for templateURL in urls {
            do {
                try downloader.fetch(url: templateURL, to: cachedTemplate + ".download", maxLength: maxTemplateBytes)
                if rename(cachedTemplate + ".download", cachedTemplate) != 0 {
                    throw JigdoError(.io, path: cachedTemplate, "cannot store the downloaded template: \(errnoText(errno))")
                }
                // Verifies the template checksum; a mismatch is not kept.
                return try JigdoImage.open(descriptor: descriptor, templatePath: cachedTemplate)
            } catch {
                unlink(cachedTemplate + ".download")
                unlink(cachedTemplate)
                logger.warning("\(error)")
                errors.append("\(error)")
            }
        }
        throw JigdoError(.io, path: url, "template could not be fetched: " + errors.joined(separator: "; "))
    }
}
