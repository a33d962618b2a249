import Foundation
import Testing
import TidemarkTestSupport
@testable import TidemarkCluster

@Suite struct PartitionTests {
    /// Vectors from an independent implementation of IoTDB's BKDRHashExecutor (Java
    /// `String.charAt` units, `int` arithmetic); non-ASCII and a surrogate pair included.
    @Test func slotsAreIoTDBsBKDRHash() {
        let vectors: [(String, Int, Int)] = [
            ("root.sg.d1", 107, 1107), ("root.ln.wf01.wt01", 96, 6096), ("root.turbine.d1", 636, 8636),
            ("root.植物.d1", 27, 1027), ("root.sg.🙂", 623, 6623), ("root.a", 521, 521), ("root.bench.host_0042", 19, 1019),
        ]
        for (device, slot1000, slot10000) in vectors {
            #expect(SeriesSlots.slot(ofDevice: device, slotCount: 1000) == slot1000, "\(device)")
            #expect(SeriesSlots.slot(ofDevice: device, slotCount: 10000) == slot10000, "\(device)")
        }
        #expect(SeriesSlots.slot(ofDevice: "", slotCount: 1000) == 0)
        // A long path wraps the 32-bit hash and still lands in range.
        #expect((0..<1000).contains(SeriesSlots.slot(ofDevice: String(repeating: "z", count: 10_000), slotCount: 1000)))
    }

    @Test func timePartitionsRoundDown() {
        let week: Int64 = 7 * 24 * 3600 * 1000
        #expect(SeriesSlots.timePartition(of: 0, intervalMs: week) == 0)
        #expect(SeriesSlots.timePartition(of: week - 1, intervalMs: week) == 0)
        #expect(SeriesSlots.timePartition(of: week, intervalMs: week) == 1)
        #expect(SeriesSlots.timePartition(of: -1, intervalMs: week) == -1)
        #expect(SeriesSlots.timePartition(of: Int64.min, intervalMs: week) == Int64.min / week - 1)
        #expect(SeriesSlots.timePartition(of: Int64.max, intervalMs: week) == Int64.max / week)
    }

    /// 100 nodes, 10 000 groups of three replicas (over 10 databases): no group has two
    /// replicas on one node, and every node holds within one of the mean.
    @Test func placementAtScaleKeepsReplicasApartAndNodesEven() {
        let nodes = (1...100).map { NodeID($0) }
        var placement = ReplicaPlacement()
        var groups: [[NodeID]] = []
        let started = Date()
        for index in 0..<10_000 {
            let database = "root.db\(index % 10)"
            let replicas = placement.choose(3, database: database, among: nodes)!
            placement.add(replicas, database: database)
            groups.append(replicas)
        }
        let seconds = Date().timeIntervalSince(started)
        #expect(groups.allSatisfy { Set($0).count == 3 })
        let counts = nodes.map { placement.regions(on: $0) }
        let mean = Double(30_000) / 100
        #expect(counts.allSatisfy { abs(Double($0) - mean) <= 1 }, "regions per node: \(counts.min()!)…\(counts.max()!)")
        // Copy sets spread: every node shares groups with many others (scatter width), not a few.
        var partners: [NodeID: Set<NodeID>] = [:]
        for replicas in groups { for node in replicas { partners[node, default: []].formUnion(replicas.filter { $0 != node }) } }
        #expect(partners.values.allSatisfy { $0.count >= 90 }, "smallest scatter width \(partners.values.map(\.count).min()!)")
        print("placement: 10 000 groups of 3 on 100 nodes in \(String(format: "%.3f", seconds)) s")
    }

    @Test func placementNeedsEnoughNodesAndSpreadsEachDatabase() {
        var placement = ReplicaPlacement()
        #expect(placement.choose(3, database: "root.a", among: [1, 2]) == nil)
        #expect(placement.choose(2, database: "root.a", among: [1, 1, 2]) != nil)
        // Equal totals: a database's next group avoids nodes that hold its others.
        placement.add([1, 2], database: "root.a")
        placement.add([3, 4], database: "root.b")
        #expect(Set(placement.choose(2, database: "root.a", among: [1, 2, 3, 4, 5, 6])!) == [5, 6])
        placement.add([5, 6], database: "root.c")
        // All hold one region: root.a's next group avoids its own nodes (1, 2), then pairs 3
        // with a node it shares no group with (5, not 4).
        #expect(placement.choose(2, database: "root.a", among: [1, 2, 3, 4, 5, 6]) == [3, 5])
    }
}
