import Foundation

/// A small tmpfs mounted for a test that needs a disk to fill up (ENOSPC) for real. Needs
/// root (tests run as root in CI and the dev container); `available` says whether it can.
/// The test unmounts it with `unmount()` (call it in a `defer`).
public final class Tmpfs: Sendable {
    public let path: String

    /// Whether this process may mount (root).
    public static var available: Bool { getuid() == 0 }

    public init(label: String, sizeBytes: Int) throws {
        path = try temporaryDirectory("tmpfs-\(label)")
        let result = try runProcess("/bin/mount", ["-t", "tmpfs", "-o", "size=\(sizeBytes)", "tmpfs", path], timeoutSeconds: 30)
        guard result.status == 0 else { throw TestClientError(description: "mount tmpfs at \(path) failed: \(result.stderr)") }
    }

    /// Unmounts (lazily, so a process still holding a file there cannot keep it mounted) and removes the mount point.
    public func unmount() {
        _ = try? runProcess("/bin/umount", ["-l", path], timeoutSeconds: 30)
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Fills the file system with one file, leaving at most `leaveBytes` free; returns its path.
    public func fill(leaveBytes: Int) throws -> String {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { throw TestClientError(description: "statvfs \(path) failed") }
        let free = Int(info.f_bavail) * Int(info.f_frsize)
        let filler = path + "/filler"
        let data = Data(count: max(0, free - leaveBytes))
        FileManager.default.createFile(atPath: filler, contents: data)
        return filler
    }
}
