import Foundation
import Logging
import TidemarkIO

/// The apply side of a node's Raft groups: rounds hand it committed entries in order, it
/// applies them to the state machines and answers the proposals and reads waiting for them.
extension RaftConsensus {
    /// What one round hands the apply side for one group, in order.
    struct ApplyBatch: @unchecked Sendable {
        var group: GroupID
        var machine: StateMachine
        var snapshot: RaftSnapshot?
        var entries: [RaftEntry]
        var writes: [UInt64: PendingWrite]
        var reads: [PendingRead]
        var leaderHint: UInt64?
    }

    /// The apply side: what each group has applied and the reads waiting for it.
    struct ApplyState {
        var applied: [GroupID: UInt64] = [:]
        var reads: [GroupID: [PendingRead]] = [:]
    }

    /// Makes sure the apply side runs; at most one run is pending at a time.
    func scheduleApply() {
        guard !applyScheduled.exchange(true, ordering: .acquiringAndReleasing) else { return }
        if !applyOn({ [self] in drainApply() }) { applyScheduled.store(false, ordering: .releasing) }
    }

    /// The apply side: applies queued batches in order, then answers their proposals and reads.
    private func drainApply() {
        while true {
            applyScheduled.store(false, ordering: .releasing)
            var completions: [() -> Void] = []
            // Taken and applied under one lock: two runs never apply batches out of order.
            let applied = applyLock.withLock {
                let batches = applyQueue.withLock { queue in defer { queue = [] }; return queue }
                for batch in batches { apply(batch, completions: &completions) }
                return !batches.isEmpty
            }
            for completion in completions { completion() }
            // A batch queued after the take finds `applyScheduled` false and schedules a run itself.
            guard applied else { return }
        }
    }

    private func apply(_ batch: ApplyBatch, completions: inout [() -> Void]) {
        let id = batch.group
        var applied = applySide.withLock { $0.applied[id] ?? 0 }
        if let snapshot = batch.snapshot {
            do {
                try batch.machine.restore(stateSnapshot(snapshot))
            } catch {
                // Applying what follows would build on a state that is not there: stop instead.
                logger.critical("installing a snapshot failed; this node stops", metadata: ["group": "\(id)", "reason": "\(error)"])
                disk.failed(error)  // it refuses writes until a restart: /ping says so
                let answers = lock.withLock { () -> [() -> Void] in
                    if !closed { stopLocked(reason: .io("\(id): installing a snapshot failed: \(error)")) }
                    defer { deferred = [] }
                    return deferred
                }
                completions += answers
                for write in batch.writes.values { completions.append { write.completion(.failure(.stopped)) } }
                for read in batch.reads { completions.append { read.completion(.failure(.stopped)) } }
                return
            }
            applied = max(applied, snapshot.index)
            snapshotsInstalled.add(1, ordering: .relaxed)
            if !snapshot.data.isEmpty && batch.machine.keepsInstalledImages { dropInstalledImage(of: id, snapshot) }
        }
        defer { applyBacklogBytes.subtract(batch.entries.reduce(0) { $0 + $1.data.count }, ordering: .relaxed) }
        for entry in batch.entries {
            var outcome: Result<UInt64, ConsensusError> = .success(entry.index)
            let mine = batch.writes[entry.index]
            if entry.kind == .normal && !entry.data.isEmpty {
                let local = mine?.term == entry.term ? mine?.local : nil
                do {
                    try batch.machine.apply(CommittedEntry(index: entry.index, term: entry.term, data: entry.data, local: local))
                } catch {
                    outcome = .failure(.refused("\(error)"))
                }
            }
            applied = entry.index
            appliedEntries.add(1, ordering: .relaxed)
            if let mine {
                // Another leader's entry took this index: the proposal was lost.
                let result = mine.term == entry.term ? outcome : .failure(.notLeader(id, leaderHint: batch.leaderHint))
                completions.append { mine.completion(result) }
            }
        }
        let answered: [PendingRead] = applySide.withLock { side in
            side.applied[id] = applied
            side.reads[id, default: []] += batch.reads
            let ready = side.reads[id]!.filter { $0.index <= applied }
            side.reads[id]!.removeAll { $0.index <= applied }
            return ready
        }
        for read in answered { completions.append { read.completion(.success(applied)) } }
    }
}
