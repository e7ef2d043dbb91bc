#if canImport(Glibc)
import Glibc
#endif
import CFuse3

// The C entry points libfuse calls, on its own worker threads, synchronously. They hold no
// state: the filesystem reaches them through fuse_get_context()->private_data (an Unmanaged
// reference retained by FUSEMount for as long as the session exists).

/// The filesystem of the calling FUSE request, or nil outside a request.
private func currentFilesystem() -> JigdoFilesystem? {
    guard let context = fuse_get_context(), let data = context.pointee.private_data else { return nil }
    return Unmanaged<JigdoFilesystem>.fromOpaque(data).takeUnretainedValue()
}

private func path(_ p: UnsafePointer<CChar>?) -> String {
    p.map { String(cString: $0) } ?? ""
}

/// Every operation that would change something: the filesystem is read-only (it is also mounted
/// `ro`, so the kernel normally refuses these before they get here).
private func readOnly() -> Int32 { -EROFS }

func makeOperations() -> fuse_operations {
    var ops = fuse_operations()

    ops.`init` = { conn, cfg in
        if let cfg {
            // The content never changes while mounted: keep pages in the kernel's cache across
            // opens (like FOPEN_KEEP_CACHE for every open) and let attributes and names be cached
            // for long; there is nothing to invalidate.
            cfg.pointee.kernel_cache = 1
            cfg.pointee.auto_cache = 0
            cfg.pointee.entry_timeout = 86400
            cfg.pointee.attr_timeout = 86400
            cfg.pointee.negative_timeout = 86400
            // read() and readdir() use the file handle, never the path: libfuse may skip
            // the path lookup on every read.
            cfg.pointee.nullpath_ok = 1
            cfg.pointee.use_ino = 0
        }
        if let conn {
            // Large sequential reads are the common case (cmp, dd, loop devices). max_readahead
            // arrives holding the kernel's maximum (the mount's read_ahead_kb) and can only be
            // lowered, so it is deliberately left at that maximum. Many readahead requests may be
            // in flight at once, so several worker threads assemble the following ranges while
            // the reader consumes the current one.
            conn.pointee.max_background = 64
            conn.pointee.congestion_threshold = 48
            // Reads may be answered in parallel and out of order (on by default; stated here
            // because the multi-threaded loop depends on it).
            conn.pointee.want |= UInt32(FUSE_CAP_ASYNC_READ) & conn.pointee.capable
            // Nothing is ever written, so write-related capabilities stay off.
            conn.pointee.want &= ~UInt32(FUSE_CAP_WRITEBACK_CACHE)
        }
        return fuse_get_context()?.pointee.private_data
    }

    ops.getattr = { p, st, _ in
        guard let fs = currentFilesystem(), let st else { return -EIO }
        return fs.getattr(path(p), &st.pointee)
    }

    ops.open = { p, fi in
        guard let fs = currentFilesystem(), let fi else { return -EIO }
        let name = path(p)
        let (result, handle) = fs.open(name, flags: fi.pointee.flags)
        if result == 0 {
            fi.pointee.fh = handle
            if name == "/" + StatusFile.name {
                // A new snapshot per open: bypass the page cache and the cached size.
                fi.pointee.direct_io = 1
            } else {
                // Immutable content: pages cached by an earlier open stay valid.
                fi.pointee.keep_cache = 1
            }
        }
        return result
    }

    ops.read = { _, buf, size, offset, fi in
        guard let fs = currentFilesystem(), let fi, let buf else { return -EIO }
        return fs.read(handle: fi.pointee.fh, into: UnsafeMutableRawBufferPointer(start: buf, count: size), at: Int64(offset))
    }

    ops.release = { _, fi in
        if let fs = currentFilesystem(), let fi { fs.release(handle: fi.pointee.fh) }
        return 0
    }

    ops.opendir = { p, fi in
        guard let fs = currentFilesystem(), let fi else { return -EIO }
        let (result, handle) = fs.opendir(path(p))
        if result == 0 {
            fi.pointee.fh = handle
            // Directories never change while mounted: the kernel may keep their listings.
            fi.pointee.cache_readdir = 1
            fi.pointee.keep_cache = 1
        }
        return result
    }

    ops.releasedir = { _, fi in
        if let fs = currentFilesystem(), let fi { fs.release(handle: fi.pointee.fh) }
        return 0
    }

    // With nullpath_ok the path is NULL here: the directory comes from the handle opendir set.
    // Every name is given with offset 0, so libfuse collects the whole listing in one call.
    ops.readdir = { _, buf, filler, _, fi, _ in
        guard let fs = currentFilesystem(), let filler, let fi else { return -EIO }
        return fs.readdir(handle: fi.pointee.fh) { name, type in
            var st = stat()
            st.st_mode = type
            return filler(buf, name, &st, 0, fuse_fill_dir_flags(rawValue: 0)) == 0
        }
    }

    ops.readlink = { p, buf, size in
        guard let fs = currentFilesystem(), let buf, size > 0 else { return -EIO }
        switch fs.readlink(path(p)) {
        case .success(let target):
            // readlink(2) semantics through libfuse: NUL-terminated, truncated to fit.
            let bytes = Array(target.utf8.prefix(size - 1))
            for (i, b) in bytes.enumerated() { buf[i] = CChar(bitPattern: b) }
            buf[bytes.count] = 0
            return 0
        case .failure(let e):
            return e.negated
        }
    }

    ops.statfs = { _, st in
        guard let fs = currentFilesystem(), let st else { return -EIO }
        fs.statfs(&st.pointee)
        return 0
    }

    ops.access = { p, mask in
        guard let fs = currentFilesystem() else { return -EIO }
        return fs.access(path(p), mask: mask)
    }

    ops.write = { _, _, _, _, _ in readOnly() }
    ops.truncate = { _, _, _ in readOnly() }
    ops.create = { _, _, _ in readOnly() }
    ops.mknod = { _, _, _ in readOnly() }
    ops.mkdir = { _, _ in readOnly() }
    ops.unlink = { _ in readOnly() }
    ops.rmdir = { _ in readOnly() }
    ops.symlink = { _, _ in readOnly() }
    ops.link = { _, _ in readOnly() }
    ops.rename = { _, _, _ in readOnly() }
    ops.chmod = { _, _, _ in readOnly() }
    ops.chown = { _, _, _, _ in readOnly() }
    ops.utimens = { _, _, _ in readOnly() }
    ops.setxattr = { _, _, _, _, _ in readOnly() }
    ops.removexattr = { _, _ in readOnly() }
    ops.fallocate = { _, _, _, _, _ in readOnly() }
    return ops
}
