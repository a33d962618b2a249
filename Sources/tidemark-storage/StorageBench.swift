import ArgumentParser
import Foundation
import TidemarkCore
import TidemarkStorage

/// The storage benchmark on the workload of ../shared/bench: devices × fields of 2-decimal
/// random walks (steps of ±0.20), one line per device every 10 s, each device at its own
/// millisecond offset.
struct StorageBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench", abstract: "Bytes per point and codec throughput.")

    @Option(help: "Devices.") var devices = 1000
    @Option(help: "Fields per device.") var fields = 10
    @Option(help: "Timestamps per device (10 s apart).") var timestamps = 1440
    @Option(help: "Lines per write.") var batchLines = 5000
    @Option(help: "zstd level.") var level: Int32 = 3
    @Option(help: "PRNG seed.") var seed: UInt64 = 42

    func run() throws {
        let directory = NSTemporaryDirectory() + "tidemark-storagebench-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var options = EngineOptions()
        options.compressionLevel = level
        options.compactionTriggerSegments = Int.max
        let engine = try StorageEngine(directory: directory, options: options)
        var state = seed
        func random() -> UInt64 {  // splitmix64, as lpbench.c
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        let offsets = (0..<devices).map { _ in Int64(random() % 10_000) }
        var walks = (0..<(devices * fields)).map { _ in Int64(1000 + random() % 6000) }
        let paths = (0..<devices).map { device in (0..<fields).map { "root.bench.dev\(String(format: "%05d", device)).f\($0)" } }
        let t0: Int64 = 1_700_000_000_000
        var batch: [PointWrite] = []
        batch.reserveCapacity(batchLines * fields)
        var lines = 0
        let writeStart = Date()
        for k in 0..<timestamps {
            for device in 0..<devices {
                let timestamp = t0 + Int64(k) * 10_000 + offsets[device]
                for field in 0..<fields {
                    walks[device * fields + field] += Int64(random() % 41) - 20
                    batch.append(PointWrite(path: paths[device][field], timestamp: timestamp,
                                            value: .double(Double(walks[device * fields + field]) / 100)))
                }
                lines += 1
                if lines % batchLines == 0 {
                    try engine.write(batch)
                    batch.removeAll(keepingCapacity: true)
                }
            }
        }
        if !batch.isEmpty { try engine.write(batch) }
        let writeSeconds = Date().timeIntervalSince(writeStart)
        try engine.flush()
        let points = devices * fields * timestamps
        let flushed = engine.stats
        let partitions = Set(try FileManager.default.contentsOfDirectory(atPath: directory + "/segments").compactMap { name in
            Int64(name.dropFirst().prefix { $0 != "-" })
        })
        for partition in partitions { while try engine.compact(partition: partition) && engine.stats.segments > partitions.count {} }
        let compacted = engine.stats

        // Codec throughput on one core, best of three passes over the compacted data in
        // memory: encode = codecs + zstd + CRC into a segment, decode = CRC + zstd + codecs.
        var series: [(String, [Int64], Column)] = []
        var chunks: [(SegmentReader, ChunkLocation, [UInt8])] = []
        for name in try FileManager.default.contentsOfDirectory(atPath: directory + "/segments") {
            let reader = try SegmentReader(path: directory + "/segments/" + name)
            for (path, locations) in reader.index.sorted(by: { $0.key < $1.key }) {
                var times: [Int64] = []
                var values: [Double] = []
                for location in locations {
                    let bytes = try reader.rawBytes(location)
                    chunks.append((reader, location, bytes))
                    let (t, v) = try reader.decode(bytes, of: location)
                    times += t
                    if case .double(let d) = v { values += d }
                }
                series.append((path, times, .double(values)))
            }
        }
        var encodeSeconds = Double.infinity, decodeSeconds = Double.infinity
        var encodedBytes = 0, decodedPoints = 0
        for _ in 0..<3 {
            let encodeStart = Date()
            var writer = SegmentWriter(info: SegmentInfo(partition: 0, maxSequence: 0, level: 0), compressionLevel: level)
            for (name, times, values) in series { writer.add(path: name, timestamps: times, values: values) }
            encodedBytes = writer.finish().count
            encodeSeconds = min(encodeSeconds, Date().timeIntervalSince(encodeStart))
            let decodeStart = Date()
            decodedPoints = 0
            for (reader, location, bytes) in chunks { decodedPoints += try reader.decode(bytes, of: location).timestamps.count }
            decodeSeconds = min(decodeSeconds, Date().timeIntervalSince(decodeStart))
        }

        print("workload: \(devices) devices × \(fields) fields × \(timestamps) timestamps = \(points) points (2-decimal walks, steps ±0.20)")
        print(String(format: "ingest through the engine: %.0f points/s (one writer, WAL batch sync)", Double(points) / writeSeconds))
        print(String(format: "bytes/point after flush:      %.3f  (%d segments, %d bytes)", Double(flushed.segmentBytes) / Double(points), flushed.segments, flushed.segmentBytes))
        print(String(format: "bytes/point after compaction: %.3f  (%d segments, %d bytes)", Double(compacted.segmentBytes) / Double(points), compacted.segments, compacted.segmentBytes))
        print(String(format: "encode: %.1f M points/s per core (%d points into %d bytes)", Double(decodedPoints) / encodeSeconds / 1e6, decodedPoints, encodedBytes))
        print(String(format: "decode: %.1f M points/s per core", Double(decodedPoints) / decodeSeconds / 1e6))
        print(String(format: "entropy floor of the steps: log2(41)/8 = %.3f bytes/point", log2(41.0) / 8))
        try applyBench(directory: directory)
    }

    /// Committed entries applied to a consensus region, as in bench/consensus.sh at batch
    /// 1000 (100 devices × 10 fields per line set, a few requests merged per entry): on the
    /// proposing node (columns already decoded) and on a replica (from the record's bytes).
    private func applyBench(directory: String) throws {
        let entries = 300, devicesPerEntry = 100, timestampsPerEntry = 4
        let proposer = try StorageEngine(directory: directory + "/apply-proposer", log: .consensus)
        try proposer.createDatabase("root.cbench")
        var prepared: [PreparedWrite] = []
        for entry in 0..<entries {
            var points: [PointWrite] = []
            for step in 0..<timestampsPerEntry {
                let timestamp = 1_700_000_000_000 + Int64(entry * timestampsPerEntry + step)
                for device in 0..<devicesPerEntry {
                    for field in 0..<fields { points.append(PointWrite(path: "root.cbench.m.d\(device).f\(field)", timestamp: timestamp, value: .double(20.5 + Double(field)))) }
                }
            }
            prepared.append(try proposer.prepareWrite(points)!)
        }
        let pointsPerEntry = devicesPerEntry * fields * timestampsPerEntry
        let replica = try StorageEngine(directory: directory + "/apply-replica", log: .consensus)
        var proposerSeconds = 0.0, replicaSeconds = 0.0
        for (offset, write) in prepared.enumerated() {
            let start = Date()
            try proposer.apply(index: UInt64(offset + 1), record: write.record, prepared: write)
            proposerSeconds += Date().timeIntervalSince(start)
            let replicaStart = Date()
            try replica.apply(index: UInt64(offset + 1), record: write.record)
            replicaSeconds += Date().timeIntervalSince(replicaStart)
        }
        let total = Double(entries * pointsPerEntry)
        print(String(format: "apply, %d entries of %d points (%d series × %d): proposer %.3f µs/point, replica %.3f µs/point",
                     entries, pointsPerEntry, devicesPerEntry * fields, timestampsPerEntry, proposerSeconds / total * 1e6, replicaSeconds / total * 1e6))
    }
}
