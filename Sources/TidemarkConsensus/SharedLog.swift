import Foundation
import TidemarkIO

/// One write-ahead log for many standalone groups (DESIGN.md section 5, "group commit across
/// groups"): a node's regions append their entries to the same files, so one fsync makes a
/// whole batch durable however many regions it touched.
///
/// A record is `[group][index][entry]`: each group keeps its own index sequence inside it. A
/// file can go once every group has released (flushed to its own files) every entry of it.
/// Records of a group the node no longer holds count as released.
final class SharedLog: @unchecked Sendable {
    let wal: FileWAL
    private let lock = NSLock()
    // protected by lock:
    /// Per group, its records not released yet, in log order: (index, sequence in the log).
    private var pending: [GroupID: [(index: UInt64, sequence: UInt64)]] = [:]
    private var replayed = false

    init(directory: String, policy: WALSyncPolicy, health: StorageHealth?) throws {
        wal = try FileWAL(directory: directory, policy: policy, health: health)
    }

    /// Whether `replay` ran (groups created after it start with nothing to replay).
    var isReplayed: Bool { lock.withLock { replayed } }

    /// Appends `group`'s entry `index`; returns its sequence in the log (what to wait for).
    func append(_ group: GroupID, index: UInt64, data: [UInt8]) throws -> UInt64 {
        var writer = ByteWriter(capacity: data.count + 16)
        group.write(to: &writer)
        writer.write(varint: index)
        writer.write(bytes: data)
        // Under the lock: a truncation never sees a record in the log that `pending` lacks.
        return try lock.withLock {
            let sequence = try wal.append([writer.bytes])
            pending[group, default: []].append((index, sequence))
            return sequence
        }
    }

    /// `group`'s entries through `index` are durable in its own files.
    func release(_ group: GroupID, through index: UInt64) throws {
        let floor: UInt64 = lock.withLock {
            if var records = pending[group] {
                records.removeFirst(records.prefix { $0.index <= index }.count)
                pending[group] = records.isEmpty ? nil : records
            }
            return firstPendingLocked()
        }
        if floor > 1 { try wal.truncate(through: floor - 1) }
    }

    /// `group` is gone: its records no longer hold the log.
    func forget(_ group: GroupID) throws {
        let floor: UInt64 = lock.withLock {
            pending[group] = nil
            return firstPendingLocked()
        }
        if floor > 1 { try wal.truncate(through: floor - 1) }
    }

    /// The lowest sequence some group still needs (past the end when none).
    private func firstPendingLocked() -> UInt64 {
        pending.values.compactMap { $0.first?.sequence }.min() ?? wal.lastSequence + 1
    }

    /// Replays every record in order to `body`, which says whether its group is held here;
    /// records of other groups are released. Once, before any append.
    func replay(_ body: (GroupID, _ index: UInt64, _ data: [UInt8]) throws -> Bool) throws -> WALReplayReport {
        precondition(!isReplayed, "the shared log is replayed once")
        var held: [GroupID: [(index: UInt64, sequence: UInt64)]] = [:]
        let report = try wal.replay { sequence, payload in
            var reader = ByteReader(payload)
            let group: GroupID, index: UInt64
            do {
                group = try GroupID(from: &reader)
                index = try reader.readVarint()
            } catch {
                throw CorruptDataError("shared log record \(sequence) does not decode: \(error)")
            }
            guard index > 0 else { throw CorruptDataError("shared log record \(sequence) names entry 0") }
            if try body(group, index, Array(payload[reader.offset...])) { held[group, default: []].append((index, sequence)) }
        }
        lock.withLock {
            pending = held
            replayed = true
        }
        return report
    }

    func close() { wal.close() }
}

/// What a group's state machine tells the shared log it may drop.
final class SharedLogRetention: LogRetention {
    private let log: SharedLog
    private let group: GroupID

    init(_ log: SharedLog, group: GroupID) {
        self.log = log
        self.group = group
    }

    func checkpoint() throws { try log.wal.rotate() }
    func release(through index: UInt64) throws { try log.release(group, through: index) }
}
