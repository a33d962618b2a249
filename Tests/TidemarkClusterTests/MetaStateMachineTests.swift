import Foundation
import Logging
import Synchronization
import Testing
import TidemarkConsensus
import TidemarkIO
import TidemarkTestSupport
@testable import TidemarkCluster

/// The meta state machine under a real (standalone) consensus group: outcomes and refusals
/// reach the proposer, a restart gives the same state (from the checkpoint and the log after
/// it), and a member behind the log takes the state from an image.
@Suite struct MetaStateMachineTests {
    private static let group = GroupID(kind: .meta, number: 0)

    /// A standalone meta group in `directory`.
    private final class Member {
        let consensus: StandaloneConsensus
        let machine: MetaStateMachine

        init(_ directory: String, settings: ClusterSettings = ClusterSettings(), checkpointEntries: UInt64 = 1000) throws {
            machine = try MetaStateMachine(settings: settings, directory: directory + "/meta-state", checkpointEntries: checkpointEntries)
            consensus = try StandaloneConsensus(directory: directory + "/meta-log", syncPolicy: .always, logger: Logger(label: "test"))
            try consensus.createGroup(MetaStateMachineTests.group, peers: [], stateMachine: machine)
        }

        /// Proposes `command` and waits: the apply's outcome, or the state's refusal.
        func propose(_ command: MetaCommand) throws -> Result<MetaState.Outcome, MetaError> {
            let proposal = MetaProposal()
            let done = DispatchSemaphore(value: 0)
            consensus.write(MetaStateMachineTests.group, Proposal(data: command.encoded(), local: proposal)) { _ in done.signal() }
            guard done.wait(timeout: .now() + 10) == .success, let outcome = proposal.outcome else { throw CorruptDataError("no answer") }
            return outcome
        }

        func close() { consensus.close() }
    }

    private func database(_ name: String) -> DatabaseRecord {
        DatabaseRecord(name: name, schemaReplicationFactor: 1, dataReplicationFactor: 1, dataRegionGroupsMin: 2, schemaRegionGroups: 1)
    }

    @Test func outcomesAndRefusalsReachTheProposerAndARestartKeepsTheState() throws {
        let directory = try temporaryDirectory("meta-machine")
        var member = try Member(directory)
        #expect(try member.propose(.registerNode(internalAddress: "127.0.0.1:10730", clientAddress: "127.0.0.1:18080", cores: 2)) == .success(.node(1)))
        #expect(try member.propose(.createDatabase(database("root.a"))) == .success(.done))
        #expect(try member.propose(.createDatabase(database("root.a"))) == .failure(MetaError(code: 501, "root.a: database already exists")))
        #expect(try member.propose(.allocate(database: "root.a", [SlotRequest(slot: 7, timePartitions: [0, 1])])) == .success(.done))
        let before = member.machine.current
        #expect(before.table.version == 4 && before.groups.count == 3)
        member.close()
        member = try Member(directory)
        #expect(member.machine.current == before)
        // And it goes on from there.
        #expect(try member.propose(.registerNode(internalAddress: "127.0.0.2:10730", clientAddress: "c", cores: 2)) == .success(.node(2)))
        member.close()
    }

    @Test func aCheckpointLetsTheLogGoAndARestartReplaysOnlyWhatFollows() throws {
        let directory = try temporaryDirectory("meta-checkpoint")
        var member = try Member(directory, checkpointEntries: 5)
        _ = try member.propose(.registerNode(internalAddress: "127.0.0.1:10730", clientAddress: "c", cores: 8))
        _ = try member.propose(.createDatabase(database("root.a")))
        for slot in 0..<10 { _ = try member.propose(.allocate(database: "root.a", [SlotRequest(slot: slot, timePartitions: [0])])) }
        #expect(FileManager.default.fileExists(atPath: directory + "/meta-state/meta.snapshot"))
        #expect(member.machine.persistedIndexMax >= 10)
        let before = member.machine.current
        member.close()
        member = try Member(directory, checkpointEntries: 5)
        #expect(member.machine.current == before)
        #expect(member.machine.current.table.dataSlots["root.a"]?.count == 10)
        member.close()
        // The cluster's fixed settings are the checkpoint's: another slot count is refused.
        var other = ClusterSettings()
        other.seriesSlotCount = 10_000
        do {
            _ = try Member(directory, settings: other)
            Issue.record("a node with other fixed settings opened the meta state")
        } catch {
            #expect(error as? FixedSettingMismatch == FixedSettingMismatch(key: "series_slot_num", cluster: "1000", config: "10000",
                                                                           source: directory + "/meta-state/meta.snapshot"), "\(error)")
        }
    }

    @Test func aMemberBehindTakesTheStateFromAnImage() throws {
        let leader = try Member(try temporaryDirectory("meta-image-leader"))
        _ = try leader.propose(.registerNode(internalAddress: "127.0.0.1:10730", clientAddress: "c", cores: 4))
        _ = try leader.propose(.createDatabase(database("root.a")))
        let index = leader.machine.appliedIndex
        let image = try leader.machine.openImage(for: StateSnapshot(index: index, term: 1, data: []), bytesMax: 1 << 20)
        let bytes = try image.read(max: image.byteCount)
        #expect(throws: (any Error).self) { try leader.machine.openImage(for: StateSnapshot(index: index + 1, term: 1, data: []), bytesMax: 1 << 20) }

        let directory = try temporaryDirectory("meta-image-follower")
        let follower = try MetaStateMachine(settings: ClusterSettings(), directory: directory)
        try follower.restore(StateSnapshot(index: index, term: 1, data: bytes))
        #expect(follower.current == leader.machine.current && follower.appliedIndex == index)
        // Kept: reopened, the member starts from the installed state.
        #expect(try MetaStateMachine(settings: ClusterSettings(), directory: directory).current == leader.machine.current)
        // A damaged image changes nothing.
        var damaged = bytes
        damaged[damaged.count - 9] ^= 1
        let fresh = try MetaStateMachine(settings: ClusterSettings(), directory: try temporaryDirectory("meta-image-damaged"))
        #expect(throws: (any Error).self) { try fresh.restore(StateSnapshot(index: index, term: 1, data: damaged)) }
        #expect(fresh.current == MetaState(settings: ClusterSettings()))
        leader.close()
    }
}
