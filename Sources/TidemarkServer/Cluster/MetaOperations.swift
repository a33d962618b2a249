import Logging
import TidemarkCluster
import TidemarkConsensus
import TidemarkQuery
import TidemarkStorage

/// Resumes the metadata operations a crash or a lost leader left in flight (DESIGN.md
/// section 3: a node restarting with a started but unfinished operation finishes it, never
/// leaves it half): what the regions still hold of a dropped database or of deleted series
/// is deleted there, then the meta group records the end. Run when the node is ready and
/// every few seconds after, on the handoff stage; idempotent.
enum MetaOperations {
    /// What an operation names: a database, or a `DELETE TIMESERIES` pattern (the key under
    /// which a statement of this process that runs it is known, `MetaAgent.operationsRunningHere`).
    static func subject(of kind: MetaOperation.Kind) -> String {
        switch kind {
        case .dropDatabase(let name): name
        case .deleteSeries(let pattern): pattern
        case .deleteData(let pattern, let range): "\(pattern) \(range)"
        }
    }

    /// The failpoint a test crashes at right after the operation's start is recorded.
    static func failpoint(after kind: MetaOperation.Kind) -> String {
        switch kind {
        case .dropDatabase: "drop-database-after-begin"
        case .deleteSeries: "delete-timeseries-after-begin"
        case .deleteData: "delete-data-after-begin"
        }
    }

    /// Resumes the operations in flight over `store` (the node's whole data: its regions in
    /// a one-node cluster, the cluster's through fragments in a larger one). In a cluster the
    /// meta leader resumes them (one resumer at a time).
    static func resume(store: any RegionStore, agent: MetaAgent, logger: Logger) {
        let runningHere = agent.operationsRunningHere.withLock { $0 }
        let operations = agent.machine.current.operations.values.sorted { $0.id < $1.id }.filter { !runningHere.contains(subject(of: $0.kind)) }
        guard !operations.isEmpty, agent.transport == nil || agent.leaderID == agent.nodeID else { return }
        for operation in operations {
            let what: String
            do {
                switch operation.kind {
                case .dropDatabase(let name):
                    what = "DROP DATABASE \(name)"
                    if try store.databases().contains(name) { try store.dropDatabase(name) }
                case .deleteSeries(let text):
                    what = "DELETE TIMESERIES \(text)"
                    let pattern = try PathPattern(parsing: text)
                    if try !store.series(matching: pattern).isEmpty { try store.deleteSeries(matching: pattern) }
                case .deleteData(let text, let range):
                    // Deleting again what a region deleted already changes nothing it holds.
                    what = "DELETE FROM \(text) WHERE time in \(range)"
                    try store.delete(matching: try PathPattern(parsing: text), range: range)
                }
            } catch {
                return logger.warning("an operation in flight could not delete its data; it is tried again",
                                      metadata: ["operation": "\(operation.id)", "error": "\(error)"])
            }
            switch agent.proposeAndWait(.finish(operation.kind)) {
            case .success:
                logger.notice("resumed an operation left in flight to its end", metadata: ["statement": "\(what)", "operation": "\(operation.id)"])
            case .failure(let error):
                return logger.warning("an operation in flight could not be recorded as done; it is tried again",
                                      metadata: ["statement": "\(what)", "error": "\(error)"])
            }
        }
    }
}
