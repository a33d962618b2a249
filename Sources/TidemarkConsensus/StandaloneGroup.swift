import Foundation
import Logging
import Synchronization
import TidemarkIO

/// One standalone group: its log, its state machine, the lock that keeps log order, and
/// the apply side, which applies appended entries in that order and answers their writers.
final class StandaloneGroup: @unchecked Sendable {
    typealias Completion = @Sendable (Result<UInt64, ConsensusError>) -> Void

    /// An appended entry waiting to be applied, and who waits for it.
    fileprivate struct Appended: @unchecked Sendable {
        var index: UInt64
        /// Where it is in the log it went to (its index, in a log of its own).
        var sequence: UInt64
        var proposal: Proposal
        var completion: Completion
    }

    /// Where a group logs its entries.
    enum Log {
        /// Files of its own (the meta group; the one region of a data directory from before
        /// the partition table), numbered by the group's indexes.
        case own(FileWAL)
        /// The node's log shared with its other regions (one fsync for a batch over many).
        case shared(SharedLog)

        var wal: FileWAL {
            switch self {
            case .own(let wal): wal
            case .shared(let shared): shared.wal
            }
        }
    }

    /// An entry appended and not yet handed to the apply side (`append`, `finishAppend`).
    struct PendingWrite: @unchecked Sendable {
        fileprivate var appended: Appended
        var wal: FileWAL { log.wal }
        fileprivate let log: Log
        var sequence: UInt64 { appended.sequence }
    }

    /// Appended entries the apply side may have waiting; past it the writer applies itself.
    static let queuedEntriesMax = 64
    /// Fillers `recover` appends in one call (16 bytes of log each): a long gap takes several.
    static let fillersPerAppendMax = 65_536
    /// Fillers `recover` appends at most (16 M: 256 MiB of log), past any gap a repair leaves.
    static let fillersMax: UInt64 = 1 << 24

    let id: GroupID
    let directory: String
    private let log: Log
    private let syncPolicy: WALSyncPolicy
    private let stateMachine: StateMachine
    private let logger: Logger
    private let applyOn: @Sendable (@escaping @Sendable () -> Void) -> Bool
    private let order = NSLock()
    // protected by order:
    private var appended: UInt64 = 0
    private var closed = false
    /// A group on the shared log waits for the node to replay it (`replayShared`, then
    /// `finishSharedReplay`) before it takes writes; entries through this index are its
    /// snapshot's, not to apply again.
    private var awaitingReplay = false
    private var replaySkipThrough: UInt64 = 0
    private var replayRefused = 0
    // The apply side: entries queued in log order (under `order`), applied under `applyLock`.
    private let queue = Mutex<[Appended]>([])
    private let applyScheduled = Atomic<Bool>(false)
    private let applyLock = NSLock()
    private let applied = Atomic<UInt64>(0)
    /// Reads waiting for the apply side to reach an index, and what to run then.
    private let readers = Mutex<[(index: UInt64, completion: Completion)]>([])

    private var snapshotPath: String { directory + "/snapshot" }

    /// With `shared`, the group logs there; it is replayed with the node's other regions when
    /// the shared log has not been yet (`StandaloneConsensus.replaySharedLog`).
    init(id: GroupID, directory: String, syncPolicy: WALSyncPolicy, stateMachine: StateMachine, logger: Logger, health: StorageHealth?,
         shared: SharedLog? = nil, applyOn: @escaping @Sendable (@escaping @Sendable () -> Void) -> Bool) throws {
        self.id = id
        self.directory = directory
        self.syncPolicy = syncPolicy
        self.stateMachine = stateMachine
        self.logger = logger
        self.applyOn = applyOn
        try FileIO.makeDirectory(directory)
        if let shared {
            log = .shared(shared)
            try recoverShared(shared)
            return
        }
        // A log removed whole while the state machine holds entries starts after them, not at 1
        // behind a run of fillers as long as every entry ever made.
        let held = stateMachine.persistedIndexMax
        guard held < UInt64.max else { throw CorruptDataError("\(id): the state machine says it holds entries through \(held), past any index") }
        if held > 0, !((try? FileIO.list(directory + "/log")) ?? []).contains(where: { $0.hasSuffix(".wal") }) {
            logger.warning("the group's log is missing; it starts after the entries the state machine holds",
                           metadata: ["group": "\(id)", "held_through": "\(held)"])
            try FileWAL.makeEmpty(directory: directory + "/log", firstSequence: held + 1)
        }
        log = .own(try FileWAL(directory: directory + "/log", policy: syncPolicy, health: health))
        try recover()
    }

    /// Restores the last snapshot (`recover` for a group on the shared log); its entries come
    /// from the shared log's replay, or, when that ran already, there are none (a new group).
    private func recoverShared(_ shared: SharedLog) throws {
        let snapshotIndex = try restoreSnapshot()
        appended = max(snapshotIndex, stateMachine.persistedIndexMax)
        replaySkipThrough = snapshotIndex
        if shared.isReplayed {
            try finishSharedReplay()
        } else {
            awaitingReplay = true
        }
    }

    /// An entry of this group from the shared log's replay.
    func replayShared(index: UInt64, data: [UInt8]) {
        precondition(awaitingReplay, "only a group waiting for the shared log's replay takes its entries")
        appended = max(appended, index)
        guard index > replaySkipThrough, !data.isEmpty else { return }
        do { try stateMachine.apply(CommittedEntry(index: index, term: 1, data: data)) } catch { replayRefused += 1 }
    }

    /// The shared log's replay is over: the group takes writes after its last entry. What it
    /// replayed is released at once when none of it stayed in memory (all in its own files).
    func finishSharedReplay() throws {
        guard case .shared(let shared) = log else { preconditionFailure("only a group on the shared log") }
        awaitingReplay = false
        applied.store(appended, ordering: .releasing)
        if replayRefused > 0 { logger.info("replay skipped refused entries", metadata: ["group": "\(id)", "entries": "\(replayRefused)"]) }
        if !stateMachine.holdsUnflushedEntries { try shared.release(id, through: appended) }
        stateMachine.attach(logRetention: SharedLogRetention(shared, group: id))
    }

    /// Restores the snapshot file, if any; returns its index (0: none).
    private func restoreSnapshot() throws -> UInt64 {
        guard let bytes = try FileIO.readFile(snapshotPath) else { return 0 }
        let snapshot = try SnapshotFile.decode(bytes, path: snapshotPath)
        try stateMachine.restore(snapshot)
        return snapshot.index
    }

    /// Restores the last snapshot, then replays the log after it. An entry with no data is a
    /// filler (as Raft's leader no-op): it keeps an index taken and never reaches the state machine.
    private func recover() throws {
        guard case .own(let log) = log else { preconditionFailure("a group with a log of its own") }
        let snapshotIndex = try restoreSnapshot()
        var last = snapshotIndex
        var refused = 0
        let report = try log.replay { index, data in
            guard index > snapshotIndex else { return }
            last = index
            guard !data.isEmpty else { return }
            do { try stateMachine.apply(CommittedEntry(index: index, term: 1, data: data)) } catch { refused += 1 }
        }
        let held = max(snapshotIndex, stateMachine.persistedIndexMax)
        if held > log.lastSequence { try fillLog(through: held) }
        // Entries released to the state machine's own files leave no record, but keep their indexes.
        last = max(last, log.lastSequence)
        appended = last
        applied.store(last, ordering: .releasing)
        if report.bytesCut > 0 {
            logger.warning("cut a torn log tail", metadata: ["group": "\(id)", "file": "\(report.cutPath ?? "")", "offset": "\(report.cutOffset)",
                                                            "bytes": "\(report.bytesCut)", "entries": "\(report.records)"])
        }
        if refused > 0 {
            // The same entries were refused when first written; their writers were told.
            logger.info("replay skipped refused entries", metadata: ["group": "\(id)", "entries": "\(refused)"])
        }
        stateMachine.attach(logRetention: log)
    }

    /// The log ends before entries the snapshot or the state machine's own files hold (a
    /// `--repair` cut records already flushed): fillers take the indexes through `index`,
    /// synced before any write, so a new entry never gets an index the state machine takes
    /// for one applied before (it would drop the new entry's points). Fillers keep the log
    /// contiguous, so replay and `--repair` need no notion of a gap.
    private func fillLog(through index: UInt64) throws {
        guard case .own(let log) = log else { preconditionFailure("a group with a log of its own") }
        let from = log.lastSequence + 1
        // A repair cuts at most what the log held; a larger gap is a number read off a damaged file.
        guard index - from < Self.fillersMax else {
            throw CorruptDataError("\(id): the log ends at \(from - 1) but the state machine says it holds entries through \(index), "
                                   + "more than \(Self.fillersMax) past it: a damaged file? Restore the data directory from a backup")
        }
        logger.warning("the log ends before entries the state machine holds (a repaired log?); numbering goes on after them",
                       metadata: ["group": "\(id)", "log_last": "\(from - 1)", "held_through": "\(index)"])
        var next = from
        while next <= index {
            let count = Int(min(UInt64(Self.fillersPerAppendMax), index - next + 1))
            next = try log.append(Array(repeating: [], count: count)) + 1
        }
        precondition(next == index + 1, "fillers end where the state machine's entries do")
        try log.waitDurable(index)
    }

    var appliedIndex: UInt64 { applied.load(ordering: .acquiring) }

    /// Runs `completion` once everything appended by now is applied (at once when it is).
    func whenApplied(_ completion: @escaping Completion) {
        let target = order.withLock { appended }
        // Checked under `readers`, which the apply side takes after each run: none is missed.
        let now: UInt64? = readers.withLock { readers in
            let applied = applied.load(ordering: .acquiring)
            if applied >= target { return applied }
            readers.append((target, completion))
            return nil
        }
        if let now { completion(.success(now)) }
    }

    /// Runs the reads the apply side has reached.
    private func answerReaders() {
        let done: [Completion] = readers.withLock { readers in
            let applied = applied.load(ordering: .acquiring)
            let reached = readers.filter { $0.index <= applied }.map(\.completion)
            if !reached.isEmpty { readers.removeAll { $0.index <= applied } }
            return reached
        }
        let index = applied.load(ordering: .acquiring)
        for completion in done { completion(.success(index)) }
    }

    /// The apply side's answer to an entry acknowledged when logged: a failure is only logged
    /// (it cannot happen for an entry the state machine cannot refuse, but for a disk error).
    private static func unanswered(logger: Logger, group: GroupID) -> Completion {
        { result in
            if case .failure(let error) = result {
                logger.error("an entry acknowledged once logged failed to apply", metadata: ["group": "\(group)", "error": "\(error)"])
            }
        }
    }

    func write(_ proposal: Proposal, completion: @escaping Completion) throws {
        let pending = try append(proposal, completion: completion)
        var synced: Error?
        if syncPolicy == .batch {
            // The writer waits for the fsync, sharing it with whoever appended meanwhile (group
            // commit); requests that arrive while it waits make the next batch, so entries stay
            // few and large. A failed sync is reported by the apply side, which checks again.
            do { try pending.wal.waitDurable(pending.sequence) } catch { synced = error }
        }
        finishAppend(pending, syncError: synced)
    }

    /// Logs the entry and queues it for the apply side; `finishAppend` goes on once it is as
    /// durable as the policy asks (under `batch`, the caller waits: for several groups' entries
    /// on the shared log, once for all of them).
    func append(_ proposal: Proposal, completion: @escaping Completion) throws -> PendingWrite {
        precondition(!proposal.data.isEmpty, "an entry with no data is a filler, never applied")
        // An entry that cannot be refused is answered below, once durable: its apply answers no one.
        let applyAnswers: Completion = proposal.refusalImpossible ? Self.unanswered(logger: logger, group: id) : completion
        do {
            return try order.withLock {
                guard !closed else { throw ConsensusError.stopped }
                guard !awaitingReplay else { throw ConsensusError.unsupported("\(id) waits for the node's shared log to be replayed") }
                let index = appended + 1
                let sequence: UInt64
                switch log {
                case .own(let wal):
                    sequence = try wal.append([proposal.data])
                    precondition(sequence == index, "one log, appended in order")
                case .shared(let shared):
                    sequence = try shared.append(id, index: index, data: proposal.data)
                }
                appended = index
                let entry = Appended(index: index, sequence: sequence, proposal: proposal, completion: applyAnswers)
                // Queued under `order`: the apply side sees entries in log order.
                queue.withLock { $0.append(entry) }
                return PendingWrite(appended: Appended(index: index, sequence: sequence, proposal: proposal, completion: completion), log: log)
            }
        } catch let error as ConsensusError {
            throw error
        } catch {
            throw ConsensusError.io("\(id): log append failed: \(error)")
        }
    }

    /// After `append`, once the caller waited for the sync under `batch` (`syncError`: it failed).
    func finishAppend(_ pending: PendingWrite, syncError: Error?) {
        if pending.appended.proposal.refusalImpossible {
            // Durable as `wal_sync` says (`always`: the append synced; `intervalMs`: in the
            // OS's hands, on disk within the interval): nothing the apply does can change the answer.
            pending.appended.completion(syncError.map { .failure(.io("\(id): log sync failed: \($0)")) } ?? .success(pending.appended.index))
        }
        scheduleApply()
    }

    /// Makes sure the apply side runs; at most one run is pending at a time. Under `batch`
    /// and `always` the writer has just waited for the disk and applies itself: handing over
    /// would add a thread hop per entry for no overlap (measured: bench/consensus.sh).
    /// Under `intervalMs` nothing waits, and the apply stage works while the writer goes on.
    private func scheduleApply() {
        guard case .intervalMs = syncPolicy else { return drainApply() }
        // An apply side that falls behind makes the writer apply: the queue stays bounded.
        guard queue.withLock({ $0.count }) <= Self.queuedEntriesMax else { return drainApply() }
        guard !applyScheduled.exchange(true, ordering: .acquiringAndReleasing) else { return }
        if !applyOn({ [self] in drainApply() }) {
            applyScheduled.store(false, ordering: .releasing)
            drainApply()
        }
    }

    /// Applies what is queued, in order, then answers the writers: a refused entry at once,
    /// the others once durable under `wal_sync` (under `batch` the writer already waited).
    private func drainApply() {
        while true {
            applyScheduled.store(false, ordering: .releasing)
            // An entry queued after the take finds `applyScheduled` false and schedules a run itself.
            let answers = applyLock.withLock { applyQueuedLocked() }
            guard !answers.isEmpty else { return }
            answerReaders()
            for answer in answers { answer() }
        }
    }

    /// Applies every queued entry; the caller holds `applyLock`. Returns the answers to give.
    private func applyQueuedLocked() -> [() -> Void] {
        let taken = queue.withLock { queue in defer { queue = [] }; return queue }
        guard let last = taken.last else { return [] }
        var outcomes: [(Completion, ConsensusError?)] = []
        outcomes.reserveCapacity(taken.count)
        for entry in taken {
            precondition(entry.index == applied.load(ordering: .relaxed) + 1, "applied in log order, each once")
            var refusal: ConsensusError?
            // An entry with no data is a filler here as on replay (see `recover`).
            if !entry.proposal.data.isEmpty {
                do {
                    try stateMachine.apply(CommittedEntry(index: entry.index, term: 1, data: entry.proposal.data, local: entry.proposal.local))
                } catch {
                    refusal = .refused("\(error)")
                }
            }
            applied.store(entry.index, ordering: .releasing)
            outcomes.append((entry.completion, refusal))
        }
        var durability: ConsensusError?
        if syncPolicy == .batch {
            // Durable already unless the writer's wait failed, or a close drains it.
            do { try log.wal.waitDurable(last.sequence) } catch { durability = .io("\(id): log sync failed: \(error)") }
        }
        // `always`: the append synced already. `intervalMs`: VictoriaMetrics' durability, in
        // the OS's hands now (a process crash loses nothing), on disk within the interval.
        return zip(taken, outcomes).map { entry, outcome in
            let (completion, refusal) = outcome
            let result: Result<UInt64, ConsensusError> = (refusal ?? durability).map { .failure($0) } ?? .success(entry.index)
            return { completion(result) }
        }
    }

    /// Snapshots the state machine, keeps the snapshot durably, then lets the log go up to it.
    func snapshot() throws -> UInt64 {
        // No appends meanwhile, and everything appended is applied first: image and index agree.
        var answers: [() -> Void] = []
        defer { for answer in answers { answer() } }  // also when the snapshot fails
        let snapshot = try order.withLock {
            try applyLock.withLock {
                answers = applyQueuedLocked()
                return try stateMachine.snapshot()
            }
        }
        answerReaders()
        try FileIO.writeFileAtomically(SnapshotFile.encode(snapshot), to: snapshotPath, directory: directory)
        switch log {
        case .own(let wal):
            try wal.rotate()
            try wal.truncate(through: snapshot.index)
        case .shared(let shared):
            try shared.release(id, through: snapshot.index)
        }
        return snapshot.index
    }

    /// Applies and answers what was appended, then syncs and closes the log.
    func close() {
        order.withLock { closed = true }
        let answers = applyLock.withLock { applyQueuedLocked() }
        answerReaders()
        for answer in answers { answer() }
        if case .own(let wal) = log { wal.close() }  // the shared log closes with the consensus
    }

    /// Whether the group logs in the node's shared log.
    var isShared: Bool {
        if case .shared = log { return true }
        return false
    }
}

/// `u64 index | u64 term | u32 length | data | u32 CRC32C(all before)`.
enum SnapshotFile {
    static func encode(_ snapshot: StateSnapshot) -> [UInt8] {
        var writer = ByteWriter(capacity: snapshot.data.count + 24)
        writer.write(littleEndian: snapshot.index)
        writer.write(littleEndian: snapshot.term)
        writer.write(littleEndian: UInt32(snapshot.data.count))
        writer.write(bytes: snapshot.data)
        writer.write(littleEndian: CRC32C.checksum(writer.bytes))
        return writer.bytes
    }

    static func decode(_ bytes: [UInt8], path: String) throws -> StateSnapshot {
        guard bytes.count >= 24 else { throw CorruptDataError("\(path): \(bytes.count) bytes is too short for a snapshot") }
        let stored = bytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: bytes.count - 4, as: UInt32.self)) }
        guard CRC32C.checksum(Array(bytes.dropLast(4))) == stored else { throw CorruptDataError("\(path): snapshot fails its CRC") }
        let (index, term, length) = bytes.withUnsafeBytes {
            (UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
             UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
             Int(UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 16, as: UInt32.self))))
        }
        guard length == bytes.count - 24 else { throw CorruptDataError("\(path): snapshot length \(length) does not match the file") }
        return StateSnapshot(index: index, term: term, data: Array(bytes[20..<(20 + length)]))
    }
}
