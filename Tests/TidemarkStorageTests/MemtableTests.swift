import Testing
import TidemarkCore
@testable import TidemarkStorage

@Suite struct MemtableTests {
    @Test func aPathUnderTwoSeriesNumbersFlushesAsOneSeriesNewestWinning() {
        let memtable = Memtable(createdNs: 0)
        // Number 1: a series whose deletion a write raced; number 2: the series made again.
        memtable.append(id: 1, path: "root.a.d.x", timestamps: [1, 2, 3], values: .double([1, 2, 3]), sequence: 1)
        memtable.append(id: 7, path: "root.a.d.y", timestamps: [5], values: .int64([5]), sequence: 2)
        memtable.append(id: 2, path: "root.a.d.x", timestamps: [2, 4], values: .double([20, 40]), sequence: 3)
        // Made again with another type: only the new series' points go to the segment.
        memtable.append(id: 3, path: "root.a.d.y", timestamps: [6], values: .text(["six"]), sequence: 4)
        let flushed = memtable.buffersByPath
        #expect(flushed.map(\.path) == ["root.a.d.x", "root.a.d.y"])
        let x = flushed[0].sorted()
        #expect(x.timestamps == [1, 2, 3, 4])
        #expect(x.values == .double([1, 20, 3, 40]))
        let y = flushed[1].sorted()
        #expect(y.timestamps == [6])
        #expect(y.values == .text(["six"]))
        // Reads go by number: the live series sees only its own buffer.
        #expect(memtable.buffer(id: 2)?.timestamps == [2, 4])
    }
}
