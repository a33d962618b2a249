import TidemarkIO
import Foundation
import Synchronization
import Testing
import TidemarkConsensus
import TidemarkStorage
import TidemarkTestSupport

/// A register per key: entries are `key=value`; `key=` (no value) is refused.
private final class Registers: StateMachine, Sendable {
    struct State: Equatable {
        var values: [String: String] = [:]
        var appliedIndexes: [UInt64] = []
        var sawLocal = 0
    }
    let state = Mutex(State())
    let retention = Mutex<LogRetention?>(nil)

    func apply(_ entry: CommittedEntry) throws {
        let text = String(decoding: entry.data, as: UTF8.self)
        let parts = text.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[1].isEmpty else { throw CorruptDataError("entry \(entry.index): no value in \(text)") }
        state.withLock {
            $0.values[String(parts[0])] = String(parts[1])
            $0.appliedIndexes.append(entry.index)
            if entry.local != nil { $0.sawLocal += 1 }
        }
    }

    func snapshot() throws -> StateSnapshot {
        state.withLock { state in
            let text = state.values.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "\n")
            return StateSnapshot(index: state.appliedIndexes.last ?? 0, term: 1, data: Array(text.utf8))
        }
    }

    func restore(_ snapshot: StateSnapshot) throws {
        state.withLock { state in
            state = State()
            for line in String(decoding: snapshot.data, as: UTF8.self).split(separator: "\n") {
                let parts = line.split(separator: "=", maxSplits: 1)
                state.values[String(parts[0])] = String(parts[1])
            }
        }
    }

    func attach(logRetention: LogRetention) { retention.withLock { $0 = logRetention } }
}

private let group = GroupID(kind: .data, number: 3)

/// Proposes and waits for the answer (standalone answers before `write` returns, except
/// under interval syncing, where it answers once the entry is in the OS).
private func propose(_ consensus: Consensus, _ text: String, in id: GroupID = group) -> Result<UInt64, ConsensusError> {
    let result = Mutex<Result<UInt64, ConsensusError>?>(nil)
    consensus.write(id, Proposal(data: Array(text.utf8), local: text)) { answer in result.withLock { $0 = answer } }
    return result.withLock { $0 }!
}

@Suite struct StandaloneConsensusTests {
    /// An entry the state machine cannot refuse is acknowledged once logged, before it is
    /// applied; a read (but a weak one) waits until the apply side has every entry appended
    /// before it came, so it still sees every acknowledged write. Others are answered after
    /// their apply, as before.
    @Test func aWriteThatCannotBeRefusedIsAcknowledgedWhenLoggedAndReadsWaitForItsApply() throws {
        let directory = try temporaryDirectory("consensus")
        let parked = Mutex<[@Sendable () -> Void]>([])
        let consensus = StandaloneConsensus(directory: directory, syncPolicy: .intervalMs(1000)) { work in
            parked.withLock { $0.append(work) }
            return true
        }
        let machine = Registers()
        try consensus.createGroup(group, peers: [], stateMachine: machine)
        let answers = Mutex<[UInt64]>([])
        consensus.write(group, Proposal(data: Array("a=1".utf8), refusalImpossible: true)) { result in answers.withLock { $0.append((try? result.get()) ?? 0) } }
        #expect(answers.withLock { $0 } == [1] && machine.state.withLock { $0.appliedIndexes }.isEmpty, "acknowledged once logged, not applied yet")
        consensus.write(group, Proposal(data: Array("b=2".utf8))) { result in answers.withLock { $0.append((try? result.get()) ?? 0) } }
        #expect(answers.withLock { $0 } == [1], "an entry that may be refused waits for its apply")

        let reads = Mutex<[String]>([])
        consensus.read(group, consistency: .weak) { result in reads.withLock { $0.append("weak \((try? result.get()) ?? 99)") } }
        consensus.read(group, consistency: .linearizable) { result in reads.withLock { $0.append("linearizable \((try? result.get()) ?? 99)") } }
        #expect(reads.withLock { $0 } == ["weak 0"], "a read waits for the entries acknowledged before it")
        for run in parked.withLock({ queue in defer { queue = [] }; return queue }) { run() }
        #expect(machine.state.withLock { $0.values } == ["a": "1", "b": "2"])
        #expect(reads.withLock { $0 } == ["weak 0", "linearizable 2"])
        #expect(answers.withLock { $0 } == [1, 2])
        // With nothing pending a read is answered at once.
        consensus.read(group, consistency: .linearizable) { result in reads.withLock { $0.append("now \((try? result.get()) ?? 99)") } }
        #expect(reads.withLock { $0 }.last == "now 2")
        consensus.close()
    }

    @Test(arguments: [WALSyncPolicy.always, .batch, .intervalMs(50)])
    func writesApplyInOrderAndSurviveARestart(policy: WALSyncPolicy) throws {
        let directory = try temporaryDirectory("consensus")
        let consensus = StandaloneConsensus(directory: directory, syncPolicy: policy)
        let machine = Registers()
        try consensus.createGroup(group, peers: [Peer(id: 1, address: "127.0.0.1:10730")], stateMachine: machine)
        for number in 1...20 {
            #expect(try propose(consensus, "k\(number % 5)=v\(number)").get() == UInt64(number))
        }
        #expect(machine.state.withLock { $0.appliedIndexes } == Array(1...20))
        #expect(machine.state.withLock { $0.sawLocal } == 20)
        consensus.close()

        let reopened = StandaloneConsensus(directory: directory, syncPolicy: policy)
        let replayed = Registers()
        try reopened.createGroup(group, peers: [], stateMachine: replayed)
        #expect(replayed.state.withLock { $0.values } == machine.state.withLock { $0.values })
        #expect(replayed.state.withLock { $0.sawLocal } == 0)  // replayed entries are decoded from the log
        #expect(try propose(reopened, "k9=after").get() == 21)
        reopened.read(group, consistency: .linearizable) { #expect((try? $0.get()) == 21) }
        reopened.close()
    }

    @Test func underIntervalSyncTheApplySideAppliesInLogOrderAndAnswersOnlyThen() throws {
        let directory = try temporaryDirectory("consensus")
        // An apply stage that runs its work only when the test says.
        let parked = Mutex<[@Sendable () -> Void]>([])
        let stageTakes = Mutex(true)
        let consensus = StandaloneConsensus(directory: directory, syncPolicy: .intervalMs(1000)) { work in
            guard stageTakes.withLock({ $0 }) else { return false }
            parked.withLock { $0.append(work) }
            return true
        }
        let machine = Registers()
        try consensus.createGroup(group, peers: [], stateMachine: machine)
        let answers = Mutex<[UInt64]>([])
        for number in 1...3 {
            consensus.write(group, Proposal(data: Array("k\(number)=v".utf8))) { result in answers.withLock { $0.append((try? result.get()) ?? 0) } }
        }
        // Logged, not applied: nobody is answered, and reads see nothing yet.
        #expect(answers.withLock { $0 }.isEmpty && machine.state.withLock { $0.appliedIndexes }.isEmpty)
        consensus.read(group, consistency: .weak) { #expect((try? $0.get()) == 0) }
        let runs = parked.withLock { queue in defer { queue = [] }; return queue }
        #expect(runs.count == 1)  // one run pending at a time
        for run in runs { run() }
        #expect(machine.state.withLock { $0.appliedIndexes } == [1, 2, 3])
        #expect(answers.withLock { $0 } == [1, 2, 3])

        // A stage that does not take the work (full, stopped): the writer applies it itself.
        stageTakes.withLock { $0 = false }
        consensus.write(group, Proposal(data: Array("k4=v".utf8))) { result in answers.withLock { $0.append((try? result.get()) ?? 0) } }
        #expect(answers.withLock { $0 } == [1, 2, 3, 4])

        // An apply side that falls behind: past the bound the writer applies what waits.
        stageTakes.withLock { $0 = true }
        for number in 6...(6 + 63) {
            consensus.write(group, Proposal(data: Array("b\(number)=v".utf8))) { result in answers.withLock { $0.append((try? result.get()) ?? 0) } }
        }
        #expect(answers.withLock { $0 } == [1, 2, 3, 4])  // 64 wait for the stage
        for number in [70] {
            consensus.write(group, Proposal(data: Array("b\(number)=v".utf8))) { result in answers.withLock { $0.append((try? result.get()) ?? 0) } }
        }
        #expect(answers.withLock { $0 } == Array(1...(4 + 65)))
        for run in parked.withLock({ queue in defer { queue = [] }; return queue }) { run() }

        // Work still parked when the group closes is applied and answered by the close.
        consensus.write(group, Proposal(data: Array("k5=v".utf8))) { result in answers.withLock { $0.append((try? result.get()) ?? 0) } }
        #expect(answers.withLock { $0 }.count == 69)
        consensus.close()
        #expect(answers.withLock { $0 } == Array(1...70))
        #expect(machine.state.withLock { $0.appliedIndexes } == Array(1...70))
        for run in parked.withLock({ $0 }) { run() }  // a late run finds nothing to do
        #expect(answers.withLock { $0 }.count == 70)

        // Under `batch` the writer, which waited for the fsync anyway, applies and answers itself.
        let offered = Mutex(0)
        let synced = StandaloneConsensus(directory: try temporaryDirectory("consensus"), syncPolicy: .batch) { _ in
            offered.withLock { $0 += 1 }
            return true
        }
        try synced.createGroup(group, peers: [], stateMachine: Registers())
        #expect(try propose(synced, "k=v").get() == 1)
        #expect(offered.withLock { $0 } == 0)
        synced.close()
    }

    @Test func aRefusedEntryFailsItsWriteAndTheGroupGoesOn() throws {
        let directory = try temporaryDirectory("consensus")
        let consensus = StandaloneConsensus(directory: directory, syncPolicy: .batch)
        let machine = Registers()
        try consensus.createGroup(group, peers: [], stateMachine: machine)
        #expect(try propose(consensus, "a=1").get() == 1)
        guard case .failure(.refused(let why)) = propose(consensus, "a=") else {
            Issue.record("an entry the state machine refuses must fail its write")
            return
        }
        #expect(why.contains("no value"))
        #expect(try propose(consensus, "a=3").get() == 3)
        consensus.close()
        let reopened = StandaloneConsensus(directory: directory, syncPolicy: .batch)
        let replayed = Registers()
        try reopened.createGroup(group, peers: [], stateMachine: replayed)
        #expect(replayed.state.withLock { $0.values } == ["a": "3"])
        reopened.close()
    }

    @Test func aSnapshotCompactsTheLogAndRestartsFromIt() throws {
        let directory = try temporaryDirectory("consensus")
        let consensus = StandaloneConsensus(directory: directory, syncPolicy: .batch)
        let machine = Registers()
        try consensus.createGroup(group, peers: [], stateMachine: machine)
        for number in 1...10 { _ = propose(consensus, "k\(number)=\(number)") }
        #expect(try consensus.snapshot(group) == 10)
        for number in 11...12 { _ = propose(consensus, "k\(number)=\(number)") }
        consensus.close()
        let logDirectory = directory + "/\(group)/log"
        #expect(try FileManager.default.contentsOfDirectory(atPath: logDirectory).sorted() == ["00000000000000000011.wal"])

        let reopened = StandaloneConsensus(directory: directory, syncPolicy: .batch)
        let restored = Registers()
        try reopened.createGroup(group, peers: [], stateMachine: restored)
        #expect(restored.state.withLock { $0.values.count } == 12)
        #expect(restored.state.withLock { $0.appliedIndexes } == [11, 12])  // the rest came from the snapshot
        #expect(try propose(reopened, "k13=13").get() == 13)
        reopened.close()
    }

    @Test func indexesGoOnAfterTheStateMachineReleasedTheWholeLog() throws {
        let directory = try temporaryDirectory("consensus")
        let consensus = StandaloneConsensus(directory: directory, syncPolicy: .batch)
        let machine = Registers()
        try consensus.createGroup(group, peers: [], stateMachine: machine)
        for number in 1...5 { _ = propose(consensus, "k=\(number)") }
        // As a region does after a flush: a new file, then everything before released.
        let retention = try #require(machine.retention.withLock { $0 })
        try retention.checkpoint()
        try retention.release(through: 5)
        consensus.close()
        let reopened = StandaloneConsensus(directory: directory, syncPolicy: .batch)
        try reopened.createGroup(group, peers: [], stateMachine: Registers())
        #expect(try propose(reopened, "k=6").get() == 6)
        reopened.close()
    }

    @Test func aTornLogTailIsCutAndTheEntriesBeforeItKept() throws {
        let directory = try temporaryDirectory("consensus")
        let consensus = StandaloneConsensus(directory: directory, syncPolicy: .always)
        try consensus.createGroup(group, peers: [], stateMachine: Registers())
        for number in 1...3 { _ = propose(consensus, "k\(number)=\(number)") }
        consensus.close()
        let file = directory + "/\(group)/log/00000000000000000001.wal"
        let handle = try #require(FileHandle(forWritingAtPath: file))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data([40, 0, 0, 0, 1, 2, 3]))  // half a record header
        try handle.close()
        let reopened = StandaloneConsensus(directory: directory, syncPolicy: .always)
        let replayed = Registers()
        try reopened.createGroup(group, peers: [], stateMachine: replayed)
        #expect(replayed.state.withLock { $0.appliedIndexes } == [1, 2, 3])
        #expect(try propose(reopened, "k4=4").get() == 4)
        reopened.close()
    }

    @Test func membershipAndGroupErrorsAreClear() throws {
        let directory = try temporaryDirectory("consensus")
        let consensus = StandaloneConsensus(nodeID: 7, directory: directory, syncPolicy: .batch)
        #expect(throws: ConsensusError.unsupported("a standalone group has this node as its only replica; 1 peers were named")) {
            try consensus.createGroup(group, peers: [Peer(id: 8, address: "10.0.0.8:10730")], stateMachine: Registers())
        }
        try consensus.createGroup(group, peers: [Peer(id: 7, address: "")], stateMachine: Registers())
        #expect(throws: ConsensusError.groupExists(group)) { try consensus.createGroup(group, peers: [], stateMachine: Registers()) }
        #expect(consensus.leader(of: group) == 7)
        #expect(consensus.leader(of: GroupID(kind: .schema, number: 3)) == nil)
        #expect(throws: ConsensusError.self) { try consensus.addPeer(group, Peer(id: 8, address: "")) }
        #expect(throws: ConsensusError.self) { try consensus.removePeer(group, 7) }
        try consensus.transferLeader(group, to: 7)
        #expect(throws: ConsensusError.self) { try consensus.transferLeader(group, to: 8) }
        let other = GroupID(kind: .meta, number: 0)
        guard case .failure(.noSuchGroup(other)) = propose(consensus, "a=1", in: other) else {
            Issue.record("a write to a missing group must fail")
            return
        }
        try consensus.deleteGroup(group)
        #expect(!FileManager.default.fileExists(atPath: directory + "/\(group)"))
        #expect(throws: ConsensusError.noSuchGroup(group)) { try consensus.deleteGroup(group) }
        consensus.close()
        guard case .failure(.stopped) = propose(consensus, "a=1") else {
            Issue.record("a closed consensus must refuse writes")
            return
        }
    }
}

/// A node's regions log in one shared log (issue 29 point 2: one fsync per batch for the
/// whole node, however many regions it holds).
@Suite struct SharedLogTests {
    private let first = GroupID(kind: .data, number: 5), second = GroupID(kind: .data, number: 6), later = GroupID(kind: .data, number: 9)

    private func batch(_ consensus: StandaloneConsensus, _ entries: [(GroupID, String)]) -> [Result<UInt64, ConsensusError>] {
        let answers = Mutex<[Int: Result<UInt64, ConsensusError>]>([:])
        consensus.write(batch: entries.enumerated().map { number, entry in
            GroupWrite(group: entry.0, proposal: Proposal(data: Array(entry.1.utf8))) { result in answers.withLock { $0[number] = result } }
        })
        return answers.withLock { answers in entries.indices.map { answers[$0]! } }
    }

    private func logFiles(_ directory: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory + "/shared/log").filter { $0.hasSuffix(".wal") }.sorted()
    }

    @Test func aBatchOverManyGroupsIsOneFsyncAndEachGroupReplaysItsOwnEntries() throws {
        let directory = try temporaryDirectory("shared")
        let consensus = StandaloneConsensus(directory: directory, syncPolicy: .batch)
        let machines = [Registers(), Registers()]
        try consensus.createSharedLogGroup(first, stateMachine: machines[0])
        try consensus.createSharedLogGroup(second, stateMachine: machines[1])
        #expect(throws: ConsensusError.self) { try propose(consensus, "x=early", in: first).get() }  // before the replay
        try consensus.replaySharedLog()
        let syncsBefore = consensus.sharedLogSyncs
        let answers = batch(consensus, [(first, "a=1"), (second, "b=1"), (first, "a=2"), (second, "b=2"), (second, "c=3")])
        #expect(answers.map { try? $0.get() } == [1, 1, 2, 2, 3], "each group numbers its own entries")
        #expect(consensus.sharedLogSyncs == syncsBefore + 1, "one fsync for five entries of two groups")
        #expect(machines[0].state.withLock { $0.values } == ["a": "2"] && machines[1].state.withLock { $0.values } == ["b": "2", "c": "3"])
        consensus.close()

        let reopened = StandaloneConsensus(directory: directory, syncPolicy: .batch)
        let replayed = [Registers(), Registers()]
        try reopened.createSharedLogGroup(second, stateMachine: replayed[1])
        try reopened.createSharedLogGroup(first, stateMachine: replayed[0])
        try reopened.replaySharedLog()
        #expect(replayed[0].state.withLock { $0.appliedIndexes } == [1, 2] && replayed[1].state.withLock { $0.appliedIndexes } == [1, 2, 3])
        #expect(replayed[0].state.withLock { $0.values } == ["a": "2"] && replayed[1].state.withLock { $0.values } == ["b": "2", "c": "3"])
        #expect(try propose(reopened, "a=3", in: first).get() == 3, "numbering goes on after the replayed entries")
        reopened.close()
    }

    @Test func aFileGoesOnceEveryGroupReleasedItsEntriesAndADeletedGroupHoldsNothing() throws {
        let directory = try temporaryDirectory("shared")
        let consensus = StandaloneConsensus(directory: directory, syncPolicy: .always)
        let machines = [Registers(), Registers()]
        try consensus.createSharedLogGroup(first, stateMachine: machines[0])
        try consensus.createSharedLogGroup(second, stateMachine: machines[1])
        try consensus.replaySharedLog()
        _ = batch(consensus, [(first, "a=1"), (second, "b=1")])
        let retention = machines.map { $0.retention.withLock { $0 }! }
        try retention[0].checkpoint()  // a memtable sealed: a new file begins
        _ = batch(consensus, [(first, "a=2")])
        try retention[0].checkpoint()
        #expect(try logFiles(directory).count == 3)
        try retention[0].release(through: 2)
        #expect(try logFiles(directory).count == 3, "the second group still needs the first file")
        try retention[1].release(through: 1)
        #expect(try logFiles(directory).count == 1, "both released: only the current file stays")

        // A group created after the replay starts at once; a deleted one no longer holds the log.
        let third = Registers()
        try consensus.createSharedLogGroup(later, stateMachine: third)
        #expect(try propose(consensus, "z=1", in: later).get() == 1)
        try third.retention.withLock { $0 }!.checkpoint()
        _ = batch(consensus, [(first, "a=3")])
        try retention[0].release(through: 3)
        #expect(try logFiles(directory).count == 2, "the new group's entry holds its file")
        try consensus.deleteGroup(later)
        #expect(try logFiles(directory).count == 1)
        consensus.close()

        // A restart without the deleted group skips its records.
        let reopened = StandaloneConsensus(directory: directory, syncPolicy: .always)
        let replayed = Registers()
        try reopened.createSharedLogGroup(first, stateMachine: replayed)
        try reopened.replaySharedLog()
        #expect(replayed.state.withLock { $0.appliedIndexes } == [3], "entries 1 and 2 went with their released file")
        reopened.close()
    }
}
