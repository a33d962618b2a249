import TidemarkIO
import Foundation
import Logging
import Synchronization
import Testing
@testable import TidemarkConsensus
import TidemarkStorage
import TidemarkTestSupport

/// Messages between in-process nodes, delivered when the test pumps (never re-entrantly).
private final class LoopbackNetwork: Sendable {
    /// What was sent and, for a sender that waits to hear, whom to tell once it is delivered.
    let queue = Mutex<[(to: UInt64, messages: [GroupMessage], written: (@Sendable (Bool) -> Void)?)]>([])
    let nodes = Mutex<[UInt64: RaftConsensus]>([:])
    let down = Mutex<Set<UInt64>>([])
    /// Nodes whose snapshot messages are lost on the way (everything else reaches them).
    let losesSnapshots = Mutex<Set<UInt64>>([])
    /// Messages of senders that wait to hear ("watched"): the one with this place in their
    /// order (from 0) is dropped, its sender told so.
    let dropsWatched = Mutex<Int?>(nil)
    /// While set, watched messages stay on their way (a slow link).
    let holdsWatched = Mutex(false)
    /// The most watched messages one pump found waiting, and how many came in all.
    let watchedWaitingMax = Mutex(0)
    let watchedSeen = Mutex(0)

    func pump() -> Bool {
        let holds = holdsWatched.withLock { $0 }
        let batch = queue.withLock { queue in
            defer { queue = holds ? queue.filter { $0.written != nil } : [] }
            return holds ? queue.filter { $0.written == nil } : queue
        }
        watchedWaitingMax.withLock { $0 = max($0, batch.filter { $0.written != nil }.count) }
        for (to, messages, written) in batch {
            let dropped = written != nil && watchedSeen.withLock { seen in
                defer { seen += 1 }
                return seen == dropsWatched.withLock { $0 }
            }
            guard !down.withLock({ $0.contains(to) }) && !dropped else {
                written?(false)
                continue
            }
            let lost = losesSnapshots.withLock { $0.contains(to) }
            nodes.withLock { $0[to] }?.receive(lost ? messages.filter { $0.message.kind != .snapshot } : messages)
            written?(true)
        }
        return !batch.isEmpty
    }
}

private final class Endpoint: RaftTransport {
    let network: LoopbackNetwork
    let from: UInt64
    init(_ network: LoopbackNetwork, from: UInt64) { self.network = network; self.from = from }
    func send(to node: UInt64, _ messages: [GroupMessage]) {
        guard !network.down.withLock({ $0.contains(from) }) else { return }
        network.queue.withLock { $0.append((node, messages, nil)) }
    }

    /// Written means delivered here: a sender waiting to hear waits for the test's pump.
    func send(to node: UInt64, _ messages: [GroupMessage], whenWritten: @escaping @Sendable (Bool) -> Void) {
        guard !network.down.withLock({ $0.contains(from) }) else { return whenWritten(false) }
        network.queue.withLock { $0.append((node, messages, whenWritten)) }
    }
}

/// A register per key; entries are `key=value`. With `imagesOnSend`, its snapshots carry
/// no data and the image is made when one is sent (as a region's are).
private final class Registers: StateMachine, Sendable {
    let values = Mutex<[String: String]>([:])
    let applied = Mutex<UInt64>(0)
    let restores = Mutex(0)
    /// Restores whose image waited in a file.
    let restoresFromFiles = Mutex(0)
    let imagesOnSend: Bool
    let keepsInstalledImages: Bool
    let retention = Mutex<LogRetention?>(nil)

    init(imagesOnSend: Bool = false, keepsInstalledImages: Bool = false) {
        self.imagesOnSend = imagesOnSend
        self.keepsInstalledImages = keepsInstalledImages
    }

    private var text: [UInt8] {
        Array(values.withLock { $0.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "\n") }.utf8)
    }

    func apply(_ entry: CommittedEntry) throws {
        let parts = String(decoding: entry.data, as: UTF8.self).split(separator: "=", maxSplits: 1)
        guard parts.count == 2 else { throw CorruptDataError("not key=value") }
        values.withLock { $0[String(parts[0])] = String(parts[1]) }
        applied.withLock { $0 = entry.index }
    }

    func snapshot() throws -> StateSnapshot {
        StateSnapshot(index: applied.withLock { $0 }, term: 0, data: imagesOnSend ? [] : text)
    }

    func openImage(for snapshot: StateSnapshot, bytesMax: Int) throws -> any ImageReader {
        let image = imagesOnSend ? text : snapshot.data
        guard image.count <= bytesMax else { throw ConsensusError.refused("image of \(image.count) bytes") }
        return BytesImageReader(image)
    }

    func restore(_ snapshot: StateSnapshot) throws {
        // An image that came in pieces waits in a file (only for a state machine that keeps images).
        let data = try snapshot.file.map { path in
            #expect(keepsInstalledImages, "an image in a file for a state machine that holds it in memory")
            restoresFromFiles.withLock { $0 += 1 }
            return try FileIO.readFile(path) ?? []
        } ?? snapshot.data
        guard !data.isEmpty || !imagesOnSend else { return }  // its own compaction: nothing to load
        var restored: [String: String] = [:]
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1)
            restored[String(parts[0])] = String(parts[1])
        }
        values.withLock { $0 = restored }
        applied.withLock { $0 = snapshot.index }
        restores.withLock { $0 += 1 }
    }

    func attach(logRetention: LogRetention) { retention.withLock { $0 = logRetention } }
}

private let group = GroupID(kind: .data, number: 1)
private let peers = [Peer(id: 1, address: "a"), Peer(id: 2, address: "b"), Peer(id: 3, address: "c")]

private final class Cluster {
    let network = LoopbackNetwork()
    let directory: String
    let settings: RaftConsensus.Settings
    var machines: [UInt64: Registers] = [:]
    var disks: [UInt64: RaftDisk] = [:]

    let imagesOnSend: Bool
    let keepsInstalledImages: Bool
    /// With `deferApply`, each node's apply-side work waits here until `drainApply`.
    let deferApply: Bool
    let applyWork = ApplyWork()
    /// Where a node keeps its log when not under `directory` (a tmpfs that fills up).
    let directories: [UInt64: String]
    /// What hears of each node's log writes (the node's disk-full state).
    var healths: [UInt64: StorageHealth] = [:]

    final class ApplyWork: Sendable {
        let jobs = Mutex<[UInt64: [@Sendable () -> Void]]>([:])
        /// Nodes whose image work (sending, or taking one that came in pieces) waits in
        /// `imageJobs` until `drainImages`; elsewhere it runs at once.
        let defersImages = Mutex<Set<UInt64>>([])
        let imageJobs = Mutex<[UInt64: [@Sendable () -> Void]]>([:])
    }

    init(settings: RaftConsensus.Settings = RaftConsensus.Settings(), imagesOnSend: Bool = false, keepsInstalledImages: Bool = false,
         deferApply: Bool = false, directories: [UInt64: String] = [:]) throws {
        directory = try temporaryDirectory("raftconsensus")
        self.directories = directories
        self.settings = settings
        self.imagesOnSend = imagesOnSend
        self.keepsInstalledImages = keepsInstalledImages
        self.deferApply = deferApply
        for id in 1...UInt64(3) { try start(id) }
    }

    func start(_ id: UInt64) throws {
        let health = StorageHealth(logger: Logger(label: "test"), directory: directories[id] ?? directory)
        let disk = try RaftDisk(directory: (directories[id] ?? directory) + "/\(id)", health: health)
        disks[id] = disk
        healths[id] = health
        let work = applyWork
        let imageOn: @Sendable (@escaping @Sendable () -> Void) -> Bool = { job in
            if work.defersImages.withLock({ $0.contains(id) }) {
                work.imageJobs.withLock { $0[id, default: []].append(job) }
            } else {
                job()
            }
            return true
        }
        let node = deferApply
            ? try RaftConsensus(nodeID: id, disk: disk, transport: Endpoint(network, from: id), settings: settings,
                                applyOn: { job in work.jobs.withLock { $0[id, default: []].append(job) }; return true }, imageOn: imageOn)
            : try RaftConsensus(nodeID: id, disk: disk, transport: Endpoint(network, from: id), settings: settings, imageOn: imageOn)
        let machine = Registers(imagesOnSend: imagesOnSend, keepsInstalledImages: keepsInstalledImages)
        try node.createGroup(group, peers: peers, stateMachine: machine)
        machines[id] = machine
        network.nodes.withLock { $0[id] = node }
        network.down.withLock { _ = $0.remove(id) }
    }

    func node(_ id: UInt64) -> RaftConsensus { network.nodes.withLock { $0[id]! } }

    /// Runs the apply-side work node `id` was handed so far.
    func drainApply(at id: UInt64) {
        let jobs = applyWork.jobs.withLock { $0.removeValue(forKey: id) ?? [] }
        for job in jobs { job() }
    }

    /// Runs the image work node `id` was handed so far, and from now on at once.
    func drainImages(at id: UInt64) {
        applyWork.defersImages.withLock { _ = $0.remove(id) }
        for job in applyWork.imageJobs.withLock({ $0.removeValue(forKey: id) ?? [] }) { job() }
    }

    /// Ticks every live node and delivers until quiet, `rounds` times.
    func run(rounds: Int) {
        for _ in 0..<rounds {
            for (id, node) in network.nodes.withLock({ $0 }) where !network.down.withLock({ $0.contains(id) }) { node.tick() }
            var bound = 0
            while network.pump() && bound < 1000 { bound += 1 }
        }
    }

    var leader: UInt64? {
        network.nodes.withLock { $0 }.first { id, node in !network.down.withLock { $0.contains(id) } && node.status(of: group)?.role == .leader }?.key
    }

    func waitForLeader() throws -> UInt64 {
        for _ in 0..<100 {
            if let leader { return leader }
            run(rounds: 1)
        }
        throw CorruptDataError("no leader within 100 rounds")
    }

    /// Writes keys `numbers` at `leader` while `away` is down and releases them all, so the
    /// next tick compacts the leader's log past what `away` has; returns the last index.
    func writeWhileAway(_ away: UInt64, at leader: UInt64, _ numbers: ClosedRange<Int>) throws -> UInt64 {
        network.down.withLock { _ = $0.insert(away) }
        var last: UInt64 = 0
        for number in numbers { last = try #require(try write("k\(number)=value-\(number)", at: leader)?.get()) }
        try machines[leader]!.retention.withLock { $0 }!.release(through: last)
        return last
    }

    func write(_ text: String, at id: UInt64) -> Result<UInt64, ConsensusError>? {
        let answer = Mutex<Result<UInt64, ConsensusError>?>(nil)
        node(id).write(group, Proposal(data: Array(text.utf8))) { result in answer.withLock { $0 = result } }
        for _ in 0..<50 where answer.withLock({ $0 }) == nil { run(rounds: 1) }
        return answer.withLock { $0 }
    }
}

@Suite struct RaftConsensusTests {
    @Test func aThreeNodeGroupReplicatesReadsAndSurvivesItsLeader() throws {
        let cluster = try Cluster()
        let leader = try cluster.waitForLeader()
        let follower = [1, 2, 3].map(UInt64.init).first { $0 != leader }!
        #expect(try cluster.write("a=1", at: leader)?.get() != nil)
        guard case .failure(.notLeader(_, let hint)) = cluster.write("b=1", at: follower) else {
            Issue.record("a follower must refuse a write and name the leader")
            return
        }
        #expect(hint == leader)
        cluster.run(rounds: 3)
        for id in 1...UInt64(3) { #expect(cluster.machines[id]!.values.withLock { $0 } == ["a": "1"]) }

        // A linearizable read at the leader is answered once the leader confirmed it leads.
        let read = Mutex<Result<UInt64, ConsensusError>?>(nil)
        cluster.node(leader).read(group, consistency: .linearizable) { result in read.withLock { $0 = result } }
        #expect(read.withLock { $0 } == nil)  // it waits for a heartbeat round
        cluster.run(rounds: 2)
        #expect((try? read.withLock { $0 }?.get()) != nil)
        // A lease-based read (CheckQuorum is on) is answered without that round.
        let leased = Mutex<Result<UInt64, ConsensusError>?>(nil)
        cluster.node(leader).read(group, consistency: .leaseBased) { result in leased.withLock { $0 = result } }
        #expect((try? leased.withLock { $0 }?.get()) != nil)

        // The leader goes down: another takes over, and writes go on.
        cluster.network.down.withLock { _ = $0.insert(leader) }
        cluster.run(rounds: 40)
        let next = try cluster.waitForLeader()
        #expect(next != leader)
        #expect(try cluster.write("c=3", at: next)?.get() != nil)

        // The old leader restarts from its disk and catches up.
        cluster.node(leader).close()
        try cluster.start(leader)
        cluster.run(rounds: 30)
        #expect(cluster.machines[leader]!.values.withLock { $0 } == ["a": "1", "c": "3"])

        // A snapshot compacts the log; a restart recovers from it.
        #expect(try cluster.node(next).snapshot(group) > 0)
        cluster.node(next).close()
        try cluster.start(next)
        cluster.run(rounds: 30)
        #expect(cluster.machines[next]!.values.withLock { $0 } == ["a": "1", "c": "3"])
        #expect(try cluster.write("d=4", at: try cluster.waitForLeader())?.get() != nil)
    }

    @Test func aLaggingFollowerCatchesUpFromASnapshotSentInPieces() throws {
        var settings = RaftConsensus.Settings()
        settings.snapshotChunkBytes = 5
        let cluster = try Cluster(settings: settings)
        let leader = try cluster.waitForLeader()
        let behind = [1, 2, 3].map(UInt64.init).first { $0 != leader }!
        cluster.network.down.withLock { _ = $0.insert(behind) }
        for number in 1...6 { #expect(try cluster.write("k\(number)=value-\(number)", at: leader)?.get() != nil) }
        // The leader compacts its log: the follower that was away can only catch up from the snapshot.
        #expect(try cluster.node(leader).snapshot(group) > 0)
        cluster.network.down.withLock { _ = $0.remove(behind) }
        cluster.run(rounds: 30)
        #expect(cluster.machines[behind]!.values.withLock { $0 } == cluster.machines[leader]!.values.withLock { $0 })
        #expect(cluster.machines[behind]!.values.withLock { $0.count } == 6)
        #expect(cluster.machines[behind]!.restores.withLock { $0 } == 1)  // it came as the snapshot
    }

    /// The state machine tells the log what it holds durably; the leader compacts up to it,
    /// but keeps what a lagging follower lacks while that fits `catchUpBytesMax`. Past it the
    /// follower gets the state machine's image, made when it is sent.
    @Test(arguments: [false, true]) func aReleasedLogIsCompactedAndALaggingFollowerCatchesUp(pastTheCatchUpBound: Bool) throws {
        var settings = RaftConsensus.Settings()
        settings.catchUpBytesMax = pastTheCatchUpBound ? 0 : 1 << 20
        let cluster = try Cluster(settings: settings, imagesOnSend: true)
        let leader = try cluster.waitForLeader()
        let behind = [1, 2, 3].map(UInt64.init).first { $0 != leader }!
        var last = try cluster.writeWhileAway(behind, at: leader, 1...6)
        cluster.run(rounds: 1)  // the tick compacts
        cluster.network.down.withLock { _ = $0.remove(behind) }
        cluster.run(rounds: 30)
        #expect(cluster.machines[behind]!.values.withLock { $0 } == cluster.machines[leader]!.values.withLock { $0 })
        #expect(cluster.machines[behind]!.values.withLock { $0.count } == 6)
        // Within the bound it caught up from the log; past it, from the one image.
        #expect(cluster.machines[behind]!.restores.withLock { $0 } == (pastTheCatchUpBound ? 1 : 0))
    }

    /// A follower whose state machine keeps installed images itself (a region) does not keep
    /// the image in its log or memory; leading later, it sends an image made afresh.
    @Test(arguments: [false, true]) func anInstalledImageIsDroppedFromTheLogWhenTheStateMachineKeepsIt(keeps: Bool) throws {
        var settings = RaftConsensus.Settings()
        settings.catchUpBytesMax = 0
        let cluster = try Cluster(settings: settings, imagesOnSend: true, keepsInstalledImages: keeps)
        let leader = try cluster.waitForLeader()
        let others = [1, 2, 3].map(UInt64.init).filter { $0 != leader }
        let (behind, third) = (others[0], others[1])
        var last = try cluster.writeWhileAway(behind, at: leader, 1...6)
        cluster.run(rounds: 1)
        cluster.network.down.withLock { _ = $0.remove(behind) }
        cluster.run(rounds: 30)
        #expect(cluster.machines[behind]!.restores.withLock { $0 } == 1)
        let kept = try #require(cluster.disks[behind]!.snapshot(of: group))
        #expect(kept.index >= last)
        #expect(kept.data.isEmpty == keeps, "the image stays in the log exactly when the state machine does not keep it")
        guard keeps else { return }

        // The follower leads; the third node falls behind its compacted log and gets an image
        // its state machine makes now, holding every write, the later ones too.
        try cluster.node(leader).transferLeader(group, to: behind)
        cluster.run(rounds: 5)
        #expect(cluster.leader == behind)
        last = try cluster.writeWhileAway(third, at: behind, 7...8)
        cluster.run(rounds: 1)
        cluster.network.down.withLock { _ = $0.remove(third) }
        cluster.run(rounds: 30)
        #expect(cluster.node(behind).counters.snapshotsSent == 1)
        #expect(cluster.machines[third]!.values.withLock { $0.count } == 8)
        #expect(cluster.machines[third]!.values.withLock { $0 } == cluster.machines[behind]!.values.withLock { $0 })
    }

    /// Three nodes whose state machines keep images sent in pieces of 8 bytes, two on their
    /// way at a time; one follower (down) lacks the six writes the leader compacted away.
    private func imageInPieces() throws -> (cluster: Cluster, leader: UInt64, behind: UInt64) {
        var settings = RaftConsensus.Settings()
        settings.catchUpBytesMax = 0
        settings.snapshotChunkBytes = 8
        settings.snapshotWindowChunks = 2
        let cluster = try Cluster(settings: settings, imagesOnSend: true, keepsInstalledImages: true)
        let leader = try cluster.waitForLeader()
        let behind = [1, 2, 3].map(UInt64.init).first { $0 != leader }!
        _ = try cluster.writeWhileAway(behind, at: leader, 1...6)
        cluster.run(rounds: 1)
        return (cluster, leader, behind)
    }

    /// An image travels in pieces, a few on their way at a time, and a follower whose state
    /// machine keeps images puts them together in a file it installs from, then deletes. A
    /// piece the transport drops stops the stream; the leader sends the image again later.
    @Test func anImageTravelsInPiecesAFewAtATimeIntoAFile() throws {
        let (cluster, leader, behind) = try imageInPieces()
        // The first stream loses its fourth piece to the transport: it stops, nothing is installed.
        cluster.network.dropsWatched.withLock { $0 = 3 }
        cluster.network.down.withLock { _ = $0.remove(behind) }
        cluster.run(rounds: 3)
        // (The fifth was on its way already: two at a time.)
        #expect(cluster.network.watchedSeen.withLock { $0 } == 5, "the stream did not stop at the dropped piece")
        #expect(cluster.machines[behind]!.restores.withLock { $0 } == 0)
        #expect(cluster.node(leader).counters.snapshotsSent == 0)

        // Sent again after a while, whole this time: 9 pieces of at most 8 bytes.
        for _ in 0..<40 where cluster.machines[behind]!.restores.withLock({ $0 }) == 0 { cluster.run(rounds: 1) }
        #expect(cluster.machines[behind]!.restores.withLock { $0 } == 1, "the follower never installed the image")
        #expect(cluster.machines[behind]!.restoresFromFiles.withLock { $0 } == 1)
        #expect(cluster.machines[behind]!.values.withLock { $0 } == cluster.machines[leader]!.values.withLock { $0 })
        #expect(cluster.machines[behind]!.values.withLock { $0.count } == 6)
        #expect(cluster.node(leader).counters.snapshotsSent == 1)
        #expect(cluster.network.watchedSeen.withLock { $0 } == 5 + 9)
        let waitingMax = cluster.network.watchedWaitingMax.withLock { $0 }
        #expect(waitingMax >= 1 && waitingMax <= 2, "pieces on their way at once: \(waitingMax)")
        // Installed and dropped from the log: its file (and the broken stream's) went too.
        #expect(cluster.disks[behind]!.snapshot(of: group)?.data.isEmpty == true)
        #expect(try FileIO.list(cluster.disks[behind]!.imageDirectory).isEmpty)

        // An older image a newer snapshot overtook goes once the newer one is installed.
        let imageDirectory = cluster.disks[behind]!.imageDirectory
        try FileIO.writeFileAtomically([7], to: imageDirectory + "/\(group.kind.rawValue)-\(group.number)-\(leader)-2-1.image", directory: imageDirectory)
        _ = try cluster.writeWhileAway(behind, at: leader, 7...8)
        cluster.run(rounds: 1)
        cluster.network.down.withLock { _ = $0.remove(behind) }
        for _ in 0..<40 where cluster.machines[behind]!.restores.withLock({ $0 }) < 2 { cluster.run(rounds: 1) }
        #expect(cluster.machines[behind]!.values.withLock { $0.count } == 8)
        #expect(try FileIO.list(imageDirectory).isEmpty, "an overtaken image stayed: \((try? FileIO.list(imageDirectory)) ?? [])")

        // What a crash leaves in the spool (a stream cut short) goes at the next start.
        try FileIO.writeFileAtomically([1, 2, 3], to: imageDirectory + "/1-1-1-9-2.part", directory: imageDirectory)
        cluster.node(behind).close()
        try cluster.start(behind)
        #expect(try FileIO.list(imageDirectory).isEmpty)
    }

    /// An image slow on its way (longer than the wait before a snapshot counts as lost) is
    /// not sent again meanwhile, nor while the follower takes it (syncs its file) just after:
    /// the wait starts once the image has left.
    @Test func aSlowImageIsNotSentTwice() throws {
        let (cluster, leader, behind) = try imageInPieces()
        cluster.network.holdsWatched.withLock { $0 = true }
        cluster.network.down.withLock { _ = $0.remove(behind) }
        cluster.run(rounds: 30)  // more heartbeat answers than snapshotRetryHeartbeats
        #expect(cluster.network.watchedSeen.withLock { $0 } == 0 && cluster.machines[behind]!.restores.withLock { $0 } == 0)
        // Every piece arrives; the follower is slow to take the image (15 heartbeats).
        cluster.applyWork.defersImages.withLock { _ = $0.insert(behind) }
        cluster.network.holdsWatched.withLock { $0 = false }
        cluster.run(rounds: 15)
        #expect(cluster.network.watchedSeen.withLock { $0 } == 9 && cluster.machines[behind]!.restores.withLock { $0 } == 0)
        cluster.drainImages(at: behind)
        cluster.run(rounds: 30)
        #expect(cluster.machines[behind]!.restores.withLock { $0 } == 1)
        #expect(cluster.machines[behind]!.values.withLock { $0.count } == 6)
        #expect(cluster.network.watchedSeen.withLock { $0 } == 9, "the image was sent again")
        #expect(cluster.node(leader).counters.snapshotsSent == 1)
    }

    /// A snapshot lost on the way is sent again, but not at every heartbeat answer: each
    /// resend is a whole image, and a follower installing one answers heartbeats meanwhile.
    @Test func aLostSnapshotIsSentAgainOnlyAfterAWhile() throws {
        var settings = RaftConsensus.Settings()
        settings.catchUpBytesMax = 0
        let cluster = try Cluster(settings: settings, imagesOnSend: true)
        let leader = try cluster.waitForLeader()
        let behind = [1, 2, 3].map(UInt64.init).first { $0 != leader }!
        var last = try cluster.writeWhileAway(behind, at: leader, 1...6)
        cluster.run(rounds: 1)
        cluster.network.losesSnapshots.withLock { _ = $0.insert(behind) }
        cluster.network.down.withLock { _ = $0.remove(behind) }
        cluster.run(rounds: 15)
        #expect(cluster.node(leader).counters.snapshotsSent == 1, "resent before the retry bound")
        cluster.run(rounds: 10)
        #expect(cluster.node(leader).counters.snapshotsSent == 2, "never resent")
        cluster.network.losesSnapshots.withLock { $0 = [] }
        cluster.run(rounds: 30)
        #expect(cluster.machines[behind]!.values.withLock { $0.count } == 6)
        #expect(cluster.machines[behind]!.restores.withLock { $0 } == 1)
    }
}

/// Every answer a waiter got, so a test can tell "answered once" from "twice" or "never".
private final class Answers: Sendable {
    let results = Mutex<[Result<UInt64, ConsensusError>]>([])
    func record(_ result: Result<UInt64, ConsensusError>) { results.withLock { $0.append(result) } }
    var all: [Result<UInt64, ConsensusError>] { results.withLock { $0 } }
}

@Suite struct RaftApplyBacklogTests {
    /// Past `applyBacklogBytesMax` of entries waiting for the apply side, proposals are
    /// refused (retryable) and rounds hand out no more committed entries; both resume once
    /// it catches up.
    @Test func aSlowApplySideHoldsCommittedEntriesAndRefusesProposals() throws {
        var settings = RaftConsensus.Settings()
        settings.applyBacklogBytesMax = 10
        let cluster = try Cluster(settings: settings, deferApply: true)
        let leader = try cluster.waitForLeader()
        let follower = [1, 2, 3].map(UInt64.init).first { $0 != leader }!
        func propose(_ text: String) -> Answers {
            let answers = Answers()
            cluster.node(leader).write(group, Proposal(data: Array(text.utf8))) { answers.record($0) }
            cluster.run(rounds: 3)
            return answers
        }
        let first = propose("k1=value-1")  // 10 bytes: the backlog reaches its bound
        #expect(first.all.isEmpty, "answered before it was applied")
        let refused = propose("k2=value-2")
        #expect(refused.all.count == 1 && (try? refused.all[0].get()) == nil && refused.all.first.map { result in
            if case .failure(let error) = result { error.isRetryable } else { false }
        } == true)
        cluster.drainApply(at: leader)
        #expect((try? first.all.first?.get()) != nil)

        // One follower's apply side still holds k1: k2 and k3 commit with the other one.
        let other = [1, 2, 3].map(UInt64.init).first { $0 != leader && $0 != follower }!
        cluster.drainApply(at: other)
        cluster.run(rounds: 1)
        for text in ["k2=value-2", "k3=value-3"] {
            let answers = propose(text)
            cluster.drainApply(at: leader)
            cluster.drainApply(at: other)
            #expect((try? answers.all.first?.get()) != nil, "\(text) was not accepted once the leader caught up")
        }
        cluster.drainApply(at: follower)
        #expect(cluster.machines[follower]!.values.withLock { $0 } == ["k1": "value-1"])
        for _ in 0..<20 where cluster.machines[follower]!.values.withLock({ $0.count }) < 3 {
            cluster.run(rounds: 1)
            cluster.drainApply(at: follower)
        }
        #expect(cluster.machines[follower]!.values.withLock { $0 } == ["k1": "value-1", "k2": "value-2", "k3": "value-3"])
    }

    /// A follower whose apply side is past the bound takes no new entries, so the log it
    /// keeps in memory stops growing while the others go on committing; once it catches up,
    /// the leader sends it everything it let go.
    @Test func aFollowerBehindOnApplyTakesNoNewEntriesUntilItCatchesUp() throws {
        var settings = RaftConsensus.Settings()
        settings.applyBacklogBytesMax = 10
        let cluster = try Cluster(settings: settings, deferApply: true)
        let leader = try cluster.waitForLeader()
        let followers = [1, 2, 3].map(UInt64.init).filter { $0 != leader }
        let (slow, other) = (followers[0], followers[1])
        func lastIndex(_ id: UInt64) -> UInt64 { cluster.node(id).groupStatuses().first { $0.group == group }!.lastIndex }
        func commit(_ text: String) -> Result<UInt64, ConsensusError>? {
            let answer = Mutex<Result<UInt64, ConsensusError>?>(nil)
            cluster.node(leader).write(group, Proposal(data: Array(text.utf8))) { result in answer.withLock { $0 = result } }
            for _ in 0..<20 where answer.withLock({ $0 }) == nil {
                cluster.run(rounds: 1)
                cluster.drainApply(at: leader)
                cluster.drainApply(at: other)
            }
            return answer.withLock { $0 }
        }
        #expect((try? commit("k0=value-0")?.get()) != nil)  // 10 bytes: the slow follower's backlog is at its bound
        cluster.run(rounds: 2)
        let held = lastIndex(slow)
        var expected = ["k0": "value-0"]
        for number in 1...8 {
            #expect((try? commit("k\(number)=value-\(number)")?.get()) != nil, "k\(number) did not commit with the leader and one follower")
            expected["k\(number)"] = "value-\(number)"
        }
        cluster.run(rounds: 5)
        #expect(lastIndex(other) >= held + 8)
        #expect(lastIndex(slow) == held, "the follower took entries it could only hold in memory")
        #expect(cluster.node(slow).counters.appendsHeld > 0)

        cluster.drainApply(at: slow)
        for _ in 0..<50 where cluster.machines[slow]!.values.withLock({ $0 }) != expected {
            cluster.run(rounds: 1)
            cluster.drainApply(at: slow)
        }
        #expect(cluster.machines[slow]!.values.withLock { $0 } == expected)
        #expect(lastIndex(slow) == lastIndex(leader))
    }
}

@Suite struct RaftConsensusWaiterTests {
    @Test func closingAnswersEveryWaitingWriteAndReadOnce() throws {
        let cluster = try Cluster()
        let leader = try cluster.waitForLeader()
        // The followers are away: the write cannot commit, the read cannot be confirmed.
        for id in [1, 2, 3].map(UInt64.init) where id != leader { cluster.network.down.withLock { _ = $0.insert(id) } }
        let write = Answers(), read = Answers()
        cluster.node(leader).write(group, Proposal(data: Array("a=1".utf8))) { write.record($0) }
        cluster.node(leader).read(group, consistency: .linearizable) { read.record($0) }
        cluster.run(rounds: 3)
        #expect(write.all.isEmpty && read.all.isEmpty)
        cluster.node(leader).close()
        #expect(write.all == [.failure(.stopped)])
        #expect(read.all == [.failure(.stopped)])
        cluster.run(rounds: 3)
        #expect(write.all.count == 1 && read.all.count == 1)
        // A closed node refuses at once.
        let late = Answers()
        cluster.node(leader).write(group, Proposal(data: Array("b=2".utf8))) { late.record($0) }
        #expect(late.all == [.failure(.stopped)])
    }

    @Test func aFailedLogWriteAnswersEachWaiterOnceAndStopsTheNode() throws {
        let cluster = try Cluster()
        let leader = try cluster.waitForLeader()
        #expect(try cluster.write("a=1", at: leader)?.get() != nil)
        // The leader's entry is on its disk and on its way; then its disk fails before the
        // round that would persist the commit.
        let write = Answers()
        cluster.node(leader).write(group, Proposal(data: Array("b=2".utf8))) { write.record($0) }
        cluster.disks[leader]!.close()
        cluster.run(rounds: 5)
        #expect(write.all.count == 1)
        if case .failure(.io) = write.all.first {} else { Issue.record("expected an I/O failure, got \(write.all)") }
        let late = Answers()
        cluster.node(leader).write(group, Proposal(data: Array("c=3".utf8))) { late.record($0) }
        #expect(late.all == [.failure(.stopped)])
        // The node's health says so (/ping answers 503), not only the waiters.
        #expect(cluster.healths[leader]!.reading.logFailed)
    }
}

/// Issue 27 review, item 1: a Raft node shut down for good at the first log write its full
/// disk refused, while the log cut the record back and the node's health cleared once space
/// was free (/ping 200, every write refused until a restart). Now the round fails and is
/// written again once there is space.
@Suite(.serialized) struct RaftDiskFullTests {
    /// A value larger than a page: its record needs new space, not a page's slack.
    private static let large = String(repeating: "v", count: 8192)

    /// Every entry index in the raw log's entry records, as often as written.
    private func loggedIndexes(_ directory: String) throws -> [UInt64] {
        var indexes: [UInt64] = []
        _ = try FileWAL(directory: directory, policy: .batch).replay { _, payload in
            if case .entries(_, let entries) = try RaftRecord.decode(payload) { indexes += entries.map(\.index) }
        }
        return indexes
    }

    @Test(.enabled(if: Tmpfs.available)) func aLeaderWhoseDiskIsFullFailsTheRoundAndGoesOnOnceSpaceIsFree() throws {
        let disk = try Tmpfs(label: "raft", sizeBytes: 1 << 20)
        defer { disk.unmount() }
        let health = StorageHealth(logger: Logger(label: "test"), directory: disk.path)
        let network = LoopbackNetwork()
        let machine = Registers()
        let node = try RaftConsensus(nodeID: 1, disk: try RaftDisk(directory: disk.path + "/raft", health: health),
                                     transport: Endpoint(network, from: 1))
        try node.createGroup(group, peers: [Peer(id: 1, address: "a")], stateMachine: machine)
        for _ in 0..<100 where node.status(of: group)?.role != .leader { node.tick() }
        func write(_ text: String) -> [Result<UInt64, ConsensusError>] {
            let answers = Answers()
            node.write(group, Proposal(data: Array(text.utf8))) { answers.record($0) }
            return answers.all  // a lone voter answers within the call
        }
        #expect((try? write("a=1").first?.get()) != nil)

        let filler = try disk.fill(leaveBytes: 0)
        let refused = write("b=" + Self.large)
        guard case .failure(.io(let why)) = refused.first, refused.count == 1 else {
            Issue.record("expected one I/O failure, got \(refused)")
            return
        }
        #expect(why.contains("No space left on device") && why.contains("not acknowledged"), "\(why)")
        #expect(health.reading.diskFull)
        // Refused before the core while the log refuses: surely never applied.
        guard case .failure(.busy) = write("c=3").first else {
            Issue.record("expected a retryable refusal while the disk is full")
            return
        }
        node.tick()  // tries the round again: refused again, nothing else happens
        #expect(node.status(of: group)?.role == .leader, "the node stopped")

        try FileManager.default.removeItem(atPath: filler)
        node.tick()
        #expect(!health.reading.diskFull, "the raft log wrote again: the episode is over")
        #expect((try? write("d=4").first?.get()) != nil, "the node still refuses writes once space is free")
        // b's entry was kept and written once there was space (its writer was told it may be applied).
        #expect(machine.values.withLock { $0 } == ["a": "1", "b": Self.large, "d": "4"])
        #expect(health.reading.diskFullEpisodes == 1 && !health.reading.logFailed)
        node.close()

        let indexes = try loggedIndexes(disk.path + "/raft")
        #expect(indexes == Array(1...UInt64(indexes.count)), "a hole or an entry written twice: \(indexes)")
        let recovered = try RaftDisk(directory: disk.path + "/raft").recover()[group]
        #expect(recovered?.entries.map { String(decoding: $0.data, as: UTF8.self) }.filter { !$0.isEmpty } == ["a=1", "b=" + Self.large, "d=4"])
    }

    /// A leader whose disk is full sent its heartbeats before each refused write, so the
    /// followers never elected another and the whole group refused writes until this one disk
    /// had space. Now it is quiet while its log refuses: a node with space takes over.
    @Test(.enabled(if: Tmpfs.available)) func aLeaderWhoseDiskIsFullLetsANodeWithSpaceTakeOver() throws {
        let disks = try (1...3).map { try Tmpfs(label: "raft\($0)", sizeBytes: 4 << 20) }
        defer { for disk in disks { disk.unmount() } }
        let cluster = try Cluster(directories: Dictionary(uniqueKeysWithValues: (1...3).map { (UInt64($0), disks[$0 - 1].path) }))
        let full = try cluster.waitForLeader()
        #expect(try cluster.write("a=1", at: full)?.get() != nil)
        let filler = try disks[Int(full) - 1].fill(leaveBytes: 0)
        defer { try? FileManager.default.removeItem(atPath: filler) }
        let refused = Answers()
        cluster.node(full).write(group, Proposal(data: Array(("b=" + Self.large).utf8))) { refused.record($0) }
        var next: UInt64?
        for _ in 0..<200 where next == nil {
            cluster.run(rounds: 1)
            next = [1, 2, 3].map(UInt64.init).first { $0 != full && cluster.node($0).status(of: group)?.role == .leader }
        }
        let leader = try #require(next, "no node with space took over from a leader whose disk is full")
        #expect(try cluster.write("c=3", at: leader)?.get() != nil)
        #expect(cluster.machines[leader]!.values.withLock { $0["c"] } == "3")
    }

    /// A follower whose disk is full must not acknowledge entries it did not write: with the
    /// other follower away, the leader cannot commit until the full one wrote them.
    @Test(.enabled(if: Tmpfs.available)) func aFollowerWhoseDiskIsFullAcknowledgesNothingUntilItWrote() throws {
        let disks = try (1...3).map { try Tmpfs(label: "raft\($0)", sizeBytes: 4 << 20) }
        defer { for disk in disks { disk.unmount() } }
        let cluster = try Cluster(directories: Dictionary(uniqueKeysWithValues: (1...3).map { (UInt64($0), disks[$0 - 1].path) }))
        let leader = try cluster.waitForLeader()
        #expect(try cluster.write("a=1", at: leader)?.get() != nil)
        cluster.run(rounds: 2)
        let followers = [1, 2, 3].map(UInt64.init).filter { $0 != leader }
        let (full, away) = (followers[0], followers[1])
        cluster.network.down.withLock { _ = $0.insert(away) }
        let filler = try disks[Int(full) - 1].fill(leaveBytes: 0)

        let answers = Answers()
        cluster.node(leader).write(group, Proposal(data: Array(("b=" + Self.large).utf8))) { answers.record($0) }
        cluster.run(rounds: 3)
        #expect(answers.all.isEmpty, "committed with a follower that did not write the entry")
        #expect(cluster.healths[full]!.reading.diskFull)

        try FileManager.default.removeItem(atPath: filler)
        for _ in 0..<5 where answers.all.isEmpty { cluster.run(rounds: 1) }
        #expect((try? answers.all.first?.get()) != nil, "the follower did not go on once space was free: \(answers.all)")
        #expect(answers.all.count == 1)
        #expect(!cluster.healths[full]!.reading.diskFull)
        #expect(cluster.machines[full]!.values.withLock { $0["b"] } == Self.large)
    }
}

@Suite struct SnapshotChunksTests {
    private func snapshotMessage(_ data: [UInt8]) -> GroupMessage {
        var message = RaftMessage(kind: .snapshot, from: 1, to: 2, term: 3)
        message.snapshot = RaftSnapshot(index: 9, term: 2, membership: RaftMembership(voters: [1, 2]), data: data)
        return GroupMessage(group: GroupID(kind: .data, number: 1), message: message)
    }

    @Test func piecesArriveAsOneSnapshotAndALostPieceDropsTheAssembly() {
        let whole = snapshotMessage(Array(0..<23))
        let pieces = SnapshotChunks.split(whole, chunkBytes: 5)
        #expect(pieces.count == 5 && pieces.allSatisfy { $0.message.snapshot!.data.count <= 5 })
        var chunks = SnapshotChunks()
        #expect(pieces.dropLast().allSatisfy { chunks.receive($0) == nil })
        #expect(chunks.receive(pieces.last!) == whole)
        // Piece 2 lost: nothing comes out until the leader sends the whole snapshot again.
        #expect(chunks.receive(pieces[0]) == nil && chunks.receive(pieces[1]) == nil && chunks.receive(pieces[3]) == nil)
        #expect(chunks.receive(pieces[4]) == nil)
        #expect(pieces.dropLast().allSatisfy { chunks.receive($0) == nil } && chunks.receive(pieces.last!) == whole)
        // A newer snapshot from the same sender replaces the old assembly; too large is refused.
        var bounded = SnapshotChunks(bytesMax: 12)
        #expect(bounded.receive(pieces[0]) == nil && bounded.receive(pieces[1]) == nil && bounded.receive(pieces[2]) == nil)
        #expect(bounded.receive(pieces[3]) == nil && bounded.receive(pieces[4]) == nil)  // 23 bytes > 12: dropped
        // A small snapshot goes as it is.
        #expect(SnapshotChunks.split(snapshotMessage([1, 2]), chunkBytes: 5) == [snapshotMessage([1, 2])])
    }

    @Test func spooledPiecesGoToAFileWithinTheirOwnBound() throws {
        let directory = try temporaryDirectory("chunks-spool")
        let pieces = SnapshotChunks.split(snapshotMessage(Array(0..<23)), chunkBytes: 5)
        // In memory the bound is 12 bytes; spooled, 30.
        var chunks = SnapshotChunks(bytesMax: 12, spoolDirectory: directory, spoolBytesMax: 30)
        for piece in pieces.dropLast() { #expect(chunks.receive(piece, spooled: true) == nil) }
        let last = chunks.receive(pieces.last!, spooled: true)
        let whole = try #require(last)
        let name = try #require(SpooledImage.name(in: whole.message.snapshot!.data))
        #expect(try FileIO.readFile(directory + "/" + name) == Array(0..<23))
        // Past the spool's bound the assembly and its file go.
        var small = SnapshotChunks(spoolDirectory: directory, spoolBytesMax: 12)
        try FileIO.remove(directory + "/" + name)
        for piece in pieces { #expect(small.receive(piece, spooled: true) == nil) }
        #expect(try FileIO.list(directory).isEmpty)
        // A token from a peer names no file of this node: it is dropped.
        var token = snapshotMessage(SpooledImage.token(name))
        token.message.context = 0
        let fromPeer = chunks.receive(token)
        #expect(fromPeer == nil)
    }

    /// A stream its sender stopped sending leaves no spool file behind: after `idleTicksMax`
    /// ticks without a piece the assembly and its file go; pieces that keep coming keep it.
    @Test func aStreamCutShortIsDroppedWithItsFileOnceIdle() throws {
        let directory = try temporaryDirectory("chunks-idle")
        let pieces = SnapshotChunks.split(snapshotMessage(Array(0..<23)), chunkBytes: 5)
        var chunks = SnapshotChunks(spoolDirectory: directory)
        #expect(chunks.receive(pieces[0], spooled: true) == nil)
        for _ in 0..<3 { chunks.tick(idleTicksMax: 4) }
        #expect(chunks.receive(pieces[1], spooled: true) == nil)
        for _ in 0..<3 { chunks.tick(idleTicksMax: 4) }
        let files = try FileIO.list(directory)
        #expect(chunks.assemblingCount == 1 && files.count == 1, "a stream still sending was dropped")
        chunks.tick(idleTicksMax: 4)
        #expect(chunks.assemblingCount == 0)
        #expect(try FileIO.list(directory).isEmpty)
        // What the stopped sender sends later makes nothing; sent again from the start, it arrives.
        #expect(chunks.receive(pieces[2], spooled: true) == nil && chunks.assemblingCount == 0)
        let whole = try #require(pieces.map { chunks.receive($0, spooled: true) }.last!)
        #expect(try FileIO.readFile(directory + "/" + SpooledImage.name(in: whole.message.snapshot!.data)!) == Array(0..<23))
    }
}
