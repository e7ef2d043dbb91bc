import JigdoFormat

/// A .jigdo file together with its parsed, checksum-verified template.
public struct JigdoImage: Sendable {
    public enum TemplateCheck: Sendable, Equatable {
        /// The .jigdo gives a template checksum and the template matches it.
        case matched(ChecksumKind)
        /// The .jigdo gives no template checksum.
        case notGiven
    }

    public let descriptor: JigdoDescriptor
    public let templateFile: ReadOnlyFile
    public let template: TemplateInfo
    public let templateCheck: TemplateCheck

    public var templatePath: String { templateFile.path }

    /// The file name users see: the base name of `[Image] Filename`, without libjte's `stdio:`
    /// prefix (xorriso writes its output target name there).
    public var imageName: String {
        let base = descriptor.image.name
        return base.isEmpty ? baseName(descriptor.path) + ".iso" : base
    }

    /// Opens a .jigdo and its template. The template is `templatePath` if given; else a file with
    /// the base name of `[Image] Template` next to the .jigdo; else the Template value resolved
    /// relative to the .jigdo.
    public static func open(jigdoPath: String, templatePath: String? = nil, verifyTemplateChecksum: Bool = true,
                            templates: SharedTemplates? = nil) throws -> JigdoImage {
        let descriptor = try JigdoDescriptor.load(path: jigdoPath, budget: templates?.budget)
        return try open(descriptor: descriptor, templatePath: templatePath, verifyTemplateChecksum: verifyTemplateChecksum,
                        templates: templates)
    }

    /// Opens an already parsed .jigdo (e.g. one fetched from a server) with its template.
    /// With `templates`, a template another image of the same mount or command opened is
    /// shared, not parsed again, and a new one is charged to its budget.
    public static func open(descriptor: JigdoDescriptor, templatePath: String? = nil, verifyTemplateChecksum: Bool = true,
                            templates: SharedTemplates? = nil) throws -> JigdoImage {
        let jigdoPath = descriptor.path
        let path = try templatePath ?? locateTemplate(descriptor)
        var file = try ReadOnlyFile(path: path)
        var check = TemplateCheck.notGiven
        if verifyTemplateChecksum {
            // Prefer the stronger sum when both are given.
            for kind in [ChecksumKind.sha256, .md5] {
                guard let expected = descriptor.image.templateChecksums[kind] else { continue }
                let actual = try templates?.checksum(of: file, kind) ?? file.checksum(kind)
                guard actual == expected else {
                    throw JigdoError(.checksumMismatch, path: path,
                        "template does not match \(baseName(jigdoPath)): its \(kind.rawValue) is not the .jigdo's Template-\(kind.labelPrefix)=\(expected.base64)")
                }
                check = .matched(kind)
                break
            }
        }
        let info: TemplateInfo
        if let templates {
            (file, info) = try templates.template(of: file)
        } else {
            info = try TemplateInfo.read(file)
        }
        var descriptor = descriptor
        if descriptor.images.count == 1 {
            // The template holds every part's checksum: the [Parts] table takes them from
            // there (see `JigdoPartsTable.adopt`). Not for a merged .jigdo, whose images (each
            // with its own template) share one table.
            descriptor.parts.adopt(info.parts)
        }
        return JigdoImage(descriptor: descriptor, templateFile: file, template: info, templateCheck: check)
    }

    static func locateTemplate(_ descriptor: JigdoDescriptor) throws -> String {
        let jigdoDir = directoryOf(absolutePath(descriptor.path))
        let value = descriptor.image.template.value
        let besideJigdo = jigdoDir + baseName(value)
        if !baseName(value).isEmpty, fileExists(besideJigdo), !isDirectory(besideJigdo) { return besideJigdo }
        let resolver = LocationResolver(descriptor: descriptor)
        var tried = [besideJigdo]
        for loc in resolver.resolve(descriptor.image.template) {
            switch loc {
            case .local(let p):
                if fileExists(p), !isDirectory(p) { return p }
                tried.append(p)
            case .remote(let url):
                tried.append(url)
            }
        }
        throw JigdoError(.io, path: descriptor.path,
            "template not found (tried \(tried.joined(separator: ", "))); pass --template FILE")
    }

    /// Bytes of the image held in the template, and in parts.
    public var templateBytes: Int64 { template.templateDataLength }
    public var partBytes: Int64 { template.imageLength - template.templateDataLength }
}
