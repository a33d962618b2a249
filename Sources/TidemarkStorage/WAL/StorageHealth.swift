import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Whether a node's logs take writes, for `/ping`, `/metrics` and the node's log. One per
/// node, handed to every `FileWAL` it opens.
///
/// A write refused for lack of space (ENOSPC, EDQUOT) starts a disk-full episode, logged
/// once; the log cuts the partial record back, so the episode ends (logged once) at the next
/// write that gets through, or when `refresh` finds space free again. Any other failure (a
/// failed fsync) leaves that log refusing writes until a restart; it is logged once too.
public final class StorageHealth: Sendable {
    /// What `/ping` and `/metrics` show.
    public struct Reading: Sendable, Equatable {
        /// Writes are refused for lack of space now.
        public var diskFull = false
        /// Disk-full episodes since start.
        public var diskFullEpisodes = 0
        /// Log writes or fsyncs that failed, for any reason.
        public var failedWrites = 0
        /// Some log refuses every write until a restart (its fsync failed).
        public var logFailed = false
        public var lastError: String?
    }

    /// Free bytes `refresh` wants before it ends an episode without a write: a few records'
    /// worth, so the next write is not refused at once again.
    public static let resumeFreeBytesMin = 4 << 20

    private let logger: Logger
    /// Where `refresh` measures free space (the data directory); nil: only writes end an episode.
    private let directory: String?
    /// Mirrors `state.diskFull`, so a successful append (every write) costs one load.
    private let diskFullNow = Atomic<Bool>(false)
    private let state = Mutex(Reading())

    public init(logger: Logger, directory: String? = nil) {
        self.logger = logger
        self.directory = directory
    }

    public var reading: Reading { state.withLock { $0 } }

    /// Writes are refused now (disk full, or a log that failed for good).
    public var isDegraded: Bool { state.withLock { $0.diskFull || $0.logFailed } }

    /// A log write failed; `recoverable` when the log cut it back and takes writes again.
    public func writeFailed(_ error: StorageIOError, recoverable: Bool) {
        let outOfSpace = error.code == ENOSPC || error.code == EDQUOT
        let (startsEpisode, firstFatal) = state.withLock { reading -> (Bool, Bool) in
            reading.failedWrites += 1
            reading.lastError = "\(error)"
            let starts = outOfSpace && recoverable && !reading.diskFull
            if starts {
                reading.diskFull = true
                reading.diskFullEpisodes += 1
                diskFullNow.store(true, ordering: .relaxed)
            }
            let fatal = !recoverable && !reading.logFailed
            if !recoverable { reading.logFailed = true }
            return (starts, fatal)
        }
        if startsEpisode {
            logger.error("disk full: log writes are refused until space is freed; the node goes on by itself once there is space",
                         metadata: ["error": "\(error)"])
        }
        if firstFatal {
            logger.critical("a log write failed and that log refuses every write until the node restarts", metadata: ["error": "\(error)"])
        }
    }

    /// A log write went through: ends a disk-full episode.
    public func writeSucceeded() {
        guard diskFullNow.load(ordering: .relaxed) else { return }
        endEpisode(because: "a log write went through")
    }

    /// Ends a disk-full episode when the data directory has space again, so a node no one
    /// writes to (a load balancer took it out on its degraded `/ping`) comes back.
    public func refresh() {
        guard diskFullNow.load(ordering: .relaxed), let directory else { return }
        var info = statvfs()
        guard statvfs(directory, &info) == 0 else { return }
        if Int(info.f_bavail) * Int(info.f_frsize) >= Self.resumeFreeBytesMin { endEpisode(because: "space is free again") }
    }

    private func endEpisode(because reason: String) {
        let ended = state.withLock { reading -> Bool in
            guard reading.diskFull else { return false }
            reading.diskFull = false
            diskFullNow.store(false, ordering: .relaxed)
            return true
        }
        if ended { logger.notice("disk full episode over: log writes are accepted again", metadata: ["reason": "\(reason)"]) }
    }
}
