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
        propose(commands[...]) { failure in
            guard let failure else { return forward(job, false) }
            job.finish(failure)
        }
    }

    /// Proposes `commands` one after the other; `done` hears nil once all went through, or
    /// why the write cannot go on. A database that exists already (another write created it
    /// meanwhile) is no failure.
    private func propose(_ commands: ArraySlice<MetaCommand>, done: @escaping @Sendable (WriteOutcome?) -> Void) {
        guard let command = commands.first else { return done(nil) }
        agent.propose(command) { [self] result in
            switch result {
            case .success: propose(commands.dropFirst(), done: done)
            case .failure(.refused(let error)) where error.code == 501: propose(commands.dropFirst(), done: done)
            case .failure(.refused(let error)):
                done(WriteOutcome(refused: [], failure: "the meta group refused the write's partitions: \(error.message)", failureStatus: 500))
            case .failure(.unavailable(let why)):
                done(WriteOutcome(refused: [], failure: "the write's partitions cannot be allocated now (\(why)); retry", failureStatus: 503))
            }
        }
    }
}
