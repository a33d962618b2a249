import TidemarkCluster
import TidemarkCore

/// The route stage's work on a write (DESIGN.md section 4): every partition it touches is
/// in the partition table before it goes on to append. A database a write brings is created
/// in the meta group (with the cluster's defaults, as auto-create makes it), then the slots
/// and time partitions the table lacks are allocated there; assignments never change, so a
/// write that finds them all goes on at once, and only the first write into a new
/// partition waits for the meta group.
struct PartitionRouter: Sendable {
    let agent: MetaAgent
    /// `auto_create_schema`: without it a device outside every database is left to the
    /// engine to refuse.
    let createDatabases: Bool

    func route(_ job: WriteJob, forward: @escaping NodeStages.Forward) {
        let state = agent.machine.current
        // A database being dropped, or a series being deleted, takes no writes until that finished.
        if let refusal = WritePartitions.refusedByOperations(job.rows, in: state) {
            return job.finish(WriteOutcome(refused: [], failure: refusal, failureStatus: 503))
        }
        let needs = WritePartitions.missing(job.rows, in: state, createDatabases: createDatabases)
        guard !needs.isEmpty else { return forward(job, true) }
        let settings = agent.machine.settings
        let commands = needs.databases.map { MetaCommand.createDatabase(DatabaseRecord(name: $0, defaults: settings)) } + needs.allocations.keys.sorted().map { MetaCommand.allocate(database: $0, needs.allocations[$0]!) }
        propose(commands[...], appliedThrough: 0) { [agent] failure, index in
            guard let failure else {
                // The append stage places the rows by this node's copy of the table: it must
                // hold the new partitions first (the leader answered once it applied them).
                if agent.machine.appliedIndex < index { agent.refreshSoon() }
                return agent.machine.whenApplied(through: index) { forward(job, false) }
            }
            job.finish(failure)
        }
    }

    /// Proposes `commands` one after the other; `done` hears nil and the highest meta log index
    /// the answers named once all went through, or why the write cannot go on. A database
    /// that exists already (another write created it meanwhile) is no failure.
    private func propose(_ commands: ArraySlice<MetaCommand>, appliedThrough: UInt64,
                         done: @escaping @Sendable (WriteOutcome?, UInt64) -> Void) {
        guard let command = commands.first else { return done(nil, appliedThrough) }
        agent.proposeIndexed(command) { [self] result, index in
            let through = max(appliedThrough, index)
            switch result {
            case .success: propose(commands.dropFirst(), appliedThrough: through, done: done)
            case .failure(.refused(let error)) where error.code == 501: propose(commands.dropFirst(), appliedThrough: through, done: done)
            case .failure(.refused(let error)):
                done(WriteOutcome(refused: [], failure: "the meta group refused the write's partitions: \(error.message)", failureStatus: 500), 0)
            case .failure(.unavailable(let why)):
                done(WriteOutcome(refused: [], failure: "the write's partitions cannot be allocated now (\(why)); retry", failureStatus: 503), 0)
            }
        }
    }
}
