import TidemarkIO
import TidemarkStorage
#if canImport(Glibc)
import Glibc
#endif

/// Why the data directory cannot be used.
public struct DataDirectoryError: Error, Sendable, CustomStringConvertible {
    public let description: String
}

/// The node's data directory, created if missing and locked so two nodes never share it.
final class DataDirectory: Sendable {
    let path: String
    private let lockDescriptor: Int32

    init(path: String) throws(DataDirectoryError) {
        self.path = path
        do {
            try FileIO.makeDirectory(path)  // with its parents
        } catch {
            throw DataDirectoryError(description: "cannot create data directory \(path): \(error)")
        }
        let lockPath = path + "/LOCK"
        let descriptor = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o640)
        guard descriptor >= 0 else {
            throw DataDirectoryError(description: "cannot open \(lockPath): \(String(cString: strerror(errno)))")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let reason = errno == EWOULDBLOCK ? "another tidemarkd is using it" : String(cString: strerror(errno))
            close(descriptor)
            throw DataDirectoryError(description: "cannot lock data directory \(path): \(reason)")
        }
        lockDescriptor = descriptor
    }

    deinit { close(lockDescriptor) }

    /// Makes the directory's entries durable; returns why not, or nil.
    func sync() -> String? {
        let descriptor = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { return "cannot open \(path): \(String(cString: strerror(errno)))" }
        defer { close(descriptor) }
        return fsync(descriptor) == 0 ? nil : "fsync \(path): \(String(cString: strerror(errno)))"
    }
}
