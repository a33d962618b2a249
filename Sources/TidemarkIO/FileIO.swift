#if canImport(Glibc)
import Glibc
#endif

/// A system call on a file that failed, with the path and the errno text.
public struct StorageIOError: Error, Sendable, CustomStringConvertible {
    public let operation: String
    public let path: String
    public let code: Int32

    public var description: String { "\(operation) \(path): \(String(cString: strerror(code)))" }
}

/// Every file system call of the storage engine, retrying EINTR and throwing typed errors.
public enum FileIO {
    public static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o644) throws(StorageIOError) -> Int32 {
        while true {
            let descriptor = Glibc.open(path, flags | O_CLOEXEC, mode)
            if descriptor >= 0 { return descriptor }
            if errno != EINTR { throw StorageIOError(operation: "open", path: path, code: errno) }
        }
    }

    /// Writes all of `bytes` at the file's current offset.
    public static func writeAll(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws(StorageIOError) {
        var offset = 0
        while offset < bytes.count {
            let written = Glibc.write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                throw StorageIOError(operation: "write", path: path, code: errno)
            }
            offset += written
        }
    }

    /// Writes all of `bytes` at `offset` (the file grows, with a hole, if it was shorter).
    public static func write(_ descriptor: Int32, _ bytes: [UInt8], at offset: Int, path: String) throws(StorageIOError) {
        let failure = bytes.withUnsafeBytes { raw -> Int32? in
            var done = 0
            while done < raw.count {
                let written = pwrite(descriptor, raw.baseAddress! + done, raw.count - done, off_t(offset + done))
                if written < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                done += written
            }
            return nil
        }
        if let failure { throw StorageIOError(operation: "write", path: path, code: failure) }
    }

    public static func writeAll(_ descriptor: Int32, _ bytes: [UInt8], path: String) throws(StorageIOError) {
        var failure: StorageIOError?
        bytes.withUnsafeBytes { buffer in
            do throws(StorageIOError) { try writeAll(descriptor, buffer, path: path) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Reads exactly `count` bytes at `offset`, or fewer only at the end of the file.
    public static func read(_ descriptor: Int32, count: Int, at offset: Int, path: String) throws(StorageIOError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let got = bytes.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress! + done, count - done, off_t(offset + done)) }
            if got < 0 {
                if errno == EINTR { continue }
                throw StorageIOError(operation: "read", path: path, code: errno)
            }
            if got == 0 { break }
            done += got
        }
        if done < count { bytes.removeSubrange(done...) }
        return bytes
    }

    public static func fsync(_ descriptor: Int32, path: String) throws(StorageIOError) {
        while Glibc.fsync(descriptor) != 0 {
            if errno != EINTR { throw StorageIOError(operation: "fsync", path: path, code: errno) }
        }
    }

    public static func size(_ descriptor: Int32, path: String) throws(StorageIOError) -> Int {
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw StorageIOError(operation: "stat", path: path, code: errno) }
        return Int(info.st_size)
    }

    public static func truncate(_ descriptor: Int32, to size: Int, path: String) throws(StorageIOError) {
        guard ftruncate(descriptor, off_t(size)) == 0 else { throw StorageIOError(operation: "truncate", path: path, code: errno) }
    }

    /// Whether anything (a file, a directory) is at `path`.
    public static func exists(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0
    }

    public static func close(_ descriptor: Int32) { _ = Glibc.close(descriptor) }

    /// Makes a directory's entries (creates, renames, removals) durable.
    public static func syncDirectory(_ path: String) throws(StorageIOError) {
        let descriptor = try open(path, O_RDONLY | O_DIRECTORY)
        defer { close(descriptor) }
        try fsync(descriptor, path: path)
    }

    /// Makes `path` and any missing parents. Nothing is synced: a crash may lose the new
    /// directories (see `makeDirectoryDurably`). Returns the directories it made, outermost first.
    @discardableResult
    public static func makeDirectory(_ path: String) throws(StorageIOError) -> [String] {
        var built = path.hasPrefix("/") ? "" : "."
        var made: [String] = []
        for part in path.split(separator: "/") {
            built += "/" + part
            if mkdir(built, 0o750) == 0 {
                made.append(built)
            } else if errno != EEXIST {
                throw StorageIOError(operation: "mkdir", path: built, code: errno)
            }
        }
        return made
    }

    /// `makeDirectory`, then syncs every directory it made and the parent of each, so the
    /// whole new chain survives a crash: a file made in `path` and synced there is then
    /// reachable after one. (A directory's fsync covers its own entries, not its name in
    /// its parent.)
    public static func makeDirectoryDurably(_ path: String) throws(StorageIOError) {
        let made = try makeDirectory(path)
        guard let outermost = made.first else { return }
        // Innermost first; the parent of each but the outermost is the next one synced.
        for directory in made.reversed() { try syncDirectory(directory) }
        try syncDirectory(parent(of: outermost))
    }

    /// The directory holding `path` ("/" for a top-level one).
    public static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    public static func rename(_ from: String, _ to: String) throws(StorageIOError) {
        guard Glibc.rename(from, to) == 0 else { throw StorageIOError(operation: "rename", path: "\(from) -> \(to)", code: errno) }
    }

    /// Another name for the file at `from` (same file system): the file lives while either does.
    public static func link(_ from: String, _ to: String) throws(StorageIOError) {
        guard Glibc.link(from, to) == 0 else { throw StorageIOError(operation: "link", path: "\(from) -> \(to)", code: errno) }
    }

    /// Removes a directory and the files in it (one level: what the engine makes there).
    public static func removeDirectory(_ path: String) throws(StorageIOError) {
        for name in try list(path) { try remove(path + "/" + name) }
        guard rmdir(path) == 0 || errno == ENOENT else { throw StorageIOError(operation: "rmdir", path: path, code: errno) }
    }

    public static func remove(_ path: String) throws(StorageIOError) {
        guard unlink(path) == 0 || errno == ENOENT else { throw StorageIOError(operation: "unlink", path: path, code: errno) }
    }

    /// Names in a directory (without `.` and `..`), sorted.
    public static func list(_ path: String) throws(StorageIOError) -> [String] {
        guard let directory = opendir(path) else { throw StorageIOError(operation: "opendir", path: path, code: errno) }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// A whole file, or nil if there is none.
    public static func readFile(_ path: String) throws(StorageIOError) -> [UInt8]? {
        let descriptor: Int32
        do { descriptor = try open(path, O_RDONLY) } catch where error.code == ENOENT { return nil }
        defer { close(descriptor) }
        return try read(descriptor, count: try size(descriptor, path: path), at: 0, path: path)
    }

    /// Writes a whole file durably: temporary name, fsync, rename, directory fsync.
    public static func writeFileAtomically(_ bytes: [UInt8], to path: String, directory: String) throws(StorageIOError) {
        try writeFileAtomically(parts: [bytes], to: path, directory: directory)
    }

    /// `writeFileAtomically` of the parts one after the other, without joining them first (a
    /// segment's body and footer: joined, a big merge's output would be in memory twice).
    public static func writeFileAtomically(parts: [[UInt8]], to path: String, directory: String) throws(StorageIOError) {
        let temporary = path + ".tmp"
        let descriptor = try open(temporary, O_WRONLY | O_CREAT | O_TRUNC)
        do {
            for part in parts { try writeAll(descriptor, part, path: temporary) }
            try fsync(descriptor, path: temporary)
        } catch {
            close(descriptor)
            try? remove(temporary)
            throw error
        }
        close(descriptor)
        try rename(temporary, path)
        try syncDirectory(directory)
    }
}
