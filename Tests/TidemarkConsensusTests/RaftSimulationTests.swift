import Foundation
import Testing

/// Seeds `SEED_START …` (`TIDEMARK_SIM_SEED_START`, default 1), `TIDEMARK_SIM_SEEDS` of them
/// (default `defaultCount`): `make sim SEEDS=N SEED_START=S` sets both, for the Raft and the
/// multi-leader simulations.
func seedRange(defaultCount: UInt64 = 500) -> ClosedRange<UInt64> {
    let environment = ProcessInfo.processInfo.environment
    let start = environment["TIDEMARK_SIM_SEED_START"].flatMap { UInt64($0) } ?? 1
    let count = environment["TIDEMARK_SIM_SEEDS"].flatMap { UInt64($0) } ?? defaultCount
    return start...(start + max(count, 1) - 1)
}

/// Runs one seed: a chaos phase under the nemesis, then a healed phase that must make progress.
func runSimulation(seed: UInt64, payload: RaftSimulation.Payload = .registers) throws -> RaftSimulation {
    // 3 and 5 replicas, each with and without quiescence.
    let simulation = RaftSimulation(seed: seed, replicas: seed % 2 == 0 ? 5 : 3, quiesce: (seed / 2) % 2 == 0, payload: payload)
    for _ in 0..<300 { try simulation.step(nemesis: true) }
    try simulation.heal(roundsMax: 400)
    if let key = Linearizability.violation(in: simulation.history) {
        throw SimulationFailure(seed: seed, round: simulation.round, what: "the history of \(key) is not linearizable")
    }
    return simulation
}

@Suite struct RaftSimulationTests {
    @Test func raftStaysSafeAndLiveUnderFaults() throws {
        var failures: [String] = []
        var totals = (elections: 0, crashes: 0, partitions: 0, transfers: 0, snapshots: 0, acknowledged: 0, reads: 0, membership: 0, quiesced: 0,
                      applyHolds: 0, refusedWrites: 0)
        let seeds = seedRange()
        for seed in seeds {
            do {
                let simulation = try runSimulation(seed: seed)
                totals.elections += simulation.stats.elections
                totals.crashes += simulation.stats.crashes
                totals.partitions += simulation.stats.partitions
                totals.transfers += simulation.stats.transfers
                totals.snapshots += simulation.stats.snapshots
                totals.acknowledged += simulation.writes.filter(\.acknowledged).count
                totals.reads += simulation.completedReads.count
                totals.membership += simulation.stats.membershipChanges
                totals.quiesced += simulation.stats.quiescedRounds
                totals.applyHolds += simulation.stats.applyHolds
                totals.refusedWrites += simulation.stats.refusedWrites
            } catch {
                failures.append("\(error)")
            }
        }
        print("raft simulation: seeds \(seeds.lowerBound)…\(seeds.upperBound): \(seeds.count - failures.count) passed, \(failures.count) failed; "
              + "\(totals.elections) elections, \(totals.crashes) crashes, \(totals.partitions) partitions, \(totals.transfers) transfers, "
              + "\(totals.snapshots) snapshots, \(totals.membership) membership changes, \(totals.quiesced) rounds quiesced, "
              + "\(totals.applyHolds) apply holds, \(totals.refusedWrites) writes refused by a full disk, "
              + "\(totals.acknowledged) acknowledged writes, \(totals.reads) linearizable reads checked")
        for failure in failures.prefix(10) { Issue.record("\(failure)") }
        // The nemesis must really have exercised the faults.
        #expect(totals.crashes > 0 && totals.partitions > 0 && totals.snapshots > 0 && totals.acknowledged > 0 && totals.reads > 0 && totals.membership > 0 && totals.quiesced > 0
                && totals.applyHolds > 0 && totals.refusedWrites > 0)
    }

    /// The meta group's state machine under the same faults (issue 29): random meta commands
    /// through a simulated group, every apply checked (`RaftSimulation.applyMeta`).
    @Test func theMetaStateMachineStaysSafeUnderFaults() throws {
        var failures: [String] = []
        var totals = (commands: 0, refused: 0, assignments: 0, snapshots: 0, crashes: 0, partitions: 0)
        let seeds = seedRange(defaultCount: 100)
        for seed in seeds {
            do {
                let simulation = try runSimulation(seed: seed, payload: .meta)
                totals.commands += simulation.metaStats.commands
                totals.refused += simulation.metaStats.refused
                totals.assignments += simulation.metaStats.assignments
                totals.snapshots += simulation.stats.snapshots
                totals.crashes += simulation.stats.crashes
                totals.partitions += simulation.stats.partitions
            } catch {
                failures.append("\(error)")
            }
        }
        print("meta simulation: seeds \(seeds.lowerBound)…\(seeds.upperBound): \(seeds.count - failures.count) passed, \(failures.count) failed; "
              + "\(totals.commands) meta commands applied (\(totals.refused) refused), \(totals.assignments) partition assignments, "
              + "\(totals.snapshots) snapshots, \(totals.crashes) crashes, \(totals.partitions) partitions")
        for failure in failures.prefix(10) { Issue.record("\(failure)") }
        #expect(totals.commands > 0 && totals.assignments > 0 && totals.snapshots > 0 && totals.crashes > 0 && totals.partitions > 0)
    }

    @Test func aSeedReplaysExactly() throws {
        let first = try runSimulation(seed: 42)
        let second = try runSimulation(seed: 42)
        #expect(first.round == second.round)
        #expect(first.writes.map(\.index) == second.writes.map(\.index))
        #expect(first.writes.map(\.value) == second.writes.map(\.value))
    }
}
