import Foundation
import Synchronization
import Testing
import TidemarkCore
import TidemarkTestSupport
@testable import TidemarkStorage

@Suite struct SeriesScanTests {
    /// Sources that overlap, interleave, tie and lie apart, cut into chunks, merged in batches
    /// of every small size: the scan must equal a model where the newest source wins.
    @Test func mergedScanEqualsNewestSourceWinsModel() throws {
        var generator = Seeded(state: 7)
        for round in 0..<300 {
            let sourceCount = Int.random(in: 1...4, using: &generator)
            var model: [Int64: Double] = [:]
            var cursors: [SourceCursor] = []
            for source in 0..<sourceCount {  // oldest first
                let start = Int64.random(in: 0..<60, using: &generator)
                let span = Int64.random(in: 1..<60, using: &generator)
                let timestamps = (start..<(start + span)).filter { _ in Bool.random(using: &generator) }
                let values = timestamps.map { Double(source * 1000) + Double($0) }
                for (t, v) in zip(timestamps, values) { model[t] = v }
                var loaders: [SourceCursor.Loader] = []
                var offset = 0
                while offset < timestamps.count {
                    let end = min(timestamps.count, offset + Int.random(in: 1...9, using: &generator))
                    let chunk = (Array(timestamps[offset..<end]), Column.double(Array(values[offset..<end])))
                    loaders.append { chunk }
                    offset = end
                }
                cursors.append(SourceCursor(type: .double, loaders: loaders))
            }
            let batchPoints = Int.random(in: 1...8, using: &generator)
            let scan = SeriesScan(dataType: .double, cursors: cursors, batchPoints: batchPoints)
            var merged: [(Int64, Double)] = []
            while let batch = try scan.next() {
                #expect(batch.timestamps.count <= batchPoints && batch.timestamps.count == batch.values.count)
                guard case .double(let doubles) = batch.values else { Issue.record("wrong column type"); return }
                merged += zip(batch.timestamps, doubles)
            }
            let expected = model.sorted { $0.key < $1.key }
            #expect(merged.map(\.0) == expected.map(\.key), "round \(round)")
            #expect(merged.map(\.1) == expected.map(\.value), "round \(round)")
        }
    }

    /// A point at Int64.max (or Int64.min) alone in its source, or tied with others: the scan
    /// ends. It once spun for ever, its run bounded "below Int64.max". Run on a thread of its
    /// own with a bound, so a hang fails the test instead of holding the suite.
    @Test func pointsAtTheEndsOfTimeAreReadAndTheScanEnds() throws {
        let cases: [[[Int64]]] = [
            [[Int64.max]], [[Int64.min, 0, Int64.max]], [[1, Int64.max], [Int64.max]], [[Int64.max], [5]],
            [[Int64.min], [Int64.min, Int64.max]],
        ]
        for sources in cases {
            let expected = Set(sources.joined()).sorted()
            let finished = DispatchSemaphore(value: 0)
            let merged = Mutex<[Int64]>([])
            let thread = Thread {
                let cursors = sources.map { times in
                    SourceCursor(type: .double, loaders: [{ (times, Column.double(times.map(Double.init))) }])
                }
                let scan = SeriesScan(dataType: .double, cursors: cursors, batchPoints: 2)
                while let batch = try? scan.next() { merged.withLock { $0 += batch.timestamps } }
                finished.signal()
            }
            thread.start()
            guard finished.wait(timeout: .now() + 10) == .success else {
                Issue.record("the scan of \(sources) did not end")
                continue
            }
            #expect(merged.withLock { $0 } == expected, "\(sources)")
        }
    }
}
