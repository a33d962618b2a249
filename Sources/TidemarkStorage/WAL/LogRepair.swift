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

extension FileWAL {
    /// For `tidemarkd --repair`: judges the log in `directory` as replay does and, if it is
    /// damaged in the middle, copies the damaged file into `asideDirectory`, cuts it where
    /// the damage starts, and moves aside every later file (their sequences no longer follow).
    /// A sound log, or one with only a torn tail (replay cuts that), is left alone.
    public static func repair(directory: String, asideDirectory: String) throws -> [LogRepairAction] {
        let files = try FileIO.list(directory).compactMap { name -> (UInt64, String)? in
            guard name.hasSuffix(".wal"), let first = UInt64(name.dropLast(4)) else { return nil }
            return (first, name)
        }.sorted { $0.0 < $1.0 }
        var lastSequence: UInt64?
        for (index, (firstSequence, name)) in files.enumerated() {
            let path = directory + "/" + name
            if let lastSequence, firstSequence != lastSequence + 1 {
                let reason = "starts at sequence \(firstSequence) but the log before ends at \(lastSequence)"
                return try setAside(files[index...].map(\.1), directory: directory, asideDirectory: asideDirectory, cutAt: nil, reason: reason)
            }
            let bytes = try readWhole(path)
            let scan = LogScan.scan(bytes, firstSequence: firstSequence, payloadBytesMax: payloadBytesMax)
            var damage: String?
            switch scan.ending {
            case .clean: break
            case .damaged(let reason, _): damage = reason
            case .tornTail(let reason): if index < files.count - 1 { damage = reason + " in a WAL file that is not the last" }
            }
            if let damage {
                return try setAside(files[index...].map(\.1), directory: directory, asideDirectory: asideDirectory,
                                    cutAt: scan.validBytes, reason: "damaged at byte \(scan.validBytes): \(damage)")
            }
            if let last = scan.lastSequence { lastSequence = last }
        }
        return []
    }

    /// Copies `names[0]` aside and cuts it to `cutAt` (or, with nil, moves it aside whole), and
    /// moves every later name aside whole. Copies are synced before anything is cut.
    private static func setAside(_ names: [String], directory: String, asideDirectory: String,
                                 cutAt: Int?, reason: String) throws -> [LogRepairAction] {
        try FileIO.makeDirectory(asideDirectory)
        var actions: [LogRepairAction] = []
        for (position, name) in names.enumerated() {
            let path = directory + "/" + name
            let copy = freeName(asideDirectory + "/" + name)
            let bytes = try readWhole(path)
            let descriptor = try FileIO.open(copy, O_WRONLY | O_CREAT | O_EXCL)
            do {
                try FileIO.writeAll(descriptor, bytes, path: copy)
                try FileIO.fsync(descriptor, path: copy)
            } catch {
                FileIO.close(descriptor)
                throw error
            }
            FileIO.close(descriptor)
            try FileIO.syncDirectory(asideDirectory)
            if position == 0, let cutAt {
                let log = try FileIO.open(path, O_WRONLY)
                defer { FileIO.close(log) }
                try FileIO.truncate(log, to: cutAt, path: path)
                try FileIO.fsync(log, path: path)
                actions.append(LogRepairAction(path: path, copy: copy, cutAt: cutAt, reason: reason))
            } else {
                try FileIO.remove(path)
                actions.append(LogRepairAction(path: path, copy: copy, cutAt: nil,
                                               reason: position == 0 ? reason : "follows damage in \(names.first!)"))
            }
        }
        try FileIO.syncDirectory(directory)
        return actions
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
