#if canImport(Glibc)
import Glibc
#endif

/// Damage in the middle of a log: a record that fails its checks with records that pass
/// theirs after it. Recovery stops here rather than cut good records; the message names the
/// file and the byte, and how to go on.
public struct LogDamageError: Error, Sendable, Equatable, CustomStringConvertible {
    public let path: String
    /// Where the first damaged record starts (what `--repair` would cut the file to).
    public let offset: Int
    public let reason: String
    /// Where the first record that passes its checksum after the damage starts, when known.
    public let followingOffset: Int?

    public init(path: String, offset: Int, reason: String, followingOffset: Int? = nil) {
        self.path = path
        self.offset = offset
        self.reason = reason
        self.followingOffset = followingOffset
    }

    public var description: String {
        "\(path): damaged log at byte \(offset): \(reason)"
            + (followingOffset.map { "; a record that passes its checksum follows at byte \($0)" } ?? "")
            + ". Not cutting good records: restore the file from a backup, or start once with `tidemarkd --repair`, which copies it"
            + " aside (under data_dir/quarantine/logs) and cuts it at byte \(offset), losing the records after it"
            + " (it refuses a Raft or multi-leader log: take the replica out of its group and add it back instead)"
    }
}

/// What `FileWAL.repair` did to one file.
public struct LogRepairAction: Sendable, Equatable, CustomStringConvertible {
    public var path: String
    /// Where the file's bytes were copied before anything was cut or removed.
    public var copy: String
    /// The size the file was cut to; nil when the whole file went aside (it followed the damage).
    public var cutAt: Int?
    public var reason: String

    public var description: String {
        if let cutAt { return "\(path): copied to \(copy), then cut at byte \(cutAt) (\(reason))" }
        return "\(path): moved to \(copy) (\(reason))"
    }
}

/// What `--repair` would do to one log damaged in the middle: the damaged file and every
/// later one go aside, and the damaged one is cut where the damage starts. Made by
/// `FileWAL.repairPlan`, which only reads, so a caller can judge every log before it cuts any.
public struct LogRepairPlan: Sendable, Equatable {
    public var directory: String
    /// The damaged file's name first, then every later file of the log, oldest first.
    public var names: [String]
    /// The size the first file is cut to; nil when it goes aside whole (it follows a gap).
    public var cutAt: Int?
    public var reason: String

    /// The damaged file.
    public var path: String { directory + "/" + names[0] }
}

/// A repair that stopped before it cut anything (a copy failed: say, the disk is full).
public struct LogRepairError: Error, Sendable, CustomStringConvertible {
    public let description: String
}

extension FileWAL {
    /// Bytes one step of a copy reads and writes: a log file is copied without holding it whole.
    static let repairCopyChunkBytes = 1 << 20

    /// For `tidemarkd --repair`: `repairPlan`, then `carryOut`. A sound log, or one with only
    /// a torn tail (replay cuts that), is left alone.
    public static func repair(directory: String, asideDirectory: String) throws -> [LogRepairAction] {
        guard let plan = try repairPlan(directory: directory) else { return [] }
        return try carryOut(plan, asideDirectory: asideDirectory)
    }

    /// Judges the log in `directory` as replay does, reading only: nil when it is sound or has
    /// only a torn tail, else what `carryOut` would set aside and cut. With
    /// `wholeLastRecordIsDamage` (the users log), a last record that is whole but fails its
    /// CRC is damage too (`LogScan.isWholeDamagedRecord`).
    public static func repairPlan(directory: String, wholeLastRecordIsDamage: Bool = false) throws -> LogRepairPlan? {
        let files = try FileIO.list(directory).compactMap { name -> (UInt64, String)? in
            guard name.hasSuffix(".wal"), let first = UInt64(name.dropLast(4)) else { return nil }
            return (first, name)
        }.sorted { $0.0 < $1.0 }
        var lastSequence: UInt64?
        for (index, (firstSequence, name)) in files.enumerated() {
            let path = directory + "/" + name
            let bytes = try readWhole(path)
            if let lastSequence, firstSequence != lastSequence + 1 {
                if isAbandonedRotation(firstSequence, after: lastSequence, isLast: index == files.count - 1, bytes: bytes) { return nil }
                let reason = "starts at sequence \(firstSequence) but the log before ends at \(lastSequence)"
                return LogRepairPlan(directory: directory, names: files[index...].map(\.1), cutAt: nil, reason: reason)
            }
            let scan = LogScan.scan(bytes, firstSequence: firstSequence, payloadBytesMax: payloadBytesMax)
            if let damage = damage(scan, bytes, isLast: index == files.count - 1, wholeLastRecordIsDamage: wholeLastRecordIsDamage) {
                return LogRepairPlan(directory: directory, names: files[index...].map(\.1), cutAt: scan.validBytes,
                                     reason: "damaged at byte \(scan.validBytes): \(damage.reason)")
            }
            if let last = scan.lastSequence { lastSequence = last }
        }
        return nil
    }

    /// Copies every file of `plan` into `asideDirectory` (made, with its parents, durably),
    /// syncs the copies, and only then cuts the first file to `plan.cutAt` (or, with nil,
    /// removes it) and removes the later ones. A copy that fails (a full disk) removes every
    /// copy this call made and throws before anything is cut: the log is as it was.
    public static func carryOut(_ plan: LogRepairPlan, asideDirectory: String) throws -> [LogRepairAction] {
        precondition(!plan.names.isEmpty)
        try FileIO.makeDirectoryDurably(asideDirectory)
        var copies: [String] = []
        do {
            for name in plan.names {
                let copy = freeName(asideDirectory + "/" + name)
                try copyFile(plan.directory + "/" + name, to: copy) { copies.append(copy) }
            }
            try FileIO.syncDirectory(asideDirectory)
        } catch {
            try removeCopies(copies, in: asideDirectory, after: error)
            throw error
        }
        var actions: [LogRepairAction] = []
        for (position, (name, copy)) in zip(plan.names, copies).enumerated() {
            let path = plan.directory + "/" + name
            if position == 0, let cutAt = plan.cutAt {
                let log = try FileIO.open(path, O_WRONLY)
                defer { FileIO.close(log) }
                try FileIO.truncate(log, to: cutAt, path: path)
                try FileIO.fsync(log, path: path)
                actions.append(LogRepairAction(path: path, copy: copy, cutAt: cutAt, reason: plan.reason))
            } else {
                try FileIO.remove(path)
                actions.append(LogRepairAction(path: path, copy: copy, cutAt: nil,
                                               reason: position == 0 ? plan.reason : "follows damage in \(plan.names[0])"))
            }
        }
        try FileIO.syncDirectory(plan.directory)
        return actions
    }

    /// Copies `source` to a new file `copy` in pieces and fsyncs it; `created` runs once the
    /// copy exists, so a caller can remove it whatever fails after.
    private static func copyFile(_ source: String, to copy: String, created: () -> Void) throws {
        let input = try FileIO.open(source, O_RDONLY)
        defer { FileIO.close(input) }
        let output = try FileIO.open(copy, O_WRONLY | O_CREAT | O_EXCL)
        created()
        defer { FileIO.close(output) }
        let size = try FileIO.size(input, path: source)
        var offset = 0
        while offset < size {
            let piece = try FileIO.read(input, count: min(repairCopyChunkBytes, size - offset), at: offset, path: source)
            guard !piece.isEmpty else { throw LogRepairError(description: "\(source) ended at byte \(offset) while being copied, short of \(size)") }
            try FileIO.writeAll(output, piece, path: copy)
            offset += piece.count
        }
        try FileIO.fsync(output, path: copy)
    }

    /// Removes the copies a failed repair made, so none is taken for a quarantined file.
    /// Throws, naming the copy failure and what is left, when one cannot be removed.
    private static func removeCopies(_ copies: [String], in directory: String, after failure: Error) throws {
        var left: [String] = []
        for copy in copies {
            do { try FileIO.remove(copy) } catch { left.append("\(copy) (\(error))") }
        }
        if left.isEmpty {
            // Best effort: a removal a crash undoes brings back a copy of a log nothing was cut from.
            try? FileIO.syncDirectory(directory)
            return
        }
        throw LogRepairError(description: "copying a damaged log aside failed (\(failure)), nothing was cut, "
                             + "and these partial copies could not be removed: \(left.joined(separator: ", ")); remove them before repairing again")
    }

    /// `path`, or `path.1`, `path.2`… : the first name nothing is at yet.
    private static func freeName(_ path: String) -> String {
        var candidate = path
        var number = 0
        while FileIO.exists(candidate) {
            number += 1
            candidate = "\(path).\(number)"
        }
        return candidate
    }
}
