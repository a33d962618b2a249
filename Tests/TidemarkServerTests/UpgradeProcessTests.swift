import Foundation
import Logging
import Testing
import TidemarkCluster
import TidemarkCore
import TidemarkStorage
import TidemarkTestSupport
@testable import TidemarkServer

/// A data directory written before the meta group kept databases and users (issue 29) is
/// upgraded in place: its points are read as before, its users sign in, and its databases
/// and partitions are brought into the meta group, so SHOW REGIONS describes them.
@Suite(.serialized) struct UpgradeProcessTests {
    @Test func aDataDirectoryOfTheEarlierLayoutIsUpgradedInPlace() throws {
        let dataDir = try temporaryDirectory("upgrade")
        let logger = Logger(label: "test")
        do {
            // The earlier layout: the region and its group's log, users in <data_dir>/users, no meta/.
            let region = try LocalRegion(dataDir: dataDir, options: EngineOptions(), logger: logger)
            let week: Int64 = 7 * 24 * 3600 * 1000
            try region.write((0..<40).map { PointWrite(path: "root.old.d\($0).s", timestamp: Int64($0 % 2) * week + 5, value: .int64(Int64($0))) })
            region.close()
            let users = try UserStore(directory: dataDir + "/users", logger: logger)
            try users.create(name: "carl", password: "carl-pass-1")
            try users.change("carl", privileges: ["READ_DATA", "READ_SCHEMA"], patterns: ["root.**"], grant: true)
            users.close()
        }
        let node = try NodeProcess(arguments: ["--http-listen", "127.0.0.1:0", "--data-dir", dataDir])
        defer { _ = try? node.stop() }
        let client = try TestHTTPClient(port: node.port)
        let carl = "Basic " + Data("carl:carl-pass-1".utf8).base64EncodedString()
        func sql(_ statement: String, as authorization: String = TestHTTPClient.rootAuthorization) throws -> [String: Any] {
            let body = try JSONSerialization.data(withJSONObject: ["sql": statement])
            let answer = try client.request("POST", "/rest/v2/query", body: Array(body), headers: ["Authorization": authorization])
            return (try JSONSerialization.jsonObject(with: Data(answer.body)) as? [String: Any]) ?? [:]
        }
        #expect((try sql("count timeseries root.old.**", as: carl)["values"] as? [[Int]]) == [[40]], "carl reads the old series")
        func regions() throws -> [[String]] {
            let values = (try sql("show regions")["values"] as? [[Any]]) ?? []
            return values.first.map { first in first.indices.map { row in values.map { "\($0[row])" } } } ?? []
        }
        // Columns: RegionId, Type, Status, Database, SeriesSlotNum, TimeSlotNum, …
        #expect(eventually(within: 30) {
            let data = (try? regions())?.filter { $0[1] == "DataRegion" && $0[3] == "root.old" } ?? []
            let slots = Set((0..<40).map { SeriesSlots.slot(ofDevice: "root.old.d\($0)", slotCount: 1000) })
            return data.map { Int($0[4]) ?? 0 }.reduce(0, +) == slots.count && data.map { Int($0[5]) ?? 0 }.reduce(0, +) == 2 * slots.count
        }, "\(String(describing: try? regions()))")
        // New writes go to the table's regions; the old region stays readable beside them, and
        // a timestamp written again reads as the new value, counted once.
        let rewrite = try client.request("POST", "/rest/v2/nonQuery", body: Array(#"{"sql":"insert into root.old.d0(time, s) values (5, 100), (6, 101)"}"#.utf8))
        #expect(String(decoding: rewrite.body, as: UTF8.self).contains("\"code\":200"))
        let d0 = try sql("select s from root.old.d0")
        #expect(d0["timestamps"] as? [Int] == [5, 6] && d0["values"] as? [[Int]] == [[100, 101]], "\(d0)")
        #expect(try sql("select count(s) from root.old.d0")["values"] as? [[Int]] == [[2]])
        #expect(try sql("select count(s) from root.old.d1")["values"] as? [[Int]] == [[1]], "the old points of other devices are read as before")
        let regionNames = try FileManager.default.contentsOfDirectory(atPath: dataDir + "/regions").sorted()
        #expect(regionNames.first == "0" && regionNames.dropFirst().allSatisfy { $0.hasPrefix("data-") } && regionNames.count >= 2, "\(regionNames)")
        #expect(FileManager.default.fileExists(atPath: dataDir + "/users.previous") && !FileManager.default.fileExists(atPath: dataDir + "/users"))
        // root kept the default password (the earlier store's): said once, by the upgraded store.
        #expect(node.stderr.components(separatedBy: "still has the default password").count == 2, "\(node.stderr)")
    }
}
