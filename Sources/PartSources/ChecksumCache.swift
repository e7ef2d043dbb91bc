#if canImport(Glibc)
import Glibc
#endif
import CSQLite
import JigdoFormat
import Logging
import Synchronization

/// A persistent cache of file checksums for `--scan`, so a second mount of the same release
/// does not read the packages again. An entry is used only when path, size, mtime (ns) and inode
/// all still match. SQLite (WAL journal) keeps the file consistent across crashes; a cache that
/// cannot be opened or written only costs speed, never correctness.
///
/// An entry is a hint, never proof: a file found through it is hashed before its bytes are
/// served (`LocalParts`, `ISOImageParts`), and a wrong entry is dropped (`forget`). The
/// directory, the database and its `-wal`/`-shm`/`-journal` files must be this user's own,
/// writable by no one else and no links (`CacheTrust`); the database is opened with
/// SQLITE_OPEN_NOFOLLOW. Otherwise the cache is refused (the caller scans without it).
public final class ChecksumCache: Sendable {
    public let path: String
    private let db: Mutex<OpaquePointer?>
    private let logger: Logger

    public init(directory: String, logger: Logger = Logger(label: "jigdofs.scan-cache")) throws {
        self.logger = logger
        try CacheTrust.makeTrustedDirectories(directory)
        path = directory + "/checksums.sqlite"
        for suffix in ["", "-wal", "-shm", "-journal"] { try CacheTrust.checkFileIfPresent(path + suffix) }
        var handle: OpaquePointer?
        let rc = sqlite3_open_v2(path, &handle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX | SQLITE_OPEN_NOFOLLOW, nil)
        guard rc == SQLITE_OK, let handle else {
            let msg = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "error \(rc)"
            sqlite3_close(handle)
            throw JigdoError(.io, path: path, "cannot open checksum cache: \(msg)")
        }
        sqlite3_busy_timeout(handle, 10_000)
        db = Mutex(handle)
        try exec("""
            PRAGMA journal_mode=WAL;
            PRAGMA synchronous=NORMAL;
            CREATE TABLE IF NOT EXISTS files (
                path TEXT NOT NULL, kind TEXT NOT NULL, size INTEGER NOT NULL,
                mtime_ns INTEGER NOT NULL, inode INTEGER NOT NULL, checksum BLOB NOT NULL,
                PRIMARY KEY (path, kind));
            """)
    }

    deinit {
        _ = db.withLock { sqlite3_close($0) }
    }

    private func exec(_ sql: String) throws {
        try db.withLock { handle in
            var err: UnsafeMutablePointer<CChar>?
            if sqlite3_exec(handle, sql, nil, nil, &err) != SQLITE_OK {
                let msg = err.map { String(cString: $0) } ?? "unknown error"
                sqlite3_free(err)
                throw JigdoError(.io, path: path, "checksum cache: \(msg)")
            }
        }
    }

    /// Cached checksums of the files that did not change since they were hashed.
    public func lookup(_ files: [ScannedFile], kind: ChecksumKind) -> [String: Checksum] {
        db.withLock { handle in
            var out: [String: Checksum] = [:]
            var stmt: OpaquePointer?
            guard sqlite3_prepare_v2(handle, "SELECT size, mtime_ns, inode, checksum FROM files WHERE path = ? AND kind = ?", -1, &stmt, nil) == SQLITE_OK else {
                logger.warning("\(path): checksum cache unreadable, hashing everything: \(String(cString: sqlite3_errmsg(handle)))")
                return out
            }
            defer { sqlite3_finalize(stmt) }
            for f in files {
                sqlite3_reset(stmt)
                jfs_sqlite3_bind_text_transient(stmt, 1, f.path)
                jfs_sqlite3_bind_text_transient(stmt, 2, kind.rawValue)
                guard sqlite3_step(stmt) == SQLITE_ROW else { continue }
                guard sqlite3_column_int64(stmt, 0) == f.size,
                      sqlite3_column_int64(stmt, 1) == f.modificationTimeNs,
                      UInt64(bitPattern: sqlite3_column_int64(stmt, 2)) == f.inode else { continue }
                let n = Int(sqlite3_column_bytes(stmt, 3))
                guard n == kind.byteCount, let blob = sqlite3_column_blob(stmt, 3) else { continue }
                guard let sum = Checksum(validating: UnsafeRawBufferPointer(start: blob, count: n)) else { continue }
                out[f.path] = sum
            }
            return out
        }
    }

    /// Drops the entry of a file whose cached checksum turned out wrong when it was checked.
    public func forget(path file: String, kind: ChecksumKind) {
        db.withLock { handle in
            var stmt: OpaquePointer?
            guard sqlite3_prepare_v2(handle, "DELETE FROM files WHERE path = ? AND kind = ?", -1, &stmt, nil) == SQLITE_OK else { return }
            defer { sqlite3_finalize(stmt) }
            jfs_sqlite3_bind_text_transient(stmt, 1, file)
            jfs_sqlite3_bind_text_transient(stmt, 2, kind.rawValue)
            _ = sqlite3_step(stmt)
        }
    }

    /// Records checksums in one transaction.
    public func store(_ entries: [(ScannedFile, Checksum)], kind: ChecksumKind) {
        guard !entries.isEmpty else { return }
        db.withLock { handle in
            var stmt: OpaquePointer?
            guard sqlite3_exec(handle, "BEGIN IMMEDIATE", nil, nil, nil) == SQLITE_OK,
                  sqlite3_prepare_v2(handle, "INSERT OR REPLACE INTO files (path, kind, size, mtime_ns, inode, checksum) VALUES (?, ?, ?, ?, ?, ?)", -1, &stmt, nil) == SQLITE_OK else {
                logger.warning("\(path): cannot write checksum cache: \(String(cString: sqlite3_errmsg(handle)))")
                sqlite3_exec(handle, "ROLLBACK", nil, nil, nil)
                return
            }
            defer { sqlite3_finalize(stmt) }
            for (f, sum) in entries {
                sqlite3_reset(stmt)
                jfs_sqlite3_bind_text_transient(stmt, 1, f.path)
                jfs_sqlite3_bind_text_transient(stmt, 2, kind.rawValue)
                sqlite3_bind_int64(stmt, 3, f.size)
                sqlite3_bind_int64(stmt, 4, f.modificationTimeNs)
                sqlite3_bind_int64(stmt, 5, Int64(bitPattern: f.inode))
                sum.withUnsafeBytes { _ = jfs_sqlite3_bind_blob_transient(stmt, 6, $0.baseAddress, Int32($0.count)) }
                if sqlite3_step(stmt) != SQLITE_DONE {
                    logger.warning("\(path): cannot write checksum cache: \(String(cString: sqlite3_errmsg(handle)))")
                    sqlite3_exec(handle, "ROLLBACK", nil, nil, nil)
                    return
                }
            }
            if sqlite3_exec(handle, "COMMIT", nil, nil, nil) != SQLITE_OK {
                logger.warning("\(path): cannot commit checksum cache: \(String(cString: sqlite3_errmsg(handle)))")
                sqlite3_exec(handle, "ROLLBACK", nil, nil, nil)
            }
        }
    }
}
