import Foundation
import Testing
import TidemarkTestSupport
@testable import TidemarkIO
@testable import TidemarkStorage

@Suite struct LogRepairTests {
    /// Review of `--repair`, LOW: a copy that failed part way (a full disk) was left in the
    /// quarantine directory, to be listed as a quarantined log. Now the partial copy is
    /// removed and the repair throws before anything is cut; with space again it goes through.
    @Test(.enabled(if: Tmpfs.available)) func aCopyThatFailsForSpaceLeavesNoCopyAndCutsNothing() throws {
        let disk = try Tmpfs(label: "repair", sizeBytes: 8 << 20)
        defer { disk.unmount() }
        let directory = disk.path + "/log"
        let aside = disk.path + "/quarantine/logs/log"
        let wal = try FileWAL(directory: directory, policy: .always)
        _ = try wal.replay { _, _ in }
        _ = try wal.append((0..<8).map { [UInt8](repeating: UInt8($0), count: 256 << 10) })  // 2 MiB in 8 records
        wal.close()
        let path = directory + "/" + (try #require(try FileManager.default.contentsOfDirectory(atPath: directory).first { $0.hasSuffix(".wal") }))
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[LogScan.recordHeaderBytes + 10] ^= 0x40  // record 1 of 8
        try bytes.write(to: URL(fileURLWithPath: path))

        let filler = try disk.fill(leaveBytes: 512 << 10)  // room for a quarter of the copy
        let error = try #require(throws: StorageIOError.self) { try FileWAL.repair(directory: directory, asideDirectory: aside) }
        #expect(error.code == ENOSPC)
        #expect(try FileManager.default.contentsOfDirectory(atPath: aside).isEmpty, "a partial copy was left")
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == bytes, "the log was cut though its copy failed")

        try FileManager.default.removeItem(atPath: filler)
        let actions = try FileWAL.repair(directory: directory, asideDirectory: aside)
        #expect(actions.map(\.cutAt) == [0])
        #expect(try Data(contentsOf: URL(fileURLWithPath: aside + "/" + URL(fileURLWithPath: path).lastPathComponent)) == bytes)
    }

    /// Every directory the repair makes is synced with its parent; this checks the chain is
    /// made and reported outermost first (fsync itself cannot be observed here).
    @Test func makeDirectoryReportsWhatItMade() throws {
        let root = try temporaryDirectory("dirs")
        #expect(try FileIO.makeDirectory(root + "/a/b/c") == [root + "/a", root + "/a/b", root + "/a/b/c"])
        #expect(try FileIO.makeDirectory(root + "/a/b/c").isEmpty)
        try FileIO.makeDirectoryDurably(root + "/a/x/y")
        #expect(FileIO.exists(root + "/a/x/y"))
        #expect(FileIO.parent(of: "/top") == "/" && FileIO.parent(of: "./a/b") == "./a")
    }
}
