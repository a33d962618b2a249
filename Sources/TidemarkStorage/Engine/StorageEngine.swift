import Foundation
import Logging
import Synchronization
import TidemarkCore
import TidemarkIO

/// How one region's engine is sized and behaves.
public struct EngineOptions: Sendable {
    public var walSync = WALSyncPolicy.batch
    /// A memtable is sealed for flushing past this many bytes…
    public var memtableBytesMax = 64 << 20
    /// …or when its oldest write is this old.
    public var memtableAgeMsMax = 10 * 60 * 1000
    /// Sealed memtables that may wait for the flush stage; past it writes are refused
    /// (retry later) instead of memory growing while the flush falls behind.
    public var sealedMemtablesMax = 4
    public var compressionLevel: Int32 = 3
    public var schemaLimits = SchemaLimits()
    /// Create a missing series (and its database, `root.<first level>`) on first write.
    public var autoCreateSchema = true
    /// Width of a time partition, in the timestamps' unit (7 days of milliseconds).
    public var partitionInterval: Int64 = 7 * 24 * 3600 * 1000
    /// A partition is compacted once the newest run of its segments of one level has this
    /// many (tiered: each point is rewritten once per level)…
    public var compactionTriggerSegments = 4
    /// …merging at most this many input bytes at once, so compaction memory stays bounded.
    public var compactionInputBytesMax = 256 << 20
    /// Compaction writes at most this many bytes per second, leaving the disk to writes and flushes.
    public var compactionBytesPerSecondMax = 64 << 20
    /// A region with nothing in memory and no write for this long merges each partition's
    /// segments into one (a cold partition reads fastest and compresses best); 0: never.
    public var compactionIdleMs = 5000
    /// Points per batch a scan returns.
    public var scanBatchPoints = 4096
    /// Points one write may carry (a larger write is refused whole).
    public var writePointsMax = 1_000_000
    /// Fields one line-protocol line may carry: checked while the line is parsed, before
    /// any work per field, so one huge line cannot hold the decoder.
    public var fieldsPerLineMax = 10_000
    /// Distinct series one write request may name (a larger one is refused whole).
    public var seriesPerWriteMax = 100_000
    /// Series the write path remembers by device and measurement before it starts again
    /// (about 100 bytes each).
    public var seriesDirectoryEntriesMax = 2_000_000

    public init() {}
}

/// Why a write, delete or schema change was refused; nothing of it was applied.
public enum EngineError: Error, Sendable, CustomStringConvertible {
    case schema(SchemaError)
    case typeMismatch(path: String, expected: DataType, got: DataType)
    case tooLarge(String)
    /// Too many sealed memtables wait for the flush: nothing was written; retry later.
    case flushBehind(sealed: Int)
    case io(String)
    case corrupt(String)
    /// The region's group did not take the change here (this node is not its leader, or the
    /// group is busy): nothing was applied; retry, at the leader's client address when known.
    case unavailable(String, leaderAddress: String?)

    public var description: String {
        switch self {
        case .schema(let error): "\(error)"
        case .typeMismatch(let path, let expected, let got): "\(path) is \(expected), got a \(got) value"
        case .tooLarge(let reason): reason
        case .flushBehind(let sealed): "storage is behind: \(sealed) sealed memtables wait for the flush (storage.sealed_memtables_max); retry later"
        case .io(let reason): reason
        case .corrupt(let reason): reason
        case .unavailable(let reason, _): reason
        }
    }
}

/// Counters of one engine, for `/metrics`.
public struct EngineStats: Sendable, Equatable {
    public var segments = 0
    public var segmentBytes = 0
    public var memtableBytes = 0
    public var sealedMemtables = 0
    public var quarantinedSegments = 0
    public var tombstones = 0

    public init(segments: Int = 0, segmentBytes: Int = 0, memtableBytes: Int = 0, sealedMemtables: Int = 0, quarantinedSegments: Int = 0,
                tombstones: Int = 0) {
        self.segments = segments
        self.segmentBytes = segmentBytes
        self.memtableBytes = memtableBytes
        self.sealedMemtables = sealedMemtables
        self.quarantinedSegments = quarantinedSegments
        self.tombstones = tombstones
    }
}

/// A segment file in use.
struct SegmentHandle {
    let name: String
    let reader: SegmentReader
    var info: SegmentInfo { reader.info }
    /// Names sort by id, and ids grow with every flush and compaction.
    let id: UInt64
}

/// The storage engine of one data region (DESIGN.md section 6): schema, WAL, memtables,
/// segments, deletes and compaction. Nothing in it is global, so a node runs many.
///
/// Locking: `writeLock` orders writers (WAL order is apply order); `state` guards the
/// memtables, segment list and tombstones and is held only briefly; `maintenanceLock`
/// lets one flush or compaction run at a time. I/O happens outside `state`.
public final class StorageEngine: @unchecked Sendable {
    public let directory: String
    public let options: EngineOptions
    /// The database a region of the cluster holds (its group's): a write that brings a
    /// device of it creates this database, not `root.<first level>`. Nil: any database.
    public let database: String?
    private let databaseLevels: [String]?
    let logger: Logger
    /// The engine's own WAL, or nil when a consensus group's log is the region's record.
    let wal: WriteAheadLog?
    /// Told where log files may start and which entries segments now hold.
    let logRetention = Mutex<LogRetention?>(nil)
    let schemaLog: FileWAL
    /// A consensus region (no WAL of its own): applying an entry creates the series it names
    /// (at the same log position on every replica), instead of the write creating them before
    /// it is logged.
    var createsSchemaOnApply: Bool { wal == nil }
    let writeLock = NSLock()
    /// Protected by `writeLock`: the series of the record last applied from its bytes, with
    /// their numbers (`EngineRecord.decode`'s `recent`). A stale number is harmless: the schema
    /// never reuses one (deletes and image installs mark it dead, new series take new numbers),
    /// and `SchemaTree.ref(_:hint:)` looks a dead one up by path.
    var recentSeries: [ColumnBatch.Series] = []
    /// Protected by `writeLock`: schema changes memory already holds whose schema-log append
    /// failed (a full disk). Every later write, schema change and flush appends them first and
    /// fails while it cannot, so no data record naming their series is logged before them.
    var unloggedSchema: [SchemaRecord] = []
    /// Protected by `writeLock`: the log index of the last entry that changed the schema (the
    /// schema log's last `appliedThrough`, after a restart). An entry at or below it is a replay
    /// whose schema effects the schema log holds already.
    var schemaIndex: UInt64 = 0
    let maintenanceLock = NSLock()
    let state = NSLock()
    // protected by state:
    let schema: SchemaTree
    var active: Memtable
    var sealed: [Memtable] = []
    var segments: [SegmentHandle] = []
    var tombstones: [Tombstone] = []
    /// Where writes find their rows' series without building paths.
    var seriesDirectory: SeriesDirectory
    var nextSegmentID: UInt64 = 1
    var quarantined = 0
    /// Per time partition, the highest log index already in a segment; a re-applied entry
    /// (replay after a restart) skips those points.
    var flushedThrough: [Int64: UInt64] = [:]
    var flushedThroughMax: UInt64 = 0
    /// The active memtable is sealed past this many bytes: `memtableBytesMax`, or this
    /// region's share of the node's when it holds several (`setMemtableBytesMax`).
    let memtableBytesLimit: Atomic<Int>
    /// The log index an idle region last released through (`sealIfDue`).
    let releasedIdleThrough = Atomic<UInt64>(0)
    /// When a write was last applied (monotonic ns), for the idle compaction.
    let lastWriteNs = Atomic<UInt64>(0)
    private let flushScheduler = Mutex<(@Sendable (StorageEngine) -> Void)?>(nil)
    /// How a `.consensus` region proposes schema statements and deletes (`routeChanges`).
    let changeProposer = Mutex<(@Sendable ([UInt8], ApplyOutcome) throws -> Void)?>(nil)

    /// Where sealed memtables get flushed: the node hands them to its flush stage, so a
    /// writer that fills the memtable does not wait for the flush. Unset, the writer that
    /// seals flushes inline (what tests and tools want).
    public func scheduleFlushes(with scheduler: @escaping @Sendable (StorageEngine) -> Void) {
        flushScheduler.withLock { $0 = scheduler }
    }

    var segmentDirectory: String { directory + "/segments" }
    var quarantineDirectory: String { directory + "/quarantine" }
    var tombstonePath: String { directory + "/tombstones" }

    /// Opens (or creates) the region in `directory` and recovers it: schema log, segments
    /// (quarantining damaged ones, finishing an interrupted compaction), tombstones, and,
    /// with `.own`, its WAL. With `.consensus` the group replays its log through `apply`.
    /// `health` hears of failed and successful log writes (the node's disk-full state).
    public init(directory: String, options: EngineOptions = EngineOptions(), logger: Logger = Logger(label: "tidemark.storage"),
                log: RegionLog = .own, health: StorageHealth? = nil, database: String? = nil) throws {
        self.directory = directory
        self.options = options
        memtableBytesLimit = Atomic(options.memtableBytesMax)
        self.database = database
        databaseLevels = try database.map { name in
            do { return try SeriesPath.splitLevels(name) } catch { throw EngineError.schema(SchemaError("invalid database \(name): \(error)", kind: .invalidPath)) }
        }
        self.logger = logger
        try FileIO.makeDirectory(directory + "/segments")
        try FileIO.makeDirectory(directory + "/quarantine")
        schema = SchemaTree(limits: options.schemaLimits)
        seriesDirectory = SeriesDirectory(entriesMax: options.seriesDirectoryEntriesMax)
        schemaLog = try FileWAL(directory: directory + "/schema", policy: .always, health: health)
        active = Memtable(createdNs: monotonicNowNs())
        let ownWAL: FileWAL? = switch log {
        case .own: try FileWAL(directory: directory + "/wal", policy: options.walSync, health: health)
        case .consensus: nil
        }
        wal = ownWAL
        try removeStaleExports()
        try removeInstallLeftovers()
        try recoverSchema()
        try openSegments()
        try loadTombstones()
        if let ownWAL {
            try replayWAL(ownWAL)
            // Only now: a memtable sealed during the replay must not rotate the log being read.
            logRetention.withLock { $0 = ownWAL }
        }
    }

    public func close() {
        wal?.close()
        schemaLog.close()
    }

    // MARK: - Schema

    public func series(matching pattern: PathPattern) -> [SeriesSchema] { state.withLock { schema.series(matching: pattern) } }
    public func devices(matching pattern: PathPattern) -> [String] { state.withLock { schema.devices(matching: pattern) } }
    public func databases() -> [String] { state.withLock { schema.databases } }
    /// The time partitions the region holds points in (its segments' and memtables').
    public func timePartitions() -> Set<Int64> {
        state.withLock {
            var partitions = Set(segments.map(\.info.partition))
            for memtable in [active] + sealed {
                for buffer in memtable.buffers { for timestamp in buffer.timestamps { partitions.insert(partition(of: timestamp)) } }
            }
            return partitions
        }
    }
    public func series(_ path: String) -> SeriesSchema? { state.withLock { schema.series(path) } }

    /// Runs `body` with the lookup writes check their rows against, under the lock (taken
    /// once for the whole batch, not per series).
    public func withSeriesLookup<T>(_ body: (inout SeriesLookup) throws -> T) rethrows -> T {
        try state.withLock {
            seriesDirectory.trim()
            // Moved out and back, so the lookup holds the only reference and mutates in place.
            var lookup = SeriesLookup(directory: seriesDirectory, schema: schema)
            seriesDirectory = SeriesDirectory(entriesMax: options.seriesDirectoryEntriesMax)
            defer { seriesDirectory = lookup.directory }
            return try body(&lookup)
        }
    }

    private func recoverSchema() throws {
        let report = try schemaLog.replay { _, payload in
            switch try SchemaRecord.decode(payload) {
            case .appliedThrough(let index): schemaIndex = max(schemaIndex, index)
            case .createDatabase(let name): try? schema.createDatabase(name)
            case .createSeries(let series): try? schema.createSeries(series)
            case .deleteSeries(let pattern): _ = schema.deleteSeries(matching: try PathPattern(parsing: pattern))
            case .deleteDatabase(let name): try? schema.deleteDatabase(name)
            }
        }
        if report.bytesCut > 0 {
            logger.warning("cut a torn tail of the schema log", metadata: [
                "file": "\(report.cutPath ?? "")", "offset": "\(report.cutOffset)", "bytes": "\(report.bytesCut)", "records": "\(report.records)"])
        }
    }

    // MARK: - Writes (own WAL)

    /// Writes `points` atomically: all are checked against the schema (creating missing
    /// series when allowed) before any is logged; returns once they are durable.
    @discardableResult
    public func write(_ points: [PointWrite]) throws -> UInt64 {
        let (wal, sequence) = try appendAndApply(points)
        guard sequence > 0 else { return 0 }
        try wal.waitDurable(sequence)
        try sealAfterWrite()
        return sequence
    }

    /// Like `write`, but returns once the points are logged and applied, and calls `durable`
    /// when they are durable (under `intervalMs`, at the next background fsync), so one thread
    /// can keep writing while earlier writes wait for their fsync.
    public func write(_ points: [PointWrite], whenDurable durable: @escaping @Sendable (Error?) -> Void) throws {
        let (wal, sequence) = try appendAndApply(points)
        wal.whenDurable(sequence, durable)
        try sealAfterWrite()
    }

    private func appendAndApply(_ points: [PointWrite]) throws -> (WriteAheadLog, UInt64) {
        let wal = try ownWAL()
        guard let prepared = try prepareWrite(points) else { return (wal, 0) }
        return (wal, try writeLock.withLock {
            let sequence = try wal.append([prepared.record])
            try applyWriteLocked(prepared, index: sequence)
            return sequence
        })
    }

    func ownWAL() throws -> WriteAheadLog {
        guard let wal else { throw EngineError.io("this region's log is its consensus group's: write through the group") }
        return wal
    }

    func sealAfterWrite() throws {
        if sealIfDue() {
            if let scheduler = flushScheduler.withLock({ $0 }) { scheduler(self) } else { try flushSealed() }
        }
    }

    /// Checks each column's series against the schema, creating missing ones, and gives
    /// every column its series number; throws before anything is created if any column
    /// cannot be written. The caller holds `writeLock`.
    func resolveSchema(_ columns: inout [ColumnBatch.Series]) throws {
        var created: [SchemaRecord] = []
        let checked = Result { () throws in try resolveSchemaLocked(&columns, created: &created) }
        // Whatever was created is logged even if a later creation failed, so memory and log agree;
        // a failed append fails this write, before its points can reach a log.
        try logSchemaLocked(created)
        try checked.get()
    }

    /// `resolveSchema`'s checks and creations, under `state`; `created` gets what was created.
    func resolveSchemaLocked(_ columns: inout [ColumnBatch.Series], created: inout [SchemaRecord]) throws {
        try state.withLock { () throws in
            var pending: [String: DataType] = [:]
            var newDatabases: [String] = []
            for index in columns.indices {
                let column = columns[index]
                // A column checked earlier (it has a number) costs an array lookup.
                if let existing = schema.ref(column.path, hint: column.id) {
                    guard existing.type == column.type else {
                        throw EngineError.typeMismatch(path: column.path, expected: existing.type, got: column.type)
                    }
                    columns[index].id = existing.id
                    continue
                }
                guard options.autoCreateSchema else { throw EngineError.schema(SchemaError("\(column.path): no such series", kind: .noSuchSeries)) }
                // Several writes batched into one may each bring the same new series.
                if let type = pending[column.path] {
                    guard type == column.type else { throw EngineError.typeMismatch(path: column.path, expected: type, got: column.type) }
                    continue
                }
                let levels = try schemaChange { try schema.validate(column.path) }
                if let database = missingDatabaseLocked(levels), !newDatabases.contains(database) { newDatabases.append(database) }
                pending[column.path] = column.type
            }
            // A consensus region creates series when the entry is applied, on every replica at
            // the same log position: created here, a series would outlive an entry that never
            // commits, and this replica's schema would part from the others'. Checked here, so
            // an entry the apply would refuse is not proposed.
            if createsSchemaOnApply { return try schemaChange { try schema.checkNewSeries(pending.keys.sorted()) } }
            // Everything checked: now create, so a refused write creates nothing.
            for database in newDatabases {
                try schemaChange { try schema.createDatabase(database) }
                created.append(.createDatabase(database))
            }
            for (path, type) in pending.sorted(by: { $0.key < $1.key }) {
                let series = SeriesSchema(path: path, dataType: type)
                try schemaChange { try schema.createSeries(series) }
                created.append(.createSeries(series))
            }
            if !pending.isEmpty {
                for index in columns.indices where columns[index].id == nil {
                    columns[index].id = schema.ref(columns[index].path)!.id
                }
            }
        }
    }

    /// Appends `records` (changes memory already holds) to the schema log after any still
    /// unlogged; if that fails they all wait in `unloggedSchema` and the caller's statement
    /// fails. The caller holds `writeLock`.
    func logSchemaLocked(_ records: [SchemaRecord]) throws {
        let all = unloggedSchema + records
        guard !all.isEmpty else { return }
        do {
            _ = try schemaLog.append(all.map { $0.encoded() })
            unloggedSchema = []
        } catch {
            unloggedSchema = all
            throw error
        }
    }

    /// The database (`root.<first level>`) a new series of `levels` needs, when it does not
    /// exist yet. The caller holds `state`; `levels` passed `schema.validate`.
    func missingDatabaseLocked(_ levels: [String]) -> String? {
        guard schema.databaseOf(levels) == nil else { return nil }
        if let database, let databaseLevels, levels.count > databaseLevels.count, levels.starts(with: databaseLevels) { return database }
        return levels[0...1].joined(separator: ".")
    }

    /// Drops the whole region: every file under its directory.
    public func destroy() throws {
        close()
        try FileManager.default.removeItem(atPath: directory)
    }

    /// Seals the active memtable past `bytes` from now on (a node's regions share its
    /// `memtable_bytes_max`, so more regions do not mean more memory).
    public func setMemtableBytesMax(_ bytes: Int) {
        precondition(bytes > 0, "a memtable holds something")
        memtableBytesLimit.store(bytes, ordering: .relaxed)
    }

    /// Whether points applied are in memtables only, not yet in segments.
    public var holdsUnflushedPoints: Bool { state.withLock { !active.isEmpty || !sealed.isEmpty } }

    public var stats: EngineStats {
        state.withLock {
            EngineStats(segments: segments.count, segmentBytes: segments.reduce(0) { $0 + $1.reader.fileBytes },
                        memtableBytes: active.bytes + sealed.reduce(0) { $0 + $1.bytes }, sealedMemtables: sealed.count,
                        quarantinedSegments: quarantined, tombstones: tombstones.count)
        }
    }

    /// Floor division of the time by the partition width. `-(timestamp + 1)`, not
    /// `-timestamp - 1`: the negation of Int64.min would trap.
    func partition(of timestamp: Int64) -> Int64 {
        timestamp >= 0 ? timestamp / options.partitionInterval : -(-(timestamp + 1) / options.partitionInterval) - 1
    }

    // MARK: - Recovery

    func openSegments() throws {
        var handles: [SegmentHandle] = []
        for name in try FileIO.list(segmentDirectory) {
            if name.hasSuffix(".tmp") {
                // A flush or compaction that never finished: its rename did not happen.
                try FileIO.remove(segmentDirectory + "/" + name)
                continue
            }
            guard name.hasSuffix(".seg"), let id = Self.segmentID(name) else { continue }
            do {
                handles.append(SegmentHandle(name: name, reader: try SegmentReader(path: segmentDirectory + "/" + name), id: id))
            } catch {
                try quarantine(name, reason: "\(error)")
            }
            nextSegmentID = max(nextSegmentID, id + 1)
        }
        // Finish an interrupted compaction: its output names the inputs it replaced.
        let replaced = Set(handles.flatMap { $0.info.replaces })
        for handle in handles where replaced.contains(handle.name) {
            logger.notice("removing a segment a compaction already replaced", metadata: ["segment": "\(handle.name)"])
            try FileIO.remove(segmentDirectory + "/" + handle.name)
        }
        segments = handles.filter { !replaced.contains($0.name) }.sorted { $0.id < $1.id }
        for segment in segments { noteFlushedLocked(segment.info) }
        try FileIO.syncDirectory(segmentDirectory)
    }

    static func segmentID(_ name: String) -> UInt64? {
        guard let dash = name.lastIndex(of: "-") else { return nil }
        return UInt64(name[name.index(after: dash)...].dropLast(4))
    }

    private func replayWAL(_ wal: FileWAL) throws {
        let report = try wal.replay { sequence, payload in
            try apply(index: sequence, record: payload)
        }
        if report.bytesCut > 0 {
            logger.warning("cut a torn WAL tail", metadata: ["file": "\(report.cutPath ?? "")", "offset": "\(report.cutOffset)",
                                                           "bytes": "\(report.bytesCut)", "records": "\(report.records)"])
        }
    }

    // MARK: - Tombstones file

    func saveTombstonesLocked() throws {
        var writer = ByteWriter()
        writer.write(varint: UInt64(tombstones.count))
        for tombstone in tombstones {
            writer.write(lengthPrefixed: tombstone.pattern.description)
            writer.write(signedVarint: tombstone.range.lowerBound)
            writer.write(signedVarint: tombstone.range.upperBound)
            writer.write(varint: tombstone.sequence)
        }
        writer.write(littleEndian: CRC32C.checksum(writer.bytes))
        try FileIO.writeFileAtomically(writer.bytes, to: tombstonePath, directory: directory)
    }

    func loadTombstones() throws {
        guard FileManager.default.fileExists(atPath: tombstonePath) else { return }
        let descriptor = try FileIO.open(tombstonePath, O_RDONLY)
        defer { FileIO.close(descriptor) }
        let bytes = try FileIO.read(descriptor, count: try FileIO.size(descriptor, path: tombstonePath), at: 0, path: tombstonePath)
        guard bytes.count >= 4, CRC32C.checksum(Array(bytes.dropLast(4))) == bytes.withUnsafeBytes({
            UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: bytes.count - 4, as: UInt32.self))
        }) else {
            throw EngineError.corrupt("\(tombstonePath) fails its CRC; deletes cannot be trusted, refusing to open the region")
        }
        var reader = ByteReader(bytes, end: bytes.count - 4)
        for _ in 0..<(try reader.readCount(max: 1_000_000, what: "tombstones")) {
            guard let text = try reader.readText(max: 4096) else {
                throw EngineError.corrupt("\(tombstonePath): bad pattern")
            }
            let low = try reader.readSignedVarint(), high = try reader.readSignedVarint()
            guard low <= high else { throw EngineError.corrupt("\(tombstonePath): inverted range") }
            tombstones.append(Tombstone(pattern: try PathPattern(parsing: text), range: low...high, sequence: try reader.readVarint()))
        }
    }

    // MARK: - Quarantine

    /// Moves a damaged segment aside, logs it and counts it; the rest keeps serving.
    func quarantine(_ name: String, reason: String) throws {
        logger.error("quarantined a damaged segment", metadata: ["segment": "\(name)", "reason": "\(reason)"])
        try FileIO.rename(segmentDirectory + "/" + name, quarantineDirectory + "/" + name)
        try FileIO.syncDirectory(segmentDirectory)
        quarantined += 1
    }
}
