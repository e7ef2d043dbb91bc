import FUSEBridge
import Foundation
import JigdoFormat

/// The client side of a mount's hidden status file (`StatusFile`, served by FUSEBridge): the
/// command line reads it, the bridge only writes it.
enum StatusClient {
    /// Reads the status of the mount at `mountpoint`; nil if it is not a jigdofs mount. Read to
    /// its end, whatever size stat(2) says.
    static func read(mountpoint: String) throws -> (data: Data, report: StatusFile.Report)? {
        let path = (mountpoint.hasSuffix("/") ? mountpoint : mountpoint + "/") + StatusFile.name
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        let data = try handle.readToEnd() ?? Data()
        guard !data.isEmpty else { return nil }
        do {
            return (data, try JSONDecoder().decode(StatusFile.Report.self, from: data))
        } catch {
            throw JigdoError(.badFormat, path: path, "unreadable status: \(error)", underlying: error)
        }
    }
}
