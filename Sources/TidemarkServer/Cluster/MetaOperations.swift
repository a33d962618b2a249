import Logging
import TidemarkCluster
import TidemarkConsensus

/// Resumes the metadata operations a crash or a lost leader left in flight (DESIGN.md
/// section 3: a node restarting with a started but unfinished operation finishes it, never
/// leaves it half): a drop whose regions still hold the database deletes it there, then the
/// meta group records its end. Run when the node is ready and every few seconds after, on
/// the handoff stage; idempotent.
enum MetaOperations {
    static func resume(regions: RegionSet, agent: MetaAgent, logger: Logger) {
        let runningHere = agent.dropsRunningHere.withLock { $0 }
        let operations = agent.machine.current.operations.values.sorted { $0.id < $1.id }.filter { operation in
            switch operation.kind { case .dropDatabase(let name): !runningHere.contains(name) }
        }
        guard !operations.isEmpty else { return }
        // Only a node whose regions take the data path's changes deletes: the one-node
        // cluster, or the leader of data-0 (whose deletes every replica applies).
        guard regions.takesDataChangesHere else { return }
        let store = regions.store()
        for operation in operations {
            switch operation.kind {
            case .dropDatabase(let name):
                do {
                    if store.databases().contains(name) { try store.dropDatabase(name) }
                } catch {
                    return logger.warning("a DROP DATABASE in flight could not delete its data; it is tried again",
                                          metadata: ["database": "\(name)", "operation": "\(operation.id)", "error": "\(error)"])
                }
                switch agent.proposeAndWait(.finishDrop(database: name)) {
                case .success:
                    logger.notice("resumed a DROP DATABASE left in flight to its end", metadata: ["database": "\(name)", "operation": "\(operation.id)"])
                case .failure(let error):
                    return logger.warning("a DROP DATABASE in flight could not be recorded as done; it is tried again",
                                          metadata: ["database": "\(name)", "error": "\(error)"])
                }
            }
        }
    }
}
