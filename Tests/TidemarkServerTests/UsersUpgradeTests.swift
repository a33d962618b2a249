import Foundation
import Logging
import Testing
import TidemarkTestSupport
@testable import TidemarkServer

/// Users moved from `<data_dir>/users` (numbered by the data group's log) to
/// `<data_dir>/meta/users` beside the meta state (issue 29): a data directory of the
/// earlier version is upgraded in place, once, and never read the old way again.
@Suite struct UsersUpgradeTests {
    @Test func anEarlierVersionsUsersAreCopiedOnceAndTheOldLogSetAside() throws {
        let dataDir = try temporaryDirectory("users-upgrade")
        let logger = Logger(label: "test")
        do {
            let previous = try UserStore(directory: dataDir + "/users", logger: logger)
            try previous.create(name: "alice", password: "alice123")
            try previous.setPassword("root", "changed1")
            previous.close()
        }
        let users = try UserStore.open(dataDir: dataDir, logger: logger, health: nil)
        #expect(users.list() == ["alice", "root"])
        #expect(users.verify(header: "x", name: "root", password: "changed1") && !users.verify(header: "y", name: "root", password: "root"))
        #expect(users.appliedIndex == 0, "copied before every meta entry")
        users.close()
        #expect(!FileManager.default.fileExists(atPath: dataDir + "/users") && FileManager.default.fileExists(atPath: dataDir + "/users.previous"))
        #expect(!FileManager.default.fileExists(atPath: dataDir + "/meta/users.upgrading"))

        // The next start reads the new log only; a meta entry then applies after the copied users.
        let again = try UserStore.open(dataDir: dataDir, logger: logger, health: nil)
        defer { again.close() }
        #expect(again.list() == ["alice", "root"])
        try again.apply(index: 1, record: [UserStore.entryKind] + UserStore.encode(.init(name: "alice", salt: [], hash: [], rounds: 0, grants: [:]), index: 0))
        #expect(again.list() == ["root"])
    }
}
