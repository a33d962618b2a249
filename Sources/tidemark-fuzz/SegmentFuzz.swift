import ArgumentParser
import Foundation
import TidemarkCore
import TidemarkStorage
import TidemarkTestSupport

/// Damaged segment files fed to recovery: a region with a few flushed segments is copied, one
/// of its segments damaged (bytes flipped, cut short, zeroed, grown), and the region opened and
/// read whole. Opening may fail and reads may fail, but nothing may crash or hang, and a read
/// that succeeds returns only points that were written, with their values.
struct SegmentFuzz: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "segments", abstract: "Damaged segment files fed to recovery.")
    @OptionGroup var options: FuzzOptions

    func run() throws { try PristineDirectory.with("segments") { directories in
        let (base, scratch) = (directories.base, directories.scratch)
        let written = try makeRegion(at: base)
        let segments = try FileManager.default.contentsOfDirectory(atPath: base + "/segments").sorted()
        guard !segments.isEmpty else { throw Finding(description: "the base region has no segment") }
        try FuzzLoop(name: "segments", options: options).run { seed, describe in
            var random = Seeded(state: seed)
            try directories.freshCopy()
            let victim = scratch + "/segments/" + random.pick(segments)
            describe(try FileDamage.apply(to: victim, &random).description)
            guard let engine = try? StorageEngine(directory: scratch) else { return }
            defer { engine.close() }
            for (path, points) in written {
                guard let read = try? engine.scan(path: path, range: Int64.min...Int64.max).all() else { continue }
                for (offset, timestamp) in read.timestamps.enumerated() where points[timestamp] != read.values[offset] {
                    throw Finding(description: "\(path) at \(timestamp): read \(read.values[offset]), written \(String(describing: points[timestamp]))")
                }
                _ = try? engine.aggregate(path: path, range: Int64.min...Int64.max)
            }
        }
    } }

    /// A region of three series over four flushed segments; returns what was written.
    private func makeRegion(at directory: String) throws -> [String: [Int64: Value]] {
        var options = EngineOptions()
        options.partitionInterval = 1000
        let engine = try StorageEngine(directory: directory, options: options)
        defer { engine.close() }
        var written: [String: [Int64: Value]] = [:]
        for round in 0..<4 {
            var points: [PointWrite] = []
            for index in 0..<300 {
                let timestamp = Int64(round * 700 + index * 3)
                points.append(PointWrite(path: "root.sf.d.i", timestamp: timestamp, value: .int64(Int64(index * index - round))))
                points.append(PointWrite(path: "root.sf.d.f", timestamp: timestamp, value: .double(Double(index) / 7)))
                if index % 5 == 0 { points.append(PointWrite(path: "root.sf.e.t", timestamp: timestamp, value: .text("t\(index)"))) }
            }
            try engine.write(points)
            for point in points { written[point.path, default: [:]][point.timestamp] = point.value }
            try engine.flush()
        }
        return written
    }
}
