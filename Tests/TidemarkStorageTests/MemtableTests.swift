import Testing
import TidemarkCore
@testable import TidemarkStorage

@Suite struct MemtableTests {
    @Test func aPathKeepsOneBufferAcrossSeriesNumbersNewestWinning() {
        let memtable = Memtable(createdNs: 0)
        // Number 1: a series whose deletion a write raced; number 2: the series made again.
        memtable.append(id: 1, path: "root.a.d.x", timestamps: [1, 2, 3], values: .double([1, 2, 3]), sequence: 1)
        memtable.append(id: 7, path: "root.a.d.y", timestamps: [5], values: .int64([5]), sequence: 2)
        memtable.append(id: 2, path: "root.a.d.x", timestamps: [2, 4], values: .double([20, 40]), sequence: 3)
        // Made again with another type: the dead series' points go.
        memtable.append(id: 3, path: "root.a.d.y", timestamps: [6], values: .text(["six"]), sequence: 4)
        // The first number no longer names the path's buffer; writes under the new one continue it.
        memtable.append(id: 2, path: "root.a.d.x", timestamps: [5], values: .double([50]), sequence: 5)
        #expect(memtable.buffers.map(\.path) == ["root.a.d.x", "root.a.d.y"])
        #expect(memtable.pointCount == 7)
        let x = memtable.buffer(path: "root.a.d.x")!.sorted()
        #expect(x.timestamps == [1, 2, 3, 4, 5])
        #expect(x.values == .double([1, 20, 3, 40, 50]))
        let y = memtable.buffer(path: "root.a.d.y")!.sorted()
        #expect(y.timestamps == [6])
        #expect(y.values == .text(["six"]))
    }
}
