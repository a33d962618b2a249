import Foundation
import Testing

@Suite struct MultiLeaderSimulationTests {
    @Test func replicasConvergeAndEverySourceKeepsItsOrder() throws {
        var failures: [String] = []
        var totals = (writes: 0, throttled: 0, crashes: 0, partitions: 0, flushes: 0, released: 0, joins: 0)
        let seeds = seedRange(defaultCount: 200)
        for seed in seeds {
            let simulation = MultiLeaderSimulation(seed: seed, replicas: seed % 4 == 0 ? 5 : 3)
            do {
                for _ in 0..<300 { try simulation.step(nemesis: true) }
                try simulation.heal(roundsMax: 500)
            } catch {
                failures.append("\(error)")
            }
            totals.writes += simulation.stats.writes
            totals.throttled += simulation.stats.throttled
            totals.crashes += simulation.stats.crashes
            totals.partitions += simulation.stats.partitions
            totals.flushes += simulation.stats.flushes
            totals.released += simulation.stats.released
            totals.joins += simulation.stats.joins
        }
        print("multi-leader simulation: seeds \(seeds.lowerBound)…\(seeds.upperBound): \(seeds.count - failures.count) passed, "
              + "\(failures.count) failed; \(totals.writes) writes, \(totals.throttled) throttled, \(totals.crashes) crashes, \(totals.partitions) partitions, "
              + "\(totals.flushes) flushes, \(totals.released) log records released, \(totals.joins) replicas joined")
        for failure in failures.prefix(10) { Issue.record("multi-leader \(failure)") }
        #expect(totals.writes > 0 && totals.crashes > 0 && totals.partitions > 0 && totals.throttled > 0 && totals.released > 0 && totals.joins > 0)
    }
}
