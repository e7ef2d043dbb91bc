/// The kind of a file in the image, from its Rock Ridge mode (or the directory flag).
public enum ISOFileType: String, Sendable {
    case regular, directory, symlink, characterDevice, blockDevice, fifo, socket

    init(mode: UInt32) {
        switch mode & 0o170000 {
        case 0o040000: self = .directory
        case 0o120000: self = .symlink
        case 0o020000: self = .characterDevice
        case 0o060000: self = .blockDevice
        case 0o010000: self = .fifo
        case 0o140000: self = .socket
        default: self = .regular
        }
    }

    var modeBits: UInt32 {
        switch self {
        case .regular: return 0o100000
        case .directory: return 0o040000
        case .symlink: return 0o120000
        case .characterDevice: return 0o020000
        case .blockDevice: return 0o060000
        case .fifo: return 0o010000
        case .socket: return 0o140000
        }
    }
}

/// A byte range of the image: where (part of) a file's or directory's data lies.
public struct ISOExtent: Sendable, Hashable {
    /// Offset in the image, in bytes.
    public var offset: Int64
    public var length: Int64

    public init(offset: Int64, length: Int64) {
        self.offset = offset
        self.length = length
    }
}

/// The numbers of a device node; `makedev(major, minor)` gives st_rdev.
public struct ISODevice: Sendable, Hashable {
    public var major: UInt32
    public var minor: UInt32

    public init(major: UInt32, minor: UInt32) {
        self.major = major
        self.minor = minor
    }

    /// From PN's high and low words. xorriso writes the whole old-style dev_t in the low word
    /// (high 0), genisoimage writes major and minor: told apart as Linux's rock.c does.
    init(pnHigh high: UInt32, low: UInt32) {
        if high == 0 && low & ~0xFF != 0 {
            self.init(major: low >> 8, minor: low & 0xFF)
        } else {
            self.init(major: high, minor: low)
        }
    }
}

/// A file, directory or symlink in the image, with what `stat` needs.
public struct ISOEntry: Sendable {
    /// The name in its directory (Rock Ridge, else Joliet, else the ISO 9660 name without
    /// `;1`). The root's name is "/".
    public var name: String
    public var type: ISOFileType
    /// The full st_mode (type bits and permissions).
    public var mode: UInt32
    /// Rock Ridge's link count; 1 without Rock Ridge, which tells find(1) the count is unknown
    /// (2 would make it skip the subdirectories of a directory).
    public var links: UInt32
    public var uid: UInt32
    public var gid: UInt32
    /// Bytes: a file's length (64-bit, the sum of its extents), a directory's extent length,
    /// a symlink's target length.
    public var size: Int64
    /// Seconds since 1970 (UTC).
    public var mtime: Int64
    public var atime: Int64
    public var ctime: Int64
    /// The target of a symbolic link, as stored.
    public var symlinkTarget: String?
    /// Major and minor number of a device node (Rock Ridge PN).
    public var device: ISODevice?
    /// Where the data lies in the image, in file order (several for multi-extent files; the
    /// directory's own extent for a directory; none for an empty file or a symlink).
    public var extents: [ISOExtent]
    /// Unique within the volume and stable across calls (usable as an inode number): the
    /// image offset of a directory's extent, or of a file's (first) directory record.
    public var id: Int64
    /// How the data is stored when it is not plain bytes.
    public var storage: Storage = .plain

    public enum Storage: Sendable, Equatable {
        case plain
        /// zisofs ("pz"): `read` inflates; `extents` and `imageRanges` give the stored bytes.
        case zisofs(log2BlockSize: Int)
        /// Interleaved or compressed in an unknown way: listed, but reads fail.
        case unsupported(String)
    }

    public var isDirectory: Bool { type == .directory }
}
