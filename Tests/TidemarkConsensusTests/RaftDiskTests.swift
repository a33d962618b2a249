import TidemarkIO
import Foundation
import Testing
import TidemarkConsensus
import TidemarkStorage
import TidemarkTestSupport

private let groupA = GroupID(kind: .data, number: 1)
private let groupB = GroupID(kind: .schema, number: 2)

private func entries(_ range: ClosedRange<UInt64>, term: UInt64, tag: String = "") -> [RaftEntry] {
    range.map { RaftEntry(index: $0, term: term, data: Array("\(tag)\($0)".utf8)) }
}

private func ready(hardState: HardState? = nil, entries: [RaftEntry] = [], snapshot: RaftSnapshot? = nil) -> RaftReady {
    var ready = RaftReady()
    ready.hardState = hardState
    ready.entries = entries
    ready.snapshot = snapshot
    return ready
}

@Suite struct RaftDiskTests {
    /// The Raft log is a `FileWAL`: a record damaged with good records after it refuses
    /// recovery (file and offset named) instead of cutting entries, votes and terms.
    @Test func aRecordDamagedInTheMiddleRefusesRecoveryAndCutsNothing() throws {
        let directory = try temporaryDirectory("raftdisk")
        let disk = try RaftDisk(directory: directory)
        _ = try disk.recover()
        for index in UInt64(1)...4 {
            try disk.write([(groupA, ready(hardState: HardState(term: 1, vote: 1, commit: index - 1), entries: entries(index...index, term: 1)))])
        }
        disk.close()
        let name = try #require(try FileManager.default.contentsOfDirectory(atPath: directory).first { $0.hasSuffix(".wal") })
        let path = directory + "/" + name
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[LogScan.recordHeaderBytes + 2] ^= 0x08  // inside the first record's payload
        try bytes.write(to: URL(fileURLWithPath: path))
        let error = try #require(throws: LogDamageError.self) { try RaftDisk(directory: directory).recover() }
        #expect(error.path == path && error.offset == 0 && error.followingOffset != nil)
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == bytes)
    }

    @Test func groupsRecoverTheirHardStateSnapshotAndEntries() throws {
        let directory = try temporaryDirectory("raftdisk")
        let disk = try RaftDisk(directory: directory)
        #expect(try disk.recover().isEmpty)
        let syncsBefore = disk.syncs
        // One batch for two groups: one append, one fsync.
        try disk.write([(groupA, ready(hardState: HardState(term: 1, vote: 1, commit: 0), entries: entries(1...5, term: 1))),
                        (groupB, ready(hardState: HardState(term: 3, vote: 2, commit: 2), entries: entries(1...3, term: 3)))])
        #expect(disk.syncs == syncsBefore + 1)
        // Only the commit index moved: written, not synced (it is learned again from the leader).
        try disk.write([(groupB, ready(hardState: HardState(term: 3, vote: 2, commit: 3)))])
        #expect(disk.syncs == syncsBefore + 1)
        // A vote must be durable before it is sent.
        try disk.write([(groupB, ready(hardState: HardState(term: 3, vote: 2, commit: 2)))])
        try disk.write([(groupB, ready(hardState: HardState(term: 4, vote: 1, commit: 2)))])
        #expect(disk.syncs == syncsBefore + 2)
        // A new leader's entries replace group A's from index 4 on.
        try disk.write([(groupA, ready(hardState: HardState(term: 2, vote: 2, commit: 3), entries: entries(4...6, term: 2, tag: "new")))])
        // Group B installs a snapshot from its leader: its log is replaced.
        let snapshot = RaftSnapshot(index: 10, term: 4, membership: RaftMembership(voters: [1, 2, 3], learners: [4]), data: [1, 2, 3])
        try disk.write([(groupB, ready(hardState: HardState(term: 4, vote: 0, commit: 10), snapshot: snapshot))])
        disk.close()

        let reopened = try RaftDisk(directory: directory)
        let states = try reopened.recover()
        #expect(states[groupA] == RaftDiskState(hardState: HardState(term: 2, vote: 2, commit: 3),
                                               entries: entries(1...3, term: 1) + entries(4...6, term: 2, tag: "new")))
        #expect(states[groupB] == RaftDiskState(hardState: HardState(term: 4, vote: 0, commit: 10), snapshot: snapshot))
        #expect(reopened.syncs == 0)
        reopened.close()
    }

    @Test func compactionAndRotationDropOldFilesButKeepEveryGroup() throws {
        let directory = try temporaryDirectory("raftdisk")
        let disk = try RaftDisk(directory: directory, segmentBytesMax: 2048)
        _ = try disk.recover()
        // Group B writes once and stays idle: its hard state must survive the rotations.
        try disk.write([(groupB, ready(hardState: HardState(term: 7, vote: 7, commit: 0)))])
        var last: UInt64 = 0
        for round in 0..<40 {
            let batch = entries((last + 1)...(last + 5), term: 1, tag: String(repeating: "x", count: 40))
            last += 5
            try disk.write([(groupA, ready(hardState: HardState(term: 1, vote: 1, commit: last), entries: batch))])
            if round % 10 == 9 {
                try disk.compact(groupA, snapshot: RaftSnapshot(index: last - 2, term: 1, membership: RaftMembership(voters: [1]), data: []))
            }
        }
        let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".wal") }
        #expect(!files.contains("00000000000000000001.wal"), "the first file should go once compacted")
        #expect(files.count <= 4, "old files should go once compacted: \(files.count) left")
        disk.close()
        let states = try RaftDisk(directory: directory).recover()
        #expect(states[groupA]?.snapshot?.index == 198)
        #expect(states[groupA]?.entries.map(\.index) == [199, 200])
        #expect(states[groupA]?.hardState.commit == 200)
        #expect(states[groupB]?.hardState == HardState(term: 7, vote: 7, commit: 0))
    }

    @Test func aTornTailIsCutAtRecovery() throws {
        let directory = try temporaryDirectory("raftdisk")
        let disk = try RaftDisk(directory: directory)
        _ = try disk.recover()
        try disk.write([(groupA, ready(hardState: HardState(term: 1, vote: 1, commit: 1), entries: entries(1...2, term: 1)))])
        disk.close()
        let file = try #require(try FileManager.default.contentsOfDirectory(atPath: directory).first { $0.hasSuffix(".wal") })
        let handle = try #require(FileHandle(forWritingAtPath: directory + "/" + file))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data([200, 0, 0, 0, 9, 9, 9, 9, 1]))  // half a record
        try handle.close()
        let reopened = try RaftDisk(directory: directory)
        #expect(try reopened.recover()[groupA]?.entries == entries(1...2, term: 1))
        try reopened.write([(groupA, ready(entries: entries(3...3, term: 1)))])
        reopened.close()
        #expect(try RaftDisk(directory: directory).recover()[groupA]?.entries == entries(1...3, term: 1))
    }
}
