import Synchronization
import TidemarkConsensus
import TidemarkCore
import TidemarkIO

/// A meta command on its way through the group, as the proposing node knows it: the apply
/// on that node puts the outcome (or the state's refusal) here.
public final class MetaProposal: Sendable {
    private let result = Mutex<Result<MetaState.Outcome, MetaError>?>(nil)

    public init() {}

    func finish(_ value: Result<MetaState.Outcome, MetaError>) { result.withLock { $0 = value } }

    /// What the apply decided on this node; nil if it has not run here (yet).
    public var outcome: Result<MetaState.Outcome, MetaError>? { result.withLock { $0 } }
}

/// What the node keeps beside the meta state, changed by the meta log's `.user` entries (the
/// user store): applied at an entry's index once, persisted by itself, and carried whole in
/// the images the meta group sends.
public protocol MetaExtension: Sendable {
    /// Applies the record of a `.user` entry at `index` (nothing when it holds that index already).
    func apply(index: UInt64, record: [UInt8]) throws
    /// Everything it holds, for an image.
    func exportImage() -> [UInt8]
    /// Replaces everything with an image's, covering the meta log through `index`.
    func install(image: [UInt8], index: UInt64) throws
}

/// The meta group's state machine (DESIGN.md section 3): committed entries are meta
/// commands applied to the `MetaState`. It keeps its own checkpoint, `meta.snapshot` in its
/// directory, written atomically every `checkpointEntries` entries and then released from
/// the group's log, so a restart loads the checkpoint and replays only the log after it.
/// A lagging or new member is sent the whole state as an image.
public final class MetaStateMachine: StateMachine, Sendable {
    public let settings: ClusterSettings
    private let directory: String
    private let checkpointEntries: UInt64
    /// The state and the group's last applied log index (commands and the entries Raft makes
    /// itself), changed together: an image or checkpoint always names the index its state is at.
    private struct Held {
        var state: MetaState
        var lastApplied: UInt64
    }
    private let held: Mutex<Held>
    /// The log index the checkpoint file holds everything through.
    private let checkpointed = Atomic<UInt64>(0)
    private let retention = Mutex<LogRetention?>(nil)
    /// Work waiting for an index to be applied (`whenApplied`).
    private let waiters = Mutex<[(index: UInt64, body: @Sendable () -> Void)]>([])
    /// Broadcast whenever `completedIndex` moves (`waitApplied`).
    private let appliedSignal = ConditionLock()
    /// The last index wholly applied, the user store's part included (the state's own
    /// `lastApplied` moves before that part runs).
    private let completedIndex = Atomic<UInt64>(0)
    /// The user store, once the node attached it.
    private let extensionBox = Mutex<(any MetaExtension)?>(nil)

    private var checkpointPath: String { directory + "/meta.snapshot" }

    /// Opens the state in `directory` from its checkpoint, if any. A checkpoint made with other
    /// fixed settings is refused: the cluster was made with them (they never change).
    /// `reservedNodeIDs`: the meta group's members, whose IDs are their places in `meta_peers`.
    public init(settings: ClusterSettings, directory: String, reservedNodeIDs: Int = 0, checkpointEntries: UInt64 = 1000) throws {
        precondition(checkpointEntries > 0, "a checkpoint now and then")
        self.settings = settings
        self.directory = directory
        self.checkpointEntries = checkpointEntries
        try FileIO.makeDirectory(directory)
        var initial = Held(state: MetaState(settings: settings, reservedNodeIDs: reservedNodeIDs), lastApplied: 0)
        if let bytes = try FileIO.readFile(directory + "/meta.snapshot") {
            let (index, loaded) = try Self.decodeCheckpoint(bytes, path: directory + "/meta.snapshot")
            try Self.checkSettings(loaded.settings, against: settings, path: directory + "/meta.snapshot")
            initial = Held(state: loaded, lastApplied: index)
        }
        held = Mutex(initial)
        checkpointed.store(initial.lastApplied, ordering: .relaxed)
        completedIndex.store(initial.lastApplied, ordering: .relaxed)
        // A new member records the fixed settings at once: every later start checks them.
        if !FileIO.exists(checkpointPath) {
            try FileIO.writeFileAtomically(checkpointBytes().1, to: checkpointPath, directory: directory)
        }
    }

    /// Attaches the user store: `.user` entries applied from now on go to it, and images
    /// carry its export. Before the group replays its log.
    public func attach(_ extension: any MetaExtension) { extensionBox.withLock { $0 = `extension` } }

    /// Hears the state after each change of its databases, groups or nodes (`observe`).
    private let observer = Mutex<(@Sendable (MetaState) -> Void)?>(nil)

    /// Calls `body` with the state after every applied change of databases, region groups or
    /// nodes, and after an installed image, on the applying thread and before anyone waiting
    /// for that entry wakes: a node opens the regions it was given before the change answers.
    /// Set once the group replayed its log (the caller then takes `current` itself).
    public func observe(_ body: @escaping @Sendable (MetaState) -> Void) { observer.withLock { $0 = body } }

    /// The state now (a copy).
    public var current: MetaState { held.withLock { $0.state } }

    /// The group's last applied log index.
    public var appliedIndex: UInt64 { held.withLock { $0.lastApplied } }

    public func apply(_ entry: CommittedEntry) throws {
        let proposal = entry.local as? MetaProposal
        let command: Result<MetaCommand, CorruptDataError> = Result { () throws(CorruptDataError) in try MetaCommand(decoding: entry.data) }
        let result: Result<MetaState.Outcome, MetaError>? = held.withLock { held in
            // Held in the checkpoint already (a replay after a restart).
            guard entry.index > held.lastApplied else { return nil }
            held.lastApplied = entry.index
            switch command {
            case .success(let command):
                return Result { () throws(MetaError) in try held.state.apply(command, index: entry.index) }
            case .failure(let error):
                return .failure(MetaError(code: 305, "meta entry \(entry.index) does not decode: \(error)"))
            }
        }
        // Waiters wake once the entry is wholly applied, the user store's part included.
        defer { markCompleted() }
        guard let result else { return }
        if case .success(let command) = command, case .success = result, command.changesPlacement,
           let observer = observer.withLock({ $0 }) {
            observer(current)
        }
        if case .success(.user(let record)) = command, case .success = result, let userStore = extensionBox.withLock({ $0 }) {
            do {
                try userStore.apply(index: entry.index, record: record)
            } catch {
                proposal?.finish(.failure(MetaError(code: 305, "user entry \(entry.index): \(error)")))
                throw error
            }
        }
        proposal?.finish(result)
        checkpointIfDue()
        if case .failure(let error) = result { throw error }
    }

    /// The group compacts its log here: the checkpoint file holds the state through the index.
    public func snapshot() throws -> StateSnapshot {
        try checkpoint()
        return StateSnapshot(index: checkpointed.load(ordering: .acquiring), term: 1, data: [])
    }

    /// The whole state, for a member behind the compacted log.
    public func openImage(for snapshot: StateSnapshot, bytesMax: Int) throws -> any ImageReader {
        let (index, bytes) = image()
        guard index >= snapshot.index else {
            throw ConsensusError.refused("meta image for index \(snapshot.index) asked before it was applied (\(index))")
        }
        guard bytes.count <= bytesMax else { throw ConsensusError.refused("the meta image takes \(bytes.count) bytes, more than \(bytesMax)") }
        return BytesImageReader(bytes)
    }

    /// Installed images are written to the checkpoint file before `restore` returns.
    public var keepsInstalledImages: Bool { true }

    /// A snapshot with an image (from the leader) replaces the state and becomes the
    /// checkpoint; one without is this member's own compaction, which its checkpoint covers.
    public func restore(_ snapshot: StateSnapshot) throws {
        let image: [UInt8]? = if let file = snapshot.file { try FileIO.readFile(file) } else if !snapshot.data.isEmpty { snapshot.data } else { nil }
        guard let image else {
            let held = checkpointed.load(ordering: .acquiring)
            guard held >= snapshot.index else {
                throw CorruptDataError("\(checkpointPath) holds the meta state through \(held), but the group's log was compacted through \(snapshot.index)")
            }
            return
        }
        let (checkpoint, extras) = try Self.splitImage(image)
        let (index, loaded) = try Self.decodeCheckpoint(checkpoint, path: "the meta image")
        try Self.checkSettings(loaded.settings, against: settings, path: "the meta image from the leader")
        guard index >= snapshot.index else { throw CorruptDataError("the meta image covers \(index), short of \(snapshot.index)") }
        guard index > appliedIndex else { return }
        // The users first: a crash after them and before the checkpoint installs the image again.
        try extensionBox.withLock({ $0 })?.install(image: extras, index: index)
        try FileIO.writeFileAtomically(checkpoint, to: checkpointPath, directory: directory)
        held.withLock { $0 = Held(state: loaded, lastApplied: index) }
        checkpointed.store(index, ordering: .releasing)
        observer.withLock({ $0 })?(loaded)
        markCompleted()
    }

    private func markCompleted() {
        appliedSignal.withLock {
            completedIndex.store(appliedIndex, ordering: .releasing)
            appliedSignal.broadcast()
        }
        let reached = completedIndex.load(ordering: .acquiring)
        let due = waiters.withLock { waiters -> [@Sendable () -> Void] in
            let due = waiters.filter { $0.index <= reached }.map(\.body)
            waiters.removeAll { $0.index <= reached }
            return due
        }
        for body in due { body() }
    }

    /// Runs `body` once this copy has applied `index`: now, or on the thread that applies it
    /// (it must not block). Past `waitersMax` waiting, it runs now: its caller finds the copy behind.
    public func whenApplied(through index: UInt64, _ body: @escaping @Sendable () -> Void) {
        let now = waiters.withLock { waiters -> Bool in
            guard completedIndex.load(ordering: .acquiring) < index, waiters.count < Self.waitersMax else { return true }
            waiters.append((index, body))
            return false
        }
        if now { body() }
    }

    static let waitersMax = 10_000

    /// Waits until this copy of the state has applied `index` (a change made through another
    /// member, which answered once it applied there), at most `timeoutMs`; whether it has.
    public func waitApplied(through index: UInt64, timeoutMs: UInt64) -> Bool {
        let deadlineNs = monotonicNowNs() + timeoutMs * 1_000_000
        return appliedSignal.withLock {
            while completedIndex.load(ordering: .acquiring) < index {
                guard appliedSignal.wait(0, untilNs: deadlineNs) || completedIndex.load(ordering: .acquiring) >= index else { return false }
            }
            return true
        }
    }

    /// The state as an image: the index it is at, and the bytes `install(image:)` takes (the
    /// checkpoint, length-prefixed, then the user store's export).
    public func image() -> (index: UInt64, bytes: [UInt8]) {
        // The users' export is taken after the state: it holds at least what the state names.
        let (index, checkpoint) = checkpointBytes()
        var writer = ByteWriter()
        writer.write(lengthPrefixed: checkpoint)
        writer.write(bytes: extensionBox.withLock({ $0 })?.exportImage() ?? [])
        return (index, writer.bytes)
    }

    /// Replaces the state with `image` (from a member) when it is newer; a copy kept by a
    /// node outside the group, checkpointed like a member's.
    public func install(image: [UInt8]) throws {
        let (index, _) = try Self.decodeCheckpoint(try Self.splitImage(image).checkpoint, path: "the meta image")
        try restore(StateSnapshot(index: index, term: 1, data: image))
    }

    private static func splitImage(_ image: [UInt8]) throws -> (checkpoint: [UInt8], extras: [UInt8]) {
        var reader = ByteReader(image)
        do {
            let checkpoint = Array(try reader.readLengthPrefixed(max: image.count))
            return (checkpoint, Array(image[reader.offset...]))
        } catch {
            throw CorruptDataError("the meta image: \(error)")
        }
    }

    public func attach(logRetention: LogRetention) { retention.withLock { $0 = logRetention } }

    public var persistedIndexMax: UInt64 { checkpointed.load(ordering: .acquiring) }

    /// Writes the checkpoint (the state through the last applied index), then lets the log
    /// drop what it holds.
    public func checkpoint() throws {
        let (index, bytes) = checkpointBytes()
        guard index > checkpointed.load(ordering: .acquiring) else { return }
        try FileIO.writeFileAtomically(bytes, to: checkpointPath, directory: directory)
        checkpointed.store(index, ordering: .releasing)
        try retention.withLock { $0 }?.release(through: index)
    }

    private func checkpointIfDue() {
        guard appliedIndex >= checkpointed.load(ordering: .acquiring) + checkpointEntries else { return }
        // A failed checkpoint keeps the log whole: nothing is lost, the next one tries again.
        try? checkpoint()
    }

    /// The last applied index, and a checkpoint's bytes: that index, then the state's snapshot.
    private func checkpointBytes() -> (UInt64, [UInt8]) {
        let now = held.withLock { $0 }
        var writer = ByteWriter()
        writer.write(littleEndian: now.lastApplied)
        writer.write(bytes: MetaSnapshot.encode(now.state))
        return (now.lastApplied, writer.bytes)
    }

    private static func decodeCheckpoint(_ bytes: [UInt8], path: String) throws -> (UInt64, MetaState) {
        guard bytes.count > 8 else { throw CorruptDataError("\(path): \(bytes.count) bytes is too short for a meta checkpoint") }
        var reader = ByteReader(bytes)
        let index = try reader.read(littleEndian: UInt64.self)
        do {
            return (index, try MetaSnapshot.decode(Array(bytes[8...])))
        } catch {
            throw CorruptDataError("\(path): \(error)")
        }
    }

    private static func checkSettings(_ found: ClusterSettings, against mine: ClusterSettings, path: String) throws {
        guard let difference = found.firstDifference(from: mine) else { return }
        throw FixedSettingMismatch(key: difference.key, cluster: difference.local, config: difference.peer, source: path)
    }
}
