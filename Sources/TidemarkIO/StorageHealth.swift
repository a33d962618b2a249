import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Whether a node's logs take writes, for `/ping`, `/metrics` and the node's log. One per
/// node, handed to every `FileWAL` it opens.
///
/// A write refused for lack of space (ENOSPC, EDQUOT) starts a disk-full episode, logged
/// once; the log cuts the partial record back and takes writes again once there is space.
/// The episode ends (logged once) when every log that was refused has written again, or
/// when `refresh` finds more space free than the largest refused write (and at least
/// `resumeFreeBytesMin`): a write to some other log, or a little space, does not end it, so
/// one episode is not split into several. Any other failure (a failed fsync, a log its owner
/// gave up on) leaves that log refusing writes until a restart; it is logged once too.
public final class StorageHealth: Sendable {
    /// What `/ping` and `/metrics` show.
    public struct Reading: Sendable, Equatable {
        /// Writes are refused for lack of space now.
        public var diskFull = false
        /// Disk-full episodes since start.
        public var diskFullEpisodes = 0
        /// Log writes or fsyncs that failed, for any reason.
        public var failedWrites = 0
        /// Some log refuses every write until a restart (its fsync failed, or its owner gave up on it).
        public var logFailed = false
        public var lastError: String?
    }

    /// Free bytes `refresh` wants at least before it ends an episode without a write: a few
    /// records' worth, so the next write is not refused at once again. It wants more when a
    /// refused write was larger.
    public static let resumeFreeBytesMin = 4 << 20

    /// The reading, and what ends the current episode.
    private struct State {
        var reading = Reading()
        /// Logs refused for lack of space this episode that have not written since, by name.
        var refusedLogs: Set<String> = []
        /// The largest write refused for lack of space this episode.
        var refusedBytesMax = 0
    }

    private let logger: Logger
    /// Where `refresh` measures free space (the data directory); nil: only writes end an episode.
    private let directory: String?
    /// Mirrors `state.reading.diskFull`, so a successful append (every write) costs one load.
    private let diskFullNow = Atomic<Bool>(false)
    private let state = Mutex(State())

    public init(logger: Logger, directory: String? = nil) {
        self.logger = logger
        self.directory = directory
    }

    public var reading: Reading { state.withLock { $0.reading } }

    /// A write of `bytes` to the log named `log` (its directory) failed; `recoverable` when the
    /// log cut it back and takes writes again.
    public func writeFailed(_ error: StorageIOError, recoverable: Bool, log: String = "", bytes: Int = 0) {
        let outOfSpace = error.isOutOfSpace
        let (startsEpisode, firstFatal) = state.withLock { state -> (Bool, Bool) in
            state.reading.failedWrites += 1
            state.reading.lastError = "\(error)"
            var starts = false
            if outOfSpace && recoverable {
                starts = !state.reading.diskFull
                if starts {
                    state.reading.diskFull = true
                    state.reading.diskFullEpisodes += 1
                    diskFullNow.store(true, ordering: .relaxed)
                }
                state.refusedLogs.insert(log)
                state.refusedBytesMax = max(state.refusedBytesMax, bytes)
            }
            // A log that failed for good writes no more: it cannot end the episode.
            if !recoverable { state.refusedLogs.remove(log) }
            let fatal = !recoverable && !state.reading.logFailed
            if !recoverable { state.reading.logFailed = true }
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

    /// The owner of the log named `log` stopped using it after a failure the log itself did
    /// not count as fatal (Raft stops on any log error but running out of space): the node
    /// refuses writes until a restart, as when the log failed.
    public func logStopped(_ log: String, reason: String) {
        let first = state.withLock { state -> Bool in
            state.refusedLogs.remove(log)
            state.reading.lastError = reason
            defer { state.reading.logFailed = true }
            return !state.reading.logFailed
        }
        if first { logger.critical("a log failed and its writes are refused until the node restarts", metadata: ["log": "\(log)", "error": "\(reason)"]) }
    }

    /// A write to the log named `log` went through: once every log refused this episode has
    /// written again, the episode is over.
    public func writeSucceeded(log: String = "") {
        guard diskFullNow.load(ordering: .relaxed) else { return }
        endEpisode(because: "every log refused for lack of space has written again") { state in
            state.refusedLogs.remove(log)
            return state.refusedLogs.isEmpty
        }
    }

    /// Ends a disk-full episode when the data directory has more space free than the largest
    /// write refused (and `resumeFreeBytesMin`), so a node no one writes to (a load balancer
    /// took it out on its degraded `/ping`) comes back.
    public func refresh() {
        guard diskFullNow.load(ordering: .relaxed), let directory else { return }
        let (wanted, failuresBefore) = state.withLock { (max(Self.resumeFreeBytesMin, $0.refusedBytesMax), $0.reading.failedWrites) }
        var info = statvfs()
        guard statvfs(directory, &info) == 0 else { return }
        // A file system may report block counts whose product passes Int: that is plenty free.
        let (free, overflow) = Int(clamping: info.f_bavail).multipliedReportingOverflow(by: Int(clamping: info.f_frsize))
        guard overflow || free > wanted else { return }
        // A write refused while the space was measured says otherwise: the episode goes on.
        endEpisode(because: "space is free again") { $0.reading.failedWrites == failuresBefore }
    }

    /// Ends the episode if `isOver` says so, decided and done under one lock, so a refusal
    /// that lands meanwhile is never wiped.
    private func endEpisode(because reason: String, when isOver: (inout State) -> Bool) {
        let ended = state.withLock { state -> Bool in
            guard state.reading.diskFull, isOver(&state) else { return false }
            state.reading.diskFull = false
            state.refusedLogs = []
            state.refusedBytesMax = 0
            diskFullNow.store(false, ordering: .relaxed)
            return true
        }
        if ended { logger.notice("disk full episode over: log writes are accepted again", metadata: ["reason": "\(reason)"]) }
    }
}

extension StorageIOError {
    /// Refused for lack of space (ENOSPC, or EDQUOT past a quota): may succeed once space is freed.
    public var isOutOfSpace: Bool { code == ENOSPC || code == EDQUOT }
}
