import TidemarkConsensus
import TidemarkCore
import TidemarkNet
import TidemarkStages

/// An HTTP request on its way through the decode stage, with where its answer goes.
public struct HTTPExchange: Sendable {
    public let request: HTTPRequest
    public let responder: HTTPResponder
}

/// Work for a stage whose typed events arrive with later parts of the node: the
/// event carries its own continuation, as DESIGN.md section 4 asks.
public struct StageTask: Sendable {
    public let run: @Sendable () -> Void

    public init(_ run: @escaping @Sendable () -> Void) { self.run = run }
}

/// Work for the append stage: client writes to propose, and consensus rounds (messages from
/// peers, ticks) that persist and replicate.
public enum AppendWork: Sendable {
    case write(WriteJob)
    case consensus(StageTask)
    /// Raft messages from peers: all of one batch go to consensus in one round (one fsync).
    case raftMessages([GroupMessage])

    /// Handles one append-stage batch in arrival order. Consecutive peer messages go to
    /// consensus together (one round, one fsync), but never after a task that came later:
    /// a peer's last heartbeat (a quiesce) must be stepped before the news that the peer is
    /// gone, or the replica sleeps under a dead leader. Client writes of the whole batch
    /// are proposed together at the end (group commit).
    static func handle(_ batch: some Sequence<AppendWork>, receive: ([GroupMessage]) -> Void, propose: ([WriteJob]) -> Void) {
        var jobs: [WriteJob] = []
        var messages: [GroupMessage] = []
        for work in batch {
            switch work {
            case .write(let job): jobs.append(job)
            case .consensus(let task):
                if !messages.isEmpty { receive(messages) }
                messages = []
                task.run()
            case .raftMessages(let more): messages += more
            }
        }
        if !messages.isEmpty { receive(messages) }
        if !jobs.isEmpty { propose(jobs) }
    }
}

/// The seven stages of a node, built from the configured settings.
public final class NodeStages: Sendable {
    public let decode: Stage<HTTPExchange>
    /// Resolves each write's partitions, then hands it on to append.
    public let route: Stage<WriteJob>
    public let append: Stage<AppendWork>
    /// The other stages, keyed by name; each runs the tasks handed to it.
    public let taskStages: [StageName: Stage<StageTask>]

    /// Hands a write on to the append stage: waiting for room when `mayBlock` (the route
    /// stage's own thread), else offered (a continuation on another stage's thread or the
    /// loop, which must not wait): refused, the writer hears why.
    public typealias Forward = @Sendable (_ job: WriteJob, _ mayBlock: Bool) -> Void

    /// `routeWrite` resolves a write's partitions (`PartitionRouter`) and forwards it, now
    /// or once the meta group allocated them; by default it forwards at once.
    public init(settings: [StageName: StageSettings], decodeHandler: @escaping Stage<HTTPExchange>.Handler,
                appendHandler: @escaping Stage<AppendWork>.Handler,
                routeWrite: @escaping @Sendable (WriteJob, _ forward: @escaping Forward) -> Void = { job, forward in forward(job, true) }) {
        decode = Stage(name: StageName.decode.rawValue, settings: settings[.decode]!, handler: decodeHandler)
        let append = Stage(name: StageName.append.rawValue, settings: settings[.append]!, handler: appendHandler)
        self.append = append
        let forward: Forward = { job, mayBlock in
            // A full append queue under `block` holds this thread, and so, in turn, the edge.
            if case .rejected(let reason) = mayBlock ? append.submit(.write(job)) : append.offer(.write(job)) {
                job.finish(.refusedBy("append", reason))
            }
        }
        route = Stage(name: StageName.route.rawValue, settings: settings[.route]!) { batch in
            for job in batch { routeWrite(job, forward) }
        }
        var stages: [StageName: Stage<StageTask>] = [:]
        for name in StageName.allCases where ![.decode, .route, .append].contains(name) {
            stages[name] = Stage(name: name.rawValue, settings: settings[name]!) { batch in
                for task in batch { task.run() }
            }
        }
        taskStages = stages
    }

    /// Every stage in pipeline order.
    public var all: [any StageMonitor] {
        StageName.allCases.map { name -> any StageMonitor in
            switch name {
            case .decode: decode
            case .route: route
            case .append: append
            default: taskStages[name]!
            }
        }
    }

    /// Drains every stage in pipeline order, so work handed downstream is still run.
    /// Returns false if the deadline passed first.
    public func drain(deadlineNs: UInt64) -> Bool {
        for stage in all where !stage.drain(deadlineNs: deadlineNs) { return false }
        return true
    }
}
