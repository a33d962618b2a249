import Synchronization
import TidemarkCore
import TidemarkIO

/// Where a region's write-ahead record lives.
public enum RegionLog: Sendable {
    /// The engine keeps its own WAL (`write` and `delete` log, apply and sync).
    case own
    /// A consensus group's log is the record: the group hands committed entries to
    /// `apply(index:record:prepared:outcome:)` in order, and replays its log after a restart. Entries
    /// proposed elsewhere name series this node has not seen, so applying creates them
    /// (typed by the entry), on every replica at the same log position.
    case consensus
}

/// A write checked against the schema (its missing series created) and encoded as a log
/// record; `apply` uses the in-memory columns instead of decoding the record again.
public struct PreparedWrite: Sendable {
    public let record: [UInt8]
    let batch: ColumnBatch

    /// Every series of the write exists (it creates none), so applying it cannot refuse it:
    /// its types were checked against theirs. (A series deleted meanwhile drops its points
    /// at the apply, as IoTDB does; that is no refusal.)
    public var createsNoSeries: Bool { batch.series.allSatisfy { $0.id != nil } }
}

extension StorageEngine {
    /// Gives the engine the log it applies from (`.consensus` regions), once that log has
    /// been replayed: a memtable sealed during the replay must not rotate the log being read.
    public func attach(logRetention retention: LogRetention) {
        precondition(wal == nil, "a region with its own WAL keeps it")
        logRetention.withLock { $0 = retention }
    }

    /// Checks `points` against the schema, creating missing series (and databases) when
    /// allowed, and encodes them as one log record. Nil for no points. Throws, having
    /// created nothing, when any point cannot be written.
    public func prepareWrite(_ points: [PointWrite]) throws -> PreparedWrite? {
        guard !points.isEmpty else { return nil }
        try checkRoom(points.count)
        // Grouped by series once: every later step does one lookup per series, not per point.
        var batch = try ColumnBatch(points: points)
        return try prepare(&batch)
    }

    /// `prepareWrite` for rows already grouped (and type-checked) unit by unit.
    public func prepareWrite(_ write: GroupedWrite) throws -> PreparedWrite? {
        guard !write.isEmpty else { return nil }
        try checkRoom(write.pointCount)
        var batch = write.makeBatch()
        return try prepare(&batch)
    }

    /// Refuses a write too big, or one that would add to memtables the flush has not caught up with.
    private func checkRoom(_ count: Int) throws {
        guard count <= options.writePointsMax else {
            throw EngineError.tooLarge("\(count) points exceed the \(options.writePointsMax) a write may carry")
        }
        let sealedCount = state.withLock { sealed.count }
        guard sealedCount < options.sealedMemtablesMax else { throw EngineError.flushBehind(sealed: sealedCount) }
    }

    /// `batch` is taken in place: a copy would copy every series to give it its number.
    private func prepare(_ batch: inout ColumnBatch) throws -> PreparedWrite {
        if createsSchemaOnApply {
            // Only checked here (series are made when the entry is applied): under `state`
            // alone, so the append stage checks the next batch while the applier holds
            // `writeLock` for the one before.
            var created: [SchemaRecord] = []
            try resolveSchemaLocked(&batch.series, created: &created)
            assert(created.isEmpty, "a region whose log is its group's creates series on apply")
        } else {
            try writeLock.withLock { try resolveSchema(&batch.series) }
        }
        return PreparedWrite(record: EngineRecord.encodeWrite(batch), batch: batch)
    }

    /// Applies a write entry; the caller holds `writeLock` (not `state`). The schema part
    /// runs under `state` at once; the points go to the memtable a few hundred series at a
    /// time, `state` taken for each run, so the append stage's checks of the next write (which
    /// need `state`) interleave instead of waiting for the whole entry. A query meanwhile may
    /// see part of an entry not yet acknowledged; no seal can split it (a seal needs `writeLock`).
    @discardableResult
    func applyWriteLocked(_ write: PreparedWrite, index: UInt64) throws -> [SeriesRef?] {
        var pending: [(position: Int, id: Int)] = []
        lastWriteNs.store(monotonicNowNs(), ordering: .relaxed)
        let refs = try state.withLock { try applyLocked(write, index: index, deferring: &pending) }
        guard !pending.isEmpty else { return refs }
        let batch = write.batch
        var start = 0
        while start < pending.count {
            let end = min(start + Self.applyRunSeries, pending.count)
            state.withLock {
                batch.timestamps.withUnsafeBufferPointer { timestamps in
                    for (position, id) in pending[start..<end] {
                        let column = batch.series[position]
                        active.append(id: id, path: column.path, timestamps: UnsafeBufferPointer(rebasing: timestamps[column.points]),
                                      values: batch.values(of: column), range: column.valueRange, sequence: index)
                    }
                }
                if end == pending.count { active.noteSequence(index) }
            }
            start = end
        }
        return refs
    }

    /// Series applied per hold of `state` (`applyWriteLocked`).
    static let applyRunSeries = 512

    /// Applies the log entry at `index`: to the memtable, as a tombstone or as a schema
    /// change. Entries come in index order; one applied again after a restart changes nothing
    /// (points already in a segment are skipped, a tombstone is kept once, a schema change
    /// the schema log holds is not made again). `prepared`, when given, is `record` already
    /// decoded by `prepareWrite` on this node; `outcome`, when given, hears the engine's own
    /// error if the entry is refused.
    public func apply(index: UInt64, record: [UInt8], prepared: PreparedWrite? = nil, outcome: ApplyOutcome? = nil) throws {
        precondition(index > 0, "log indexes start at 1")
        flushIfBehind()
        var change: EngineRecord?
        do {
            try writeLock.withLock {
                if let prepared {
                    try applyWriteLocked(prepared, index: index)
                    return
                }
                switch try EngineRecord.decode(record, recent: recentSeries) {
                case .write(let batch):
                    let refs = try applyWriteLocked(PreparedWrite(record: [], batch: batch), index: index)
                    recentSeries = zip(batch.series, refs).map { series, ref in
                        var numbered = series
                        numbered.id = ref?.id
                        return numbered
                    }
                case let decoded:
                    change = decoded
                    try state.withLock {
                        // Its effects are in the schema log or the tombstones: the memtable only
                        // marks the index, so the log can let it go with the memtable (or, idle, at once).
                        defer { active.noteSequence(index) }
                        try applyChangeLocked(decoded, index: index)
                    }
                }
            }
        } catch let error as EngineError {
            outcome?.refuse(error)
            throw error
        }
        if let change { try afterChange(change, index: index) }
        try sealAfterWrite()
    }

    /// A committed entry cannot be refused the way a write is when the flush falls behind
    /// (`sealedMemtablesMax`): the applier flushes itself, so memory stays bounded on a
    /// replica whose flush is slower than its leader's. A failed flush is logged, never an
    /// entry's refusal (every replica must decide the same).
    private func flushIfBehind() {
        guard state.withLock({ sealed.count }) >= options.sealedMemtablesMax else { return }
        do { try flushSealed() } catch {
            logger.error("the applier's flush failed; sealed memtables stay in memory", metadata: ["reason": "\(error)"])
        }
    }

    /// The caller holds `writeLock` and `state`. A replicated region refuses a new entry whole
    /// when a value does not fit its series' type (two writes raced to create a series with
    /// different types): every replica decides the same at the same index, and nothing of
    /// the entry is applied.
    /// Returns each series' schema entry (nil for one the schema refuses).
    /// Points of series that need no more than an append (not a replay) are not appended
    /// here but listed in `deferred` (position in the batch, series number), for
    /// `applyWriteLocked` to append in runs.
    @discardableResult
    func applyLocked(_ write: PreparedWrite, index: UInt64, deferring deferred: inout [(position: Int, id: Int)]) throws -> [SeriesRef?] {
        let replayed = index <= flushedThroughMax
        // One schema lookup per column (by number when prepared here or named as in the
        // record before, else by path).
        let batch = write.batch
        var refs = batch.series.map { schema.ref($0.path, hint: $0.id) }
        // An entry the schema log covers already (a replay) creates nothing again.
        let createsSeries = createsSchemaOnApply && index > schemaIndex
        if createsSeries && !replayed {
            // Only series this entry creates need remembering (an entry names a path once,
            // but a record from outside is not trusted to).
            var newTypes: [String: DataType] = [:]
            for (column, ref) in zip(batch.series, refs) {
                guard let expected = ref?.type ?? newTypes[column.path] else {
                    newTypes[column.path] = column.type
                    continue
                }
                guard expected == column.type else {
                    throw EngineError.typeMismatch(path: column.path, expected: expected, got: column.type)
                }
            }
            // Every new series can be made, or none is (the schema changed since the write was
            // checked: another entry made a series where this one needs a device).
            if !newTypes.isEmpty { try schemaChange { try schema.checkNewSeries(newTypes.keys.sorted()) } }
        }
        var created: [SchemaRecord] = []
        // One schema-log append (one fsync) for every series this entry creates, marked with
        // its index. A committed entry applies even if that fails: its records wait in
        // `unloggedSchema`, and the flush appends them before it lets the log (which can
        // recreate them) drop the entry.
        defer {
            if !created.isEmpty {
                schemaIndex = index
                do { try logSchemaLocked(created + [.appliedThrough(index)]) } catch {
                    logger.error("schema log append failed; retried before the next write or flush", metadata: ["error": "\(error)"])
                }
            }
        }
        for (position, column) in batch.series.enumerated() {
            // The schema may have changed since the write was logged (a replay, a series
            // deleted meanwhile): points that no longer fit are dropped, as IoTDB does.
            if refs[position] == nil && createsSeries {
                created += createOnApplyLocked(column.path, column.type)
                refs[position] = schema.ref(column.path)
            }
            let known = refs[position]
            guard let known, known.type == column.type else { continue }
            let id = known.id
            if replayed {
                // Points already in a segment of their partition are not applied twice.
                let kept = column.points.filter { point in
                    guard let through = flushedThrough[partition(of: batch.timestamps[point])] else { return true }
                    return index > through
                }
                guard !kept.isEmpty else { continue }
                let values = batch.values(of: column).gathered(kept.map { column.valueStart + $0 - column.points.lowerBound })
                active.append(id: id, path: column.path, timestamps: kept.map { batch.timestamps[$0] }[...], values: values, sequence: index)
            } else {
                deferred.append((position, id))
            }
        }
        if deferred.isEmpty { active.noteSequence(index) }
        return refs
    }

    /// Creates a series (and its database) an entry from another replica names. The caller
    /// holds `writeLock` and `state`. A path the schema refuses is skipped, as on every replica.
    /// Returns the schema records to log.
    private func createOnApplyLocked(_ path: String, _ type: DataType) -> [SchemaRecord] {
        guard let levels = try? schema.validate(path) else { return [] }
        var records: [SchemaRecord] = []
        if let database = missingDatabaseLocked(levels) {
            guard (try? schema.createDatabase(database)) != nil else { return [] }
            records.append(.createDatabase(database))
        }
        let series = SeriesSchema(path: path, dataType: type)
        guard (try? schema.createSeries(series)) != nil else { return records }
        return records + [.createSeries(series)]
    }

    /// The caller holds `writeLock` and `state`.
    func applyDeleteLocked(pattern: PathPattern, range: ClosedRange<Int64>, index: UInt64) throws {
        active.remove(matching: pattern, in: range)
        active.noteSequence(index)
        guard !tombstones.contains(where: { $0.sequence == index }) else { return }
        tombstones.append(Tombstone(pattern: pattern, range: range, sequence: index))
        try saveTombstonesLocked()
    }

    /// The highest log index any segment holds.
    public var flushedIndexMax: UInt64 { state.withLock { flushedThroughMax } }

    /// The highest log index the region's own files hold: in a segment, a tombstone, the
    /// schema log or an installed image. `apply` takes an entry at or below it for one applied
    /// before (its points already in a segment are skipped, a tombstone of that index is kept
    /// once, its schema change not made again), so the log must never give a new entry such
    /// an index.
    public var persistedIndexMax: UInt64 {
        let held = state.withLock { tombstones.reduce(flushedThroughMax) { max($0, $1.sequence) } }
        return max(held, installedImageIndex, writeLock.withLock { schemaIndex })
    }

    /// The caller holds `state`.
    func noteFlushedLocked(_ info: SegmentInfo) {
        flushedThrough[info.partition] = max(flushedThrough[info.partition] ?? 0, info.maxSequence)
        flushedThroughMax = max(flushedThroughMax, info.maxSequence)
    }

}
