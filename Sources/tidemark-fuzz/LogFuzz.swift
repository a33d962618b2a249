import ArgumentParser
import Foundation
import Logging
import TidemarkCore
import TidemarkCluster
import TidemarkConsensus
import TidemarkIO
import TidemarkQuery
import TidemarkServer
import TidemarkStorage
import TidemarkTestSupport

/// Damaged logs fed to recovery: a node's region is written through its consensus log (never
/// flushed, so the log is all there is), copied, one log damaged (the data log or the schema
/// log), and the region opened as the node opens it. Opening may refuse, but nothing may crash
/// or hang; a region that opens holds whole writes in the order they were made, only with the
/// values written, and every write whose log record the damage left intact: a torn tail is
/// cut, but records that pass their checksums are never dropped (damage with intact records
/// after it refuses start). It then takes a new write that survives another reopening.
///
/// With `--shared`, two regions of a one-node cluster write alternately to the node's shared
/// log (the writes' order is the log's), and the node's regions are opened as a node opens
/// them (`LocalRegion.openAll`): the same rules hold over both.
struct LogFuzz: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "logs", abstract: "Damaged data and schema logs fed to recovery.")
    @OptionGroup var options: FuzzOptions
    @Flag(help: "Two regions on the node's shared log instead of one region with its own.") var shared = false

    /// One write of the base region: its points, and where its record lies in the data log.
    private struct Batch {
        var points: [PointWrite]
        var logBytes: Range<Int>
    }

    fileprivate static let logger = Logger(label: "tidemark-fuzz") { _ in SwiftLogNoOpLogHandler() }

    func run() throws { try PristineDirectory.with("logs") { directories in
        let (base, scratch) = (directories.base, directories.scratch)
        let (batches, dataLog) = try makeRegion(at: base)
        let schemaLogs = try logFiles(under: base + "/regions")
        guard !schemaLogs.isEmpty else { throw Finding(description: "the base region has no schema log") }
        try FuzzLoop(name: shared ? "shared-logs" : "logs", options: options).run { seed, describe in
            var random = Seeded(state: seed)
            try directories.freshCopy()
            let damagesDataLog = random.chance(70)
            let victim = damagesDataLog ? dataLog : random.pick(schemaLogs)
            let damage = try FileDamage.apply(to: scratch + victim, &random)
            describe(damage.description)
            guard let region = try? Regions(dataDir: scratch, shared: shared) else { return }
            // The log takes writes after what recovery kept, and they outlive a reopening.
            let after = PointWrite(path: "root.lf.after.v", timestamp: 1, value: .int64(Int64(seed & 0xFFFF)))
            let kept: Set<Int>
            do {
                defer { region.close() }
                kept = try check(region, batches, wholeWritesInOrder: damagesDataLog)
                if damagesDataLog, let lost = batches.indices.first(where: { !batches[$0].logBytes.overlaps(damage.damagedBytes) && !kept.contains($0) }) {
                    throw Finding(description: "write \(lost), its record intact at \(batches[lost].logBytes), was dropped")
                }
                do { try region.write([after]) } catch { throw Finding(description: "a region that opened refused a new write: \(error)") }
            }
            let reopened: Regions
            do {
                reopened = try Regions(dataDir: scratch, shared: shared)
            } catch {
                throw Finding(description: "a region that opened and took a write refuses to open again: \(error)")
            }
            defer { reopened.close() }
            guard try check(reopened, batches, wholeWritesInOrder: damagesDataLog) == kept else { throw Finding(description: "the writes kept changed across a reopening") }
            let read = try? reopened.store.scan(path: after.path, range: Int64.min...Int64.max).all()
            guard read?.timestamps == [after.timestamp], read?.values == .int64([Int64(seed & 0xFFFF)]) else {
                throw Finding(description: "the write made after recovery was lost on reopening")
            }
        }
    } }

    /// The regions of a data directory as a node opens them, read as one.
    private struct Regions {
        let regions: [LocalRegion]
        let store: RegionUnion

        /// The old layout's one region, or (`shared`) every region on the shared log.
        init(dataDir: String, shared: Bool) throws {
            regions = shared ? try LocalRegion.openAll(dataDir: dataDir, options: EngineOptions(), logger: LogFuzz.logger)
                : [try LocalRegion(dataDir: dataDir, options: EngineOptions(), logger: LogFuzz.logger)]
            store = RegionUnion(scanBatchPoints: 4096) { [regions] in regions.map(\.engine) }
        }

        func write(_ points: [PointWrite]) throws { try regions[0].write(points) }
        func close() { for region in regions { region.close() } }
    }

    /// The regions written: the old layout's one, or two on a fresh shared log.
    private func openFresh(at directory: String) throws -> [LocalRegion] {
        guard shared else { return [try LocalRegion(dataDir: directory, options: EngineOptions(), logger: Self.logger)] }
        let consensus = StandaloneConsensus(directory: directory + "/consensus", syncPolicy: .batch, logger: Self.logger)
        let regions = try [1, 2].map { number in
            try LocalRegion(group: GroupID(kind: .data, number: UInt32(number)), directory: directory + "/regions/data-\(number)", database: "root.lf",
                            options: EngineOptions(), logger: Self.logger, consensus: consensus, peers: [], hints: .standalone, health: nil,
                            sharedLog: true)
        }
        try consensus.replaySharedLog()
        return regions
    }

    /// Twelve writes over six series (each new series adds a schema record), left in the logs
    /// (alternately in the two regions, with `shared`); returns the writes and the data log's
    /// path relative to the data directory.
    private func makeRegion(at directory: String) throws -> ([Batch], String) {
        let regions = try openFresh(at: directory)
        var batches: [Batch] = []
        for number in 0..<12 {
            var points: [PointWrite] = []
            for series in 0..<(1 + number % 3) {
                let path = "root.lf.d\((number + series) % 3).s\(series)"
                for index in 0..<20 {
                    let timestamp = Int64(number * 100 + index)
                    let value: Value = series == 1 ? .double(Double(number) + Double(index) / 8) : .int64(Int64(number * 1000 + index))
                    points.append(PointWrite(path: path, timestamp: timestamp, value: value))
                }
            }
            let start = try dataLogBytes(directory)
            try regions[number % regions.count].write(points)
            batches.append(Batch(points: points, logBytes: start..<(try dataLogBytes(directory))))
        }
        for region in regions { region.close() }
        return (batches, try logFiles(under: directory + "/consensus")[0])
    }

    /// The size of the region's one data log file (0 before it is made).
    private func dataLogBytes(_ directory: String) throws -> Int {
        let logs = try logFiles(under: directory + "/consensus")
        if logs.isEmpty { return 0 }
        guard logs.count == 1 else { throw Finding(description: "expected one data log, found \(logs)") }
        return try FileManager.default.attributesOfItem(atPath: directory + logs[0])[.size] as? Int ?? 0
    }

    /// The log files (`*.wal`) under `directory`, as paths relative to the region's directory.
    private func logFiles(under directory: String) throws -> [String] {
        let prefix = directory.hasSuffix("/consensus") ? "/consensus/" : "/regions/"
        let all = FileManager.default.enumerator(atPath: directory)?.compactMap { $0 as? String } ?? []
        return all.filter { $0.hasSuffix(".wal") }.sorted().map { prefix + $0 }
    }

    /// Checks what the region holds against the writes: only written values and, when
    /// `wholeWritesInOrder`, each write whole or absent and the present ones a prefix; returns
    /// the numbers of the writes with points present. The schema log is synced before
    /// a write that creates a series reaches the data log, so a crash never loses a series'
    /// record while keeping its points; damage that does (a disk's, this target's) drops the
    /// points of series it removed, and only the values are checked then.
    private func check(_ region: Regions, _ batches: [Batch], wholeWritesInOrder: Bool) throws -> Set<Int> {
        var kept = Set<Int>()
        var seenAbsent = false
        for (number, batch) in batches.enumerated() {
            var present = 0
            for point in batch.points {
                guard let read = try? region.store.scan(path: point.path, range: point.timestamp...point.timestamp).all(),
                      !read.timestamps.isEmpty else { continue }
                guard read.timestamps.count == 1, read.values[0] == point.value else {
                    throw Finding(description: "\(point.path) at \(point.timestamp): read \(read.values), written \(point.value)")
                }
                present += 1
            }
            if present > 0 { kept.insert(number) }
            guard wholeWritesInOrder else { continue }
            guard present == 0 || present == batch.points.count else {
                throw Finding(description: "write \(number) is half there: \(present) of \(batch.points.count) points")
            }
            if present == 0 { seenAbsent = true; continue }
            guard !seenAbsent else { throw Finding(description: "write \(number) is there but an earlier one is not") }
        }
        return kept
    }
}
