import Synchronization
import TidemarkCluster
import TidemarkConsensus
import TidemarkCore
import TidemarkStorage
import TidemarkWire

/// The append stage's work: each job's rows go to the region groups the partition table
/// places them in (`WritePartitions.Placer`), and each group's share of a whole batch of jobs
/// is written as one entry (`GroupWriter`), all groups' entries in one `write(batch:)`. A job
/// whose rows all fall in one group (the usual case) goes as it is; one that spans groups is
/// split, and answered once every part is. In a cluster, the parts of groups this node does
/// not lead go to the nodes that do (`DataPlane`); a part a coordinator sent here is pinned
/// to its group.
struct WriteApplier: Sendable {
    let regions: RegionSet
    /// The meta group's state now (the partition table the rows are placed by).
    let state: @Sendable () -> MetaState
    let hints: LeaderHints
    /// In a multi-node cluster: how parts reach other nodes.
    var plane: DataPlane? = nil

    func apply(_ jobs: [WriteJob]) {
        var byGroup: [GroupID: [WriteJob]] = [:]
        var order: [GroupID] = []
        func add(_ job: WriteJob, to group: GroupID) {
            if byGroup[group] == nil { order.append(group) }
            byGroup[group, default: []].append(job)
        }
        let state = state()  // one copy for the batch: assignments never change once made
        var placer = WritePartitions.Placer(state)
        for job in jobs {
            // An operation that began after the route stage let the job through: refused here too.
            if let refusal = WritePartitions.refusedByOperations(job.rows, in: state) {
                job.finish(WriteOutcome(refused: [], failure: refusal, failureStatus: 503))
                continue
            }
            if let pin = job.pin {
                add(job, to: pin.group)
                continue
            }
            let placement = placer.place(job.rows)
            if let single = placement.single {
                add(job, to: single)
                continue
            }
            for (group, part) in Self.split(job, rowGroups: placement.rowGroups) { add(part, to: group) }
        }
        var writes: [GroupWrite] = []
        for group in order {
            var jobs = byGroup[group]!
            let region = regions.region(group, openingFrom: state)
            if let plane, region.map({ $0.consensus.leader(of: group) != $0.consensus.nodeID }) ?? true {
                jobs = plane.route(jobs, of: group, region: region)
            }
            guard !jobs.isEmpty else { continue }
            guard let region else {
                let message = "region group \(group) is not held by this node; retry (its leader is elsewhere, or it is being removed)"
                for job in jobs { job.finish(WriteOutcome(refused: job.decodeErrors, failure: message, failureStatus: 503)) }
                continue
            }
            writes += GroupWriter(region, hints: hints).apply(jobs)
        }
        // Every group's entry at once: regions on one shared log share its fsync (group commit).
        if !writes.isEmpty { regions.consensus.write(batch: writes) }
    }

    /// `job`'s rows as one job per group, each unit's rows in the part of their group; a unit
    /// with a row that no group takes (outside every database) is refused whole. The parts'
    /// answers are gathered into one for `job`; with no part, `job` is answered here.
    static func split(_ job: WriteJob, rowGroups: [GroupID?]) -> [(GroupID, WriteJob)] {
        precondition(rowGroups.count == job.rows.rowCount, "one group per row")
        var batches: [GroupID: RowBatch] = [:]
        var keyIndex: [GroupID: [Int32: Int]] = [:]
        var units: [GroupID: [WriteJob.Unit]] = [:]
        var order: [GroupID] = []
        var refused = job.decodeErrors
        for unit in job.units {
            if let row = unit.rows.first(where: { rowGroups[$0] == nil }) {
                refused.append(LineError(line: unit.line, column: 1,
                                         message: "\(job.rows.key(ofRow: row).device): no database holds it (CREATE DATABASE first)"))
                continue
            }
            var starts: [GroupID: Int] = [:]
            for row in unit.rows {
                let group = rowGroups[row]!
                if batches[group] == nil {
                    batches[group] = RowBatch()
                    order.append(group)
                }
                if starts[group] == nil { starts[group] = batches[group]!.rowCount }
                let original = job.rows.rowKeys[row]
                let key = keyIndex[group, default: [:]][original] ?? {
                    let added = batches[group]!.addKey(job.rows.keys[Int(original)])
                    keyIndex[group, default: [:]][original] = added
                    return added
                }()
                batches[group]!.append(key: key, timestamp: job.rows.rowTimestamps[row], values: job.rows.values[job.rows.valueRange(ofRow: row)])
            }
            for (group, start) in starts { units[group, default: []].append(WriteJob.Unit(line: unit.line, rows: start..<batches[group]!.rowCount)) }
        }
        guard !order.isEmpty else {
            job.finish(WriteOutcome(refused: refused.sorted { $0.line < $1.line }))
            return []
        }
        let gather = OutcomeGather(parts: order.count, refused: refused, finish: job.finish)
        return order.map { group in
            (group, WriteJob(rows: batches[group]!, units: units[group] ?? [], decodeErrors: []) { gather.add($0) })
        }
    }
}

/// One answer from the answers of a job's parts: every refused unit, and the first failure.
private final class OutcomeGather: Sendable {
    private struct Gathered {
        var remaining: Int
        var outcome: WriteOutcome
    }
    private let gathered: Mutex<Gathered>
    private let finish: @Sendable (WriteOutcome) -> Void

    init(parts: Int, refused: [LineError], finish: @escaping @Sendable (WriteOutcome) -> Void) {
        precondition(parts > 0)
        gathered = Mutex(Gathered(remaining: parts, outcome: WriteOutcome(refused: refused)))
        self.finish = finish
    }

    func add(_ part: WriteOutcome) {
        let done: WriteOutcome? = gathered.withLock { gathered in
            gathered.remaining -= 1
            gathered.outcome.refused += part.refused
            if gathered.outcome.failure == nil, part.failure != nil {
                let refused = gathered.outcome.refused
                gathered.outcome = part
                gathered.outcome.refused = refused
            }
            guard gathered.remaining == 0 else { return nil }
            gathered.outcome.refused.sort { $0.line < $1.line }
            return gathered.outcome
        }
        if let done { finish(done) }
    }
}
