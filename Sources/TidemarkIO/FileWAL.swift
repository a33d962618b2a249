import Foundation
#if canImport(Glibc)
import Glibc
#endif
import TidemarkCore

/// A write-ahead log in numbered files: `<first sequence>.wal`, each a run of records
/// `u32 length | u32 CRC32C(sequence ‖ payload) | u64 sequence | payload`.
///
/// Appends from many threads are serialised by `lock`; under `batch` the thread that
/// finds no fsync running becomes the leader and syncs for everyone written so far.
public final class FileWAL: WriteAheadLog, @unchecked Sendable {
    public static let recordHeaderBytes = LogScan.recordHeaderBytes
    public static let payloadBytesMax = 64 << 20

    private let directory: String
    private let policy: WALSyncPolicy
    /// Told of failed and successful writes (disk full comes and goes); nil in tools and tests.
    private let health: StorageHealth?
    private let wholeLastRecordIsDamage: Bool
    private let lock = ConditionLock(conditions: 1)
    // protected by lock:
    private var descriptor: Int32 = -1
    private var fileName = ""
    /// Bytes of the current file that hold whole records: a failed write is cut back to here.
    private var fileBytes = 0
    private var files: [(firstSequence: UInt64, name: String)] = []
    private var nextSequence: UInt64 = 1
    private var writtenSequence: UInt64 = 0
    private var durableSequence: UInt64 = 0
    private var syncing = false
    /// Failed appends cut back since the last fsync began: those cuts are not durable yet.
    private var cutsUnsynced = 0
    private var failure: StorageIOError?
    private var replayed = false
    private var intervalThreadRunning = false
    private var closed = false
    private var syncs = 0
    private var durabilityWaiters: [(sequence: UInt64, callback: @Sendable (Error?) -> Void)] = []

    /// `wholeLastRecordIsDamage`: a log that must not lose an acknowledged last record (the
    /// users log) takes a whole last record failing its CRC for damage, not a torn tail.
    public init(directory: String, policy: WALSyncPolicy, health: StorageHealth? = nil, wholeLastRecordIsDamage: Bool = false) throws {
        self.directory = directory
        self.policy = policy
        self.health = health
        self.wholeLastRecordIsDamage = wholeLastRecordIsDamage
        try FileIO.makeDirectory(directory)
        for name in try FileIO.list(directory) where name.hasSuffix(".wal") {
            guard let first = UInt64(name.dropLast(4)) else { continue }
            files.append((first, name))
        }
        files.sort { $0.firstSequence < $1.firstSequence }
    }

    deinit { if descriptor >= 0 { FileIO.close(descriptor) } }

    /// Makes `directory` an empty log whose first record will be `firstSequence` (a replica
    /// that starts from an image takes the image's index + 1), removing any log there. The
    /// empty file's name carries the sequence: replay continues after it.
    public static func makeEmpty(directory: String, firstSequence: UInt64) throws {
        precondition(firstSequence > 0, "sequences start at 1")
        try FileIO.makeDirectory(directory)
        for name in try FileIO.list(directory) where name.hasSuffix(".wal") { try FileIO.remove(directory + "/" + name) }
        let path = directory + "/" + String(format: "%020llu.wal", firstSequence)
        let descriptor = try FileIO.open(path, O_WRONLY | O_CREAT | O_TRUNC)
        defer { FileIO.close(descriptor) }
        try FileIO.fsync(descriptor, path: path)
        try FileIO.syncDirectory(directory)
    }

    public func replay(_ body: (UInt64, [UInt8]) throws -> Void) throws -> WALReplayReport {
        var report = WALReplayReport()
        try lock.withLock {
            precondition(!replayed, "replay runs once, before the first append")
            for (index, file) in files.enumerated() {
                let path = directory + "/" + file.name
                let isLast = index == files.count - 1
                let bytes = try Self.readWhole(path)
                if report.records > 0 && file.firstSequence != report.lastSequence + 1 {
                    if Self.isAbandonedRotation(file.firstSequence, after: report.lastSequence, isLast: isLast, bytes: bytes) {
                        try FileIO.remove(path)
                        files.removeLast()
                        break
                    }
                    throw LogDamageError(path: path, offset: 0, reason: "starts at sequence \(file.firstSequence) but the log before ends at \(report.lastSequence)")
                }
                // A file's name is the sequence of its first record.
                let scan = LogScan.scan(bytes, firstSequence: file.firstSequence, payloadBytesMax: Self.payloadBytesMax)
                if let damage = Self.damage(scan, bytes, isLast: isLast, wholeLastRecordIsDamage: wholeLastRecordIsDamage) {
                    throw LogDamageError(path: path, offset: scan.validBytes, reason: damage.reason, followingOffset: damage.followingOffset)
                }
                for record in scan.records {
                    try body(record.sequence, Array(bytes[record.payload]))
                    report.records += 1
                    report.lastSequence = record.sequence
                }
                if case .tornTail = scan.ending {
                    let descriptor = try FileIO.open(path, O_WRONLY)
                    defer { FileIO.close(descriptor) }
                    try FileIO.truncate(descriptor, to: scan.validBytes, path: path)
                    try FileIO.fsync(descriptor, path: path)
                    report.bytesCut += bytes.count - scan.validBytes
                    report.cutPath = path
                    report.cutOffset = scan.validBytes
                }
                if isLast { fileBytes = scan.validBytes }
            }
            // A file left empty by a truncation still names the next sequence: never reuse one.
            let lastSequence = max(report.lastSequence, (files.last?.firstSequence ?? 1) - 1)
            nextSequence = lastSequence + 1
            writtenSequence = lastSequence
            durableSequence = lastSequence
            replayed = true
            if let last = files.last {
                // Appends continue in the newest file, after its last good record.
                descriptor = try FileIO.open(directory + "/" + last.name, O_WRONLY | O_APPEND)
                fileName = last.name
            } else {
                try openNewFileLocked()
            }
        }
        startIntervalSyncIfNeeded()
        return report
    }

    /// A whole log file.
    /// An empty last file named inside the sequences before it: made for a rotation whose
    /// directory sync failed while appends went on in the file before. It never held a record,
    /// so replay removes it and `--repair` leaves it to replay.
    public static func isAbandonedRotation(_ firstSequence: UInt64, after lastSequence: UInt64, isLast: Bool, bytes: [UInt8]) -> Bool {
        isLast && bytes.isEmpty && firstSequence <= lastSequence
    }

    /// What replay and `--repair` take for damage in one file, from its scan: nil when it is
    /// sound or ends in a torn tail replay may cut.
    public static func damage(_ scan: LogScan, _ bytes: [UInt8], isLast: Bool, wholeLastRecordIsDamage: Bool) -> (reason: String, followingOffset: Int?)? {
        switch scan.ending {
        case .clean:
            return nil
        case .damaged(let reason, let following):
            return (reason, following)
        case .tornTail(let reason):
            // Files before the last were synced before the next one began: no append was cut short there.
            if !isLast { return (reason + " in a WAL file that is not the last", nil) }
            if wholeLastRecordIsDamage && LogScan.isWholeDamagedRecord(bytes, at: scan.validBytes, payloadBytesMax: payloadBytesMax) {
                return ("the last record is whole but fails its CRC", nil)
            }
            return nil
        }
    }

    public static func readWhole(_ path: String) throws -> [UInt8] {
        let descriptor = try FileIO.open(path, O_RDONLY)
        defer { FileIO.close(descriptor) }
        return try FileIO.read(descriptor, count: try FileIO.size(descriptor, path: path), at: 0, path: path)
    }

    public func append(_ payloads: [[UInt8]]) throws -> UInt64 {
        precondition(!payloads.isEmpty)
        var frame = ByteWriter(capacity: payloads.reduce(0) { $0 + $1.count + Self.recordHeaderBytes })
        lock.lock()
        defer { lock.unlock() }
        precondition(replayed, "replay the WAL before appending")
        if let failure { throw failure }
        guard !closed else { throw StorageIOError(operation: "append", path: directory, code: EBADF) }
        let first = nextSequence
        for (index, payload) in payloads.enumerated() {
            precondition(payload.count <= Self.payloadBytesMax, "WAL record larger than payloadBytesMax")
            let sequence = first + UInt64(index)
            let start = frame.count
            frame.write(littleEndian: UInt32(payload.count))
            frame.write(littleEndian: UInt32(0))
            frame.write(littleEndian: sequence)
            frame.write(bytes: payload)
            let crc = frame.bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[(start + 8)...])) }
            frame.patch(littleEndian: crc, at: start + 4)
        }
        let last = first + UInt64(payloads.count) - 1
        let path = directory + "/" + fileName
        do {
            try FileIO.writeAll(descriptor, frame.bytes, path: path)
        } catch {
            // A write that failed part way left part of a record. Cut it off so the file ends at
            // its last whole record: later appends then follow good records. Out of space, the
            // log takes writes again once there is space; any other failure, or a cut that fails
            // (the tail stays torn for recovery to cut), refuses everything from now on.
            do throws(StorageIOError) {
                try FileIO.truncate(descriptor, to: fileBytes, path: path)
                cutsUnsynced += 1
                if !error.isOutOfSpace { failure = error }
            } catch let cutError {
                failure = cutError
            }
            health?.writeFailed(error, recoverable: failure == nil, log: directory, bytes: frame.count)
            throw error
        }
        fileBytes += frame.count
        health?.writeSucceeded(log: directory)
        nextSequence = last + 1
        writtenSequence = last
        if policy == .always { try syncLocked(through: last) }
        return last
    }

    public func whenDurable(_ sequence: UInt64, _ callback: @escaping @Sendable (Error?) -> Void) {
        let ready: Error?? = lock.withLock {
            if let failure { return .some(failure) }
            if durableSequence >= sequence { return .some(nil) }
            durabilityWaiters.append((sequence, callback))
            return .none
        }
        if let ready { callback(ready) }
    }

    /// Waiters whose records are now durable (or can never be); the caller holds the lock
    /// and calls them after releasing it.
    private func takeReadyWaitersLocked() -> [(@Sendable (Error?) -> Void, Error?)] {
        guard !durabilityWaiters.isEmpty else { return [] }
        if let failure {
            defer { durabilityWaiters.removeAll() }
            return durabilityWaiters.map { ($0.callback, failure) }
        }
        let ready = durabilityWaiters.filter { $0.sequence <= durableSequence }
        durabilityWaiters.removeAll { $0.sequence <= durableSequence }
        return ready.map { ($0.callback, nil) }
    }

    public func waitDurable(_ sequence: UInt64) throws {
        lock.lock()
        defer { lock.unlock() }
        while durableSequence < sequence {
            if let failure { throw failure }
            if case .intervalMs = policy { lock.wait() } else { try syncLocked(through: sequence) }
        }
    }

    /// Makes everything through `sequence` durable; the caller holds the lock. If another
    /// thread is syncing, wait for it: its fsync may cover us, else sync what it missed.
    private func syncLocked(through sequence: UInt64) throws {
        while durableSequence < sequence {
            if let failure { throw failure }
            if syncing {
                lock.wait()
                continue
            }
            syncing = true
            let target = writtenSequence
            let descriptor = descriptor, path = directory + "/" + fileName
            let cuts = cutsUnsynced
            lock.unlock()
            var syncError: StorageIOError?
            do throws(StorageIOError) { try FileIO.fsync(descriptor, path: path) } catch { syncError = error }
            lock.lock()
            syncing = false
            if let syncError {
                failSyncLocked(syncError)
            } else {
                durableSequence = max(durableSequence, target)
                cutsUnsynced -= cuts
                syncs += 1
            }
            lock.broadcast()
        }
    }

    /// After a failed fsync the page cache state is unknown: refuse everything from now on.
    private func failSyncLocked(_ error: StorageIOError) {
        failure = error
        health?.writeFailed(error, recoverable: false, log: directory)
    }

    /// Syncs the file, then starts a new one. Also when every record is durable already but
    /// a failed append was cut back since: the file is no longer the last, where replay
    /// takes a torn tail only in the last, so the cut must be on disk before the next begins.
    public func rotate() throws {
        try lock.withLock {
            precondition(replayed)
            try syncLocked(through: writtenSequence)
            if cutsUnsynced > 0 {
                // Under the lock throughout: no append or other sync runs meanwhile.
                while syncing { lock.wait() }
                if let failure { throw failure }
                do throws(StorageIOError) { try FileIO.fsync(descriptor, path: directory + "/" + fileName) } catch {
                    failSyncLocked(error)
                    lock.broadcast()
                    throw error
                }
                cutsUnsynced = 0
                syncs += 1
            }
            try openNewFileLocked()
        }
    }

    public func truncate(through sequence: UInt64) throws {
        try lock.withLock {
            // A file can go when the next file starts at or before sequence + 1.
            while files.count > 1 && files[1].firstSequence <= sequence + 1 {
                try FileIO.remove(directory + "/" + files[0].name)
                files.removeFirst()
            }
            try FileIO.syncDirectory(directory)
        }
    }

    public func close() {
        lock.withLock {
            closed = true
            if descriptor >= 0 {
                try? FileIO.fsync(descriptor, path: fileName)
                FileIO.close(descriptor)
                descriptor = -1
            }
            lock.broadcast()
        }
    }

    /// fsyncs of appended records (or of a cut-back) so far.
    public var syncCount: Int { lock.withLock { syncs } }

    /// The log refuses every append from now on (a failed fsync or cut-back, any write error
    /// but lack of space, or `close`). An append refused for lack of space leaves it usable.
    public var hasFailed: Bool { lock.withLock { failure != nil || closed } }

    /// The sequence of the last record appended (or, right after `replay`, recovered).
    public var lastSequence: UInt64 { lock.withLock { writtenSequence } }

    /// Bytes of all WAL files, for tests and metrics.
    public func totalBytes() throws -> Int {
        try lock.withLock {
            try files.reduce(0) { total, file in
                let descriptor = try FileIO.open(directory + "/" + file.name, O_RDONLY)
                defer { FileIO.close(descriptor) }
                return total + (try FileIO.size(descriptor, path: file.name))
            }
        }
    }

    private func openNewFileLocked() throws {
        if let last = files.last, last.firstSequence == nextSequence {
            // The newest file holds nothing yet: keep appending to it.
            if descriptor < 0 { descriptor = try FileIO.open(directory + "/" + last.name, O_WRONLY | O_APPEND) }
            fileName = last.name
            fileBytes = 0
            return
        }
        let name = String(format: "%020llu.wal", nextSequence)
        // The old file stays open until the new one is: refused (no inode free), appends go on there.
        let opened = try FileIO.open(directory + "/" + name, O_WRONLY | O_CREAT | O_APPEND)
        do throws(StorageIOError) { try FileIO.syncDirectory(directory) } catch {
            // Appends go on in the old file, so this one must not outlive the failure (replay
            // also drops it, empty and last, should the unlink not reach the disk).
            FileIO.close(opened)
            try? FileIO.remove(directory + "/" + name)
            throw error
        }
        if descriptor >= 0 { FileIO.close(descriptor) }
        descriptor = opened
        files.append((nextSequence, name))
        fileName = name
        fileBytes = 0
    }

    private func startIntervalSyncIfNeeded() {
        guard case .intervalMs(let intervalMs) = policy else { return }
        lock.withLock { intervalThreadRunning = true }
        let thread = Thread { [weak self] in
            while let wal = self {
                usleep(useconds_t(intervalMs * 1000))
                let (keepGoing, ready): (Bool, [(@Sendable (Error?) -> Void, Error?)]) = wal.lock.withLock {
                    guard !wal.closed else { return (false, wal.takeReadyWaitersLocked()) }
                    try? wal.syncLocked(through: wal.writtenSequence)
                    return (true, wal.takeReadyWaitersLocked())
                }
                for (callback, error) in ready { callback(error) }
                if !keepGoing { break }
            }
        }
        thread.name = "wal-sync"
        thread.start()
    }
}
