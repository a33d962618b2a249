import Foundation
import TidemarkCore
import TidemarkIO

extension StorageEngine {
    /// Seals the active memtable if it is past `memtableBytesMax` or `memtableAgeMsMax`;
    /// the WAL rotates with it so the sealed part's log can be dropped after its flush.
    /// Returns whether there is sealed work for `flushSealed`.
    /// With nothing in memory, the entries applied since the last release (schema statements
    /// and deletes, in the schema log and the tombstones already) are released from the log:
    /// a log shared with other regions must not wait for a flush that never comes.
    @discardableResult
    public func sealIfDue(nowNs: UInt64 = monotonicNowNs()) -> Bool {
        let (sealedNow, due, idleThrough) = writeLock.withLock {
            state.withLock {
                let ageMs = (nowNs &- active.createdNs) / 1_000_000
                let seal = !active.isEmpty && (active.bytes >= memtableBytesLimit.load(ordering: .relaxed) || ageMs >= UInt64(options.memtableAgeMsMax))
                if seal { sealLocked() }
                let idle = active.isEmpty && sealed.isEmpty ? active.maxSequence : 0
                return (seal, !sealed.isEmpty, idle)
            }
        }
        // Outside the locks: the rotation's fsync must not stall writers and the apply side.
        if sealedNow { checkpointLog() }
        if idleThrough > releasedIdleThrough.load(ordering: .relaxed) {
            do {
                // Schema records a full disk kept unlogged go first, as after a flush.
                try writeLock.withLock { try logSchemaLocked([]) }
                try logRetention.withLock { try $0?.release(through: idleThrough) }
                releasedIdleThrough.store(idleThrough, ordering: .relaxed)
            } catch {
                logger.warning("the log could not be released while idle; tried again later", metadata: ["error": "\(error)"])
            }
        }
        return due
    }

    /// Starts a new log file. Run after a seal, with no engine lock held: records logged
    /// between the seal and the rotation only keep the old file a flush longer.
    private func checkpointLog() {
        try? logRetention.withLock { try $0?.checkpoint() }
    }

    /// Seals whatever the active memtable holds and flushes every sealed memtable.
    public func flush() throws {
        try writeLock.withLock {
            state.withLock {
                if !active.isEmpty { sealLocked() }
            }
        }
        try logRetention.withLock { try $0?.checkpoint() }
        try flushSealed()
    }

    /// The caller holds `writeLock` and `state`.
    /// New writes go to a new memtable; the caller then starts a new log file, so the old
    /// files can go once every sealed memtable is in segments.
    private func sealLocked() {
        sealed.append(active)
        active = Memtable(createdNs: monotonicNowNs())
    }

    /// Writes every sealed memtable to segment files, oldest first, then drops the WAL they
    /// covered. A sealed memtable stays readable until its segments are visible.
    public func flushSealed() throws {
        try maintenanceLock.withLock {
            while let memtable = state.withLock({ sealed.first }) {
                let handles = try writeSegments(of: memtable)
                state.withLock {
                    segments += handles
                    for handle in handles { noteFlushedLocked(handle.info) }
                    sealed.removeFirst()
                }
                // The log may recreate series whose schema records are still unlogged: not before they are.
                try writeLock.withLock { try logSchemaLocked([]) }
                try logRetention.withLock { try $0?.release(through: memtable.maxSequence) }
            }
            try compactDue()
        }
    }

    /// One segment per time partition the memtable touches. Series go in path order to every
    /// partition's writer at once, so only one series' sorted copy exists at a time, not a
    /// copy of the whole memtable (which would double the flush's memory).
    private func writeSegments(of memtable: Memtable) throws -> [SegmentHandle] {
        var writers: [Int64: SegmentWriter] = [:]
        let buffers = memtable.buffers
        for slot in buffers.indices.sorted(by: { buffers[$0].path < buffers[$1].path }) {
            let (timestamps, values) = buffers[slot].sorted()
            var start = 0
            while start < timestamps.count {
                let partition = partition(of: timestamps[start])
                var end = start + 1
                while end < timestamps.count && self.partition(of: timestamps[end]) == partition { end += 1 }
                let whole = start == 0 && end == timestamps.count
                writers[partition, default: SegmentWriter(info: SegmentInfo(partition: partition, maxSequence: memtable.maxSequence, level: 0),
                                                          compressionLevel: options.compressionLevel)]
                    .add(path: buffers[slot].path, timestamps: whole ? timestamps : Array(timestamps[start..<end]),
                         values: whole ? values : values.gathered(start..<end))
                start = end
            }
        }
        return try writers.keys.sorted().map { try writeSegment(writers[$0]!, partition: $0) }
    }

    func writeSegment(_ writer: SegmentWriter, partition: Int64) throws -> SegmentHandle {
        let id = state.withLock { () -> UInt64 in
            defer { nextSegmentID += 1 }
            return nextSegmentID
        }
        let name = "p\(partition)-\(String(format: "%012llu", id)).seg"
        try writer.write(to: segmentDirectory, name: name)
        return SegmentHandle(name: name, reader: try SegmentReader(path: segmentDirectory + "/" + name), id: id)
    }

    // MARK: - Compaction

    /// Sleeps as long as needed to keep compaction under `compactionBytesPerSecondMax`.
    private func throttle(bytesWritten: Int, sinceNs: UInt64) {
        let allowedNs = UInt64(Double(bytesWritten) / Double(options.compactionBytesPerSecondMax) * 1e9)
        let elapsedNs = monotonicNowNs() - sinceNs
        if allowedNs > elapsedNs { usleep(useconds_t(min((allowedNs - elapsedNs) / 1000, 1_000_000))) }
    }

    /// Compacts every partition that has reached `compactionTriggerSegments` segments.
    func compactDue() throws {
        let due = state.withLock {
            Dictionary(grouping: segments, by: { $0.info.partition }).filter { $0.value.count >= options.compactionTriggerSegments }.keys
        }
        // A merge makes a segment of the next level, which may complete a run there too.
        for partition in due.sorted() { while try compactLocked(partition: partition, tiered: true) {} }
    }

    /// Once the region is idle (`compactionIdleMs` without a write, nothing in memory), merges
    /// each partition's segments into one, newest first as `compactionInputBytesMax` allows;
    /// stops between merges when a write came meanwhile. Returns whether anything was merged.
    @discardableResult
    public func compactIfIdle(clock: () -> UInt64 = monotonicNowNs) throws -> Bool {
        guard options.compactionIdleMs > 0 else { return false }
        let quietNs = UInt64(options.compactionIdleMs) * 1_000_000
        return try maintenanceLock.withLock {
            func idle() -> Bool {
                let lastWrite = lastWriteNs.load(ordering: .relaxed)
                return state.withLock { active.isEmpty && sealed.isEmpty } && (lastWrite == 0 || clock() >= lastWrite + quietNs)
            }
            guard idle() else { return false }
            let partitions = state.withLock { Dictionary(grouping: segments, by: { $0.info.partition }).filter { $0.value.count >= 2 }.keys }
            var merged = false
            for partition in partitions.sorted() {
                while idle(), try compactLocked(partition: partition, idleCapped: true) { merged = true }
            }
            return merged
        }
    }

    /// Merges the newest segments of `partition` (up to `compactionInputBytesMax`) into one.
    /// Returns whether anything was merged.
    @discardableResult
    public func compact(partition: Int64) throws -> Bool {
        try maintenanceLock.withLock { try compactLocked(partition: partition) }
    }

    /// `tiered` (the automatic compaction after a flush): only the newest run of segments of
    /// one level, once it has `compactionTriggerSegments` of them, so each point is rewritten
    /// once per level (a few times), not every time a small segment joins the big one; the
    /// run is the newest segments, so the output, which is the newest, hides nothing newer.
    /// Otherwise (`compact(partition:)`, the idle compaction): the newest segments, as many as fit.
    /// `idleCapped` (the idle compaction): only as many of the newest as fit in
    /// `compactionInputBytesMax` together, so a big partition is not rewritten whole again
    /// for each segment it takes in.
    private func compactLocked(partition: Int64, tiered: Bool = false, idleCapped: Bool = false) throws -> Bool {
        let (inputs, tombstones) = state.withLock { () -> ([SegmentHandle], [Tombstone]) in
            var chosen: [SegmentHandle] = []
            var bytes = 0
            if tiered {
                let inPartition = segments.filter { $0.info.partition == partition }
                guard let level = inPartition.last?.info.level else { return ([], self.tombstones) }
                for handle in inPartition.reversed() {
                    guard handle.info.level == level, chosen.count < 2 || bytes + handle.reader.fileBytes <= options.compactionInputBytesMax else { break }
                    chosen.append(handle)
                    bytes += handle.reader.fileBytes
                }
                guard chosen.count >= options.compactionTriggerSegments else { return ([], self.tombstones) }
                return (chosen.reversed(), self.tombstones)
            }
            // The newest, as many as fit: the output takes the newest place, so it must hide
            // nothing newer than its inputs.
            for handle in segments.reversed() where handle.info.partition == partition {
                guard (!idleCapped && chosen.count < 2) || bytes + handle.reader.fileBytes <= options.compactionInputBytesMax else { break }
                chosen.append(handle)
                bytes += handle.reader.fileBytes
            }
            return (chosen.reversed(), self.tombstones)
        }
        guard inputs.count >= 2 else { return false }
        let maxSequence = inputs.map(\.info.maxSequence).max()!
        var writer = SegmentWriter(
            info: SegmentInfo(partition: partition, maxSequence: maxSequence, level: inputs.map(\.info.level).max()! + 1,
                              replaces: inputs.map(\.name)),
            compressionLevel: options.compressionLevel)
        let paths = Set(inputs.flatMap { $0.reader.index.keys }).sorted()
        let startNs = monotonicNowNs()
        for path in paths {
            throttle(bytesWritten: writer.byteCount, sinceNs: startNs)
            guard let type = inputs.lazy.compactMap({ $0.reader.index[path]?.first?.stats.dataType }).first else { continue }
            let cursors = inputs.map { segmentCursor($0, path: path, type: type, range: Int64.min...Int64.max, tombstones: tombstones, skip: []) }
            let scan = SeriesScan(dataType: type, cursors: cursors, batchPoints: SegmentFormat.chunkPointsMax)
            while let batch = try scan.next() { writer.add(path: path, timestamps: batch.timestamps, values: batch.values) }
        }
        // The output (possibly empty if deletes removed everything) replaces the inputs.
        let output: SegmentHandle? = writer.isEmpty ? nil : try writeSegment(writer, partition: partition)
        let names = Set(inputs.map(\.name))
        state.withLock {
            segments.removeAll { names.contains($0.name) }
            if let output { segments.append(output) }
            segments.sort { $0.id < $1.id }
            // A tombstone older than every segment and memtable has nothing left to hide.
            let oldest = (segments.map(\.info.maxSequence) + sealed.map(\.maxSequence)).min() ?? UInt64.max
            let before = self.tombstones.count
            // (Memtables never need one: a delete removes their points when it happens or is replayed.)
            self.tombstones.removeAll { $0.sequence <= oldest }
            if self.tombstones.count != before { try? saveTombstonesLocked() }
        }
        for name in names { try FileIO.remove(segmentDirectory + "/" + name) }
        try FileIO.syncDirectory(segmentDirectory)
        logger.info("compacted segments", metadata: ["partition": "\(partition)", "inputs": "\(inputs.count)",
                                                     "output": "\(output?.name ?? "none")"])
        return true
    }
}
