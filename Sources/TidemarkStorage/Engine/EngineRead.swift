import TidemarkCore
import TidemarkIO

extension StorageEngine {
    /// A time-ordered scan of `path` over `range` (inclusive), merged over segments and
    /// memtables with the newest write winning, in batches of `scanBatchPoints`.
    public func scan(path: String, range: ClosedRange<Int64>) throws -> SeriesScan {
        let view = try readView(path: path)
        let cursors = view.segments.map { segmentCursor($0, path: path, type: view.type, range: range, tombstones: view.tombstones, skip: []) }
            + view.memtables.map { memtableCursor($0, type: view.type, range: range) }
        return SeriesScan(dataType: view.type, cursors: cursors, batchPoints: options.scanBatchPoints)
    }

    /// Aggregates of `path` over `range`; a chunk wholly inside the range that no delete
    /// touches and no other source overlaps is answered from its statistics, unread.
    public func aggregate(path: String, range: ClosedRange<Int64>) throws -> Aggregates {
        let view = try readView(path: path)
        // Time spans of other segments' chunks, and memtable points, could change a chunk's answer.
        var spans: [(source: Int, ClosedRange<Int64>)] = []
        for (index, segment) in view.segments.enumerated() {
            for chunk in segment.reader.index[path] ?? [] { spans.append((index, chunk.stats.minTime...chunk.stats.maxTime)) }
        }
        func memtableHasPoint(in span: ClosedRange<Int64>) -> Bool {
            view.memtables.contains { series in
                // Sorted timestamps: find the first at or after the span's start.
                var low = 0, high = series.timestamps.count
                while low < high {
                    let middle = (low + high) / 2
                    if series.timestamps[middle] < span.lowerBound { low = middle + 1 } else { high = middle }
                }
                return low < series.timestamps.count && series.timestamps[low] <= span.upperBound
            }
        }
        var fromStatistics: [ChunkStats] = []
        var skip: [Int: Set<Int>] = [:]  // segment index → chunk offsets answered from statistics
        for (index, segment) in view.segments.enumerated() {
            for chunk in segment.reader.index[path] ?? [] {
                let span = chunk.stats.minTime...chunk.stats.maxTime
                guard range.contains(span.lowerBound), range.contains(span.upperBound) else { continue }
                guard !view.tombstones.contains(where: { $0.sequence > segment.info.maxSequence && $0.range.overlaps(span) }) else { continue }
                guard !spans.contains(where: { $0.source != index && $0.1.overlaps(span) }), !memtableHasPoint(in: span) else { continue }
                fromStatistics.append(chunk.stats)
                skip[index, default: []].insert(chunk.offset)
            }
        }
        let cursors = view.segments.enumerated().map { index, segment in
            segmentCursor(segment, path: path, type: view.type, range: range, tombstones: view.tombstones, skip: skip[index] ?? [])
        } + view.memtables.map { memtableCursor($0, type: view.type, range: range) }
        let scan = SeriesScan(dataType: view.type, cursors: cursors, batchPoints: options.scanBatchPoints)

        // Fold chunk statistics and scanned points together in time order.
        fromStatistics.sort { $0.minTime < $1.minTime }
        var aggregates = Aggregates()
        var nextStats = 0
        while let batch = try scan.next() {
            var runStart = 0
            for (position, timestamp) in batch.timestamps.enumerated()
            where nextStats < fromStatistics.count && fromStatistics[nextStats].maxTime < timestamp {
                if position > runStart {
                    aggregates.fold(timestamps: Array(batch.timestamps[runStart..<position]), values: batch.values.gathered(runStart..<position))
                }
                runStart = position
                while nextStats < fromStatistics.count && fromStatistics[nextStats].maxTime < timestamp {
                    aggregates.fold(fromStatistics[nextStats])
                    aggregates.chunksFromStatistics += 1
                    nextStats += 1
                }
            }
            if runStart < batch.timestamps.count {
                aggregates.fold(timestamps: Array(batch.timestamps[runStart...]), values: batch.values.gathered(runStart..<batch.timestamps.count))
            }
        }
        while nextStats < fromStatistics.count {
            aggregates.fold(fromStatistics[nextStats])
            aggregates.chunksFromStatistics += 1
            nextStats += 1
        }
        return aggregates
    }

    /// What a read of one series sees, taken under the lock; the I/O happens after.
    struct ReadView {
        let type: DataType
        let segments: [SegmentHandle]  // oldest first
        let memtables: [(timestamps: [Int64], values: Column)]  // sealed oldest first, then active
        let tombstones: [Tombstone]  // those matching the path
    }

    func readView(path: String) throws -> ReadView {
        try state.withLock {
            guard let series = schema.series(path) else { throw EngineError.schema(SchemaError("\(path): no such series", kind: .noSuchSeries)) }
            // A sealed memtable may hold a deleted series of the path with another type: not these points.
            let memtables = (sealed + [active]).compactMap { memtable in
                memtable.buffer(path: path).flatMap { $0.values.dataType == series.dataType ? $0.sorted() : nil }
            }
            return ReadView(type: series.dataType, segments: segments.filter { $0.reader.index[path] != nil },
                            memtables: memtables, tombstones: tombstones.filter { $0.pattern.matches(path) })
        }
    }

    /// A segment's chunks of `path` overlapping `range`, read lazily, cut to the range,
    /// with the deletes newer than the segment applied. A chunk that fails its checks
    /// quarantines the segment and fails the read; later reads no longer see it.
    func segmentCursor(_ segment: SegmentHandle, path: String, type: DataType, range: ClosedRange<Int64>,
                       tombstones: [Tombstone], skip: Set<Int>) -> SourceCursor {
        let applicable = tombstones.filter { $0.sequence > segment.info.maxSequence && $0.pattern.matches(path) }
        let chunks = (segment.reader.index[path] ?? []).filter {
            $0.stats.maxTime >= range.lowerBound && $0.stats.minTime <= range.upperBound && !skip.contains($0.offset)
        }
        let loaders: [SourceCursor.Loader] = chunks.map { chunk in
            { [self] in
                let (timestamps, values): ([Int64], Column)
                do {
                    (timestamps, values) = try segment.reader.read(chunk)
                } catch {
                    try? quarantineOpen(segment, reason: "\(error)")
                    throw EngineError.corrupt("\(error)")
                }
                let kept = timestamps.indices.filter { index in
                    range.contains(timestamps[index]) && !applicable.contains { $0.range.contains(timestamps[index]) }
                }
                return kept.count == timestamps.count ? (timestamps, values) : (kept.map { timestamps[$0] }, values.gathered(kept))
            }
        }
        return SourceCursor(type: type, loaders: loaders)
    }

    private func memtableCursor(_ series: (timestamps: [Int64], values: Column), type: DataType, range: ClosedRange<Int64>) -> SourceCursor {
        SourceCursor(type: type, loaders: [{
            let kept = series.timestamps.indices.filter { range.contains(series.timestamps[$0]) }
            return (kept.map { series.timestamps[$0] }, series.values.gathered(kept))
        }])
    }

    /// Quarantines a segment that is in use: it leaves the list first, then the directory.
    func quarantineOpen(_ segment: SegmentHandle, reason: String) throws {
        let present = state.withLock { () -> Bool in
            let before = segments.count
            segments.removeAll { $0.name == segment.name }
            return segments.count != before
        }
        guard present else { return }
        try state.withLock { try quarantine(segment.name, reason: reason) }
    }
}
