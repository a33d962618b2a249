import Foundation
import Testing
import TidemarkTestSupport

/// A one-node cluster holds every region the partition table places, through the same code
/// as a larger cluster (issue 29 point 2): each data region group is its own engine and log,
/// a write is split over them, reads see them as one, restarts and kill -9 keep them, and a
/// dropped database takes its regions' files with it.
@Suite(.serialized) struct OneNodeRegionsProcessTests {
    private func sql(_ client: TestHTTPClient, _ statement: String, query: Bool = true) throws -> [String: Any] {
        let body = try JSONSerialization.data(withJSONObject: ["sql": statement])
        let answer = try client.request("POST", query ? "/rest/v2/query" : "/rest/v2/nonQuery", body: Array(body))
        return (try JSONSerialization.jsonObject(with: Data(answer.body)) as? [String: Any]) ?? [:]
    }

    /// Region directories of `dataDir` (data-N), sorted.
    private func regionDirectories(_ dataDir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dataDir + "/regions")) ?? []).filter { $0.hasPrefix("data-") }.sorted()
    }

    /// The data regions of `database` in SHOW REGIONS: id, series slots, time slots.
    private func dataRegions(_ client: TestHTTPClient, _ database: String) throws -> [(id: Int, slots: Int, timeSlots: Int)] {
        let values = (try sql(client, "show regions")["values"] as? [[Any]]) ?? []
        guard let ids = values.first else { return [] }
        return ids.indices.filter { "\(values[1][$0])" == "DataRegion" && "\(values[3][$0])" == database }
            .map { (Int("\(values[0][$0])") ?? -1, Int("\(values[4][$0])") ?? -1, Int("\(values[5][$0])") ?? -1) }
    }

    private func total(_ client: TestHTTPClient, _ pattern: String) throws -> Int {
        let values = (try sql(client, "select count(v) from \(pattern)")["values"] as? [[Int]]) ?? []
        return values.reduce(0) { $0 + ($1.first ?? 0) }
    }

    @Test func aDatabaseSpreadOverThreeRegionsIsWrittenReadRestartedAndDropped() throws {
        let dataDir = try temporaryDirectory("regions")
        var node = try NodeProcess(arguments: ["--http-listen", "127.0.0.1:0", "--data-dir", dataDir])
        var client = try TestHTTPClient(port: node.port)
        #expect(try sql(client, "create database root.m with data_region_group_num=3", query: false)["code"] as? Int == 200)
        #expect(regionDirectories(dataDir).count == 3, "the regions open when the database is made: \(regionDirectories(dataDir))")
        // 60 devices, 3 weeks each, one line protocol request.
        let week: Int64 = 7 * 24 * 3600 * 1000
        let lines = (0..<60).flatMap { device in (0..<3).map { "s,dev=d\(device) v=\(device * 10 + $0)i \(Int64($0) * week + Int64(device))" } }
        let write = try client.request("POST", "/write?db=m&precision=ms", body: Array(lines.joined(separator: "\n").utf8))
        #expect(write.status == 204)
        let regions = try dataRegions(client, "root.m")
        #expect(regions.count == 3 && regions.allSatisfy { $0.slots > 0 }, "\(regions)")
        let timeSlots: Int = regions.map(\.timeSlots).reduce(0, +), slots: Int = regions.map(\.slots).reduce(0, +)
        #expect(timeSlots == 3 * slots)
        #expect(try total(client, "root.m.**") == 180)
        let d7 = try sql(client, "select sum(v), first_value(v), last_value(v) from root.m.s.d7")["values"] as? [[Double]]
        #expect(d7 == [[213], [70], [72]])
        // The regions' entries are in the node's one shared log (one fsync per batch), none in a log of their own.
        let sharedLog = (try? FileManager.default.contentsOfDirectory(atPath: dataDir + "/consensus/shared/log")) ?? []
        #expect(sharedLog.contains { $0.hasSuffix(".wal") }, "\(sharedLog)")
        #expect(regionDirectories(dataDir).allSatisfy { !FileManager.default.fileExists(atPath: dataDir + "/consensus/" + $0 + "/log") })
        let metrics = try client.request("GET", "/metrics").text
        #expect(metrics.contains("\ntidemark_regions 3\n") && metrics.contains("\ntidemark_regions_leading 3\n"), "\(metrics)")
        #expect(metrics.range(of: #"\ntidemark_shared_log_fsyncs_total [1-9]"#, options: .regularExpression) != nil)

        // kill -9 and restart: every acknowledged point is there, in the same regions.
        _ = try node.stop(signal: SIGKILL)
        node = try NodeProcess(arguments: ["--http-listen", "127.0.0.1:0", "--data-dir", dataDir])
        client = try TestHTTPClient(port: node.port)
        #expect(try total(client, "root.m.**") == 180)
        #expect(try dataRegions(client, "root.m").map(\.id) == regions.map(\.id))
        // More of the same series after the restart, and a flush: still one answer per series.
        #expect(try client.request("POST", "/write?db=m&precision=ms", body: Array("s,dev=d7 v=1i \(3 * week + 7)".utf8)).status == 204)
        #expect(try sql(client, "flush", query: false)["code"] as? Int == 200)
        #expect(try total(client, "root.m.s.d7") == 4)
        // Heartbeats report each region's segment bytes to the meta leader (SHOW REGIONS' TsFileSize).
        func sizes() throws -> [Int] {
            let values = (try sql(client, "show regions")["values"] as? [[Any]]) ?? []
            guard values.count == 12 else { return [] }
            return values[0].indices.filter { "\(values[1][$0])" == "DataRegion" && "\(values[3][$0])" == "root.m" }.map { values[11][$0] as? Int ?? -1 }
        }
        #expect(eventually(within: 10) { (try? sizes()).map { $0.count == 3 && $0.allSatisfy { $0 > 0 } } ?? false }, "\(String(describing: try? sizes()))")

        #expect(try sql(client, "drop database root.m", query: false)["code"] as? Int == 200)
        #expect(regionDirectories(dataDir).isEmpty, "a dropped database's regions are removed: \(regionDirectories(dataDir))")
        #expect(try dataRegions(client, "root.m").isEmpty)
        #expect((try sql(client, "show databases")["values"] as? [[String]]) == [[]])
        _ = try node.stop()
    }

    /// A node started with `failpoint`, given data by `prepare`, dies (the failpoint, right
    /// after the operation's start is recorded) running `statement`; it is started again and
    /// waited for until no operation is in flight. Returns it, its client and its data directory.
    private func crashMidOperation(failpoint: String, prepare: (TestHTTPClient) throws -> Void, statement: String,
                                   afterCrash: (String) -> Void = { _ in }) throws -> (NodeProcess, TestHTTPClient, String) {
        let dataDir = try temporaryDirectory("regions")
        let crashing = try NodeProcess(arguments: ["--http-listen", "127.0.0.1:0", "--data-dir", dataDir],
                                       environment: ["TIDEMARK_FAILPOINTS": failpoint])
        try prepare(try TestHTTPClient(port: crashing.port))
        _ = try? sql(try TestHTTPClient(port: crashing.port), statement, query: false)
        #expect(crashing.waitForExit() == 86, "\(crashing.stderr)")
        afterCrash(dataDir)
        let node = try NodeProcess(arguments: ["--http-listen", "127.0.0.1:0", "--data-dir", dataDir])
        let client = try TestHTTPClient(port: node.port)
        #expect(eventually(within: 30) { ((try? client.request("GET", "/cluster").text) ?? "").contains("\"operations\":[]") },
                "\(statement) was resumed to its end")
        return (node, client, dataDir)
    }

    /// A database of three regions with 30 devices written by `lines` (device number to lines).
    private func threeRegions(_ client: TestHTTPClient, _ lines: (Int) -> [String]) throws {
        #expect(try sql(client, "create database root.m with data_region_group_num=3", query: false)["code"] as? Int == 200)
        #expect(try client.request("POST", "/write?db=m&precision=ms", body: Array((0..<30).flatMap(lines).joined(separator: "\n").utf8)).status == 204)
    }

    /// DESIGN.md section 3: a node restarting with a started but unfinished metadata operation
    /// finishes it.
    @Test func aDropDatabaseCutShortByACrashIsFinishedAtTheNextStart() throws {
        let (node, client, dataDir) = try crashMidOperation(failpoint: "drop-database-after-begin", prepare: { (client: TestHTTPClient) throws in
            #expect(try client.request("POST", "/write?db=gone&precision=ms", body: Array("s,dev=a v=1i 1\ns,dev=b v=2i 2".utf8)).status == 204)
            #expect(try client.request("POST", "/write?db=kept&precision=ms", body: Array("s,dev=a v=1i 1".utf8)).status == 204)
        }, statement: "drop database root.gone", afterCrash: { dataDir in
            #expect(regionDirectories(dataDir).count == 2, "the crash came before any region was removed")
        })
        defer { _ = try? node.stop() }
        #expect((try sql(client, "show databases")["values"] as? [[String]]) == [["root.kept"]])
        #expect(regionDirectories(dataDir).count == 1, "the dropped database's region is removed: \(regionDirectories(dataDir))")
        #expect(try total(client, "root.kept.**") == 1)
        // The database can be made and written again, and holds only what was written since.
        #expect(try client.request("POST", "/write?db=gone&precision=ms", body: Array("s,dev=c v=3i 3".utf8)).status == 204)
        #expect(try total(client, "root.gone.**") == 1)
    }

    /// The same for DELETE TIMESERIES over a database of three regions: the series go from every region.
    @Test func aDeleteTimeseriesCutShortByACrashIsFinishedAtTheNextStart() throws {
        let (node, client, _) = try crashMidOperation(failpoint: "delete-timeseries-after-begin", prepare: { (client: TestHTTPClient) throws in
            try threeRegions(client) { ["s,dev=d\($0) v=\($0)i,w=1i \($0)"] }
        }, statement: "delete timeseries root.m.s.*.v")
        defer { _ = try? node.stop() }
        let left = ((try sql(client, "show timeseries root.m.**")["values"] as? [[Any]])?.first ?? []).map { "\($0)" }
        #expect(left.count == 30 && left.allSatisfy { $0.hasSuffix(".w") }, "only the w series are left: \(left)")
        #expect(try client.request("POST", "/write?db=m&precision=ms", body: Array("s,dev=d1 v=5i 100".utf8)).status == 204)
        #expect(try total(client, "root.m.s.d1") == 1, "written again after the delete, it holds only the new point")
    }

    /// And for DELETE FROM … WHERE time: the points in the range go from every region, the others stay.
    @Test func aDeleteOfPointsCutShortByACrashIsFinishedAtTheNextStart() throws {
        let (node, client, _) = try crashMidOperation(failpoint: "delete-data-after-begin", prepare: { (client: TestHTTPClient) throws in
            try threeRegions(client) { device in [1, 2, 3, 4].map { "s,dev=d\(device) v=\($0)i \($0)" } }
        }, statement: "delete from root.m.** where time <= 2")
        defer { _ = try? node.stop() }
        #expect(try total(client, "root.m.**") == 60, "times 3 and 4 of the 30 devices are left")
        #expect(try total(client, "root.m.s.d7") == 2)
    }

    @Test func createTimeseriesOutsideEveryDatabaseMakesTheDatabaseAndItsRegion() throws {
        let dataDir = try temporaryDirectory("regions")
        let node = try NodeProcess(arguments: ["--http-listen", "127.0.0.1:0", "--data-dir", dataDir])
        defer { _ = try? node.stop() }
        let client = try TestHTTPClient(port: node.port)
        #expect(try sql(client, "create timeseries root.q.d.s with datatype=INT32", query: false)["code"] as? Int == 200)
        #expect(try dataRegions(client, "root.q").count == 1)
        #expect(try sql(client, "insert into root.q.d(time, s) values (1, 5)", query: false)["code"] as? Int == 200)
        let shown = ((try sql(client, "show timeseries root.q.**")["values"] as? [[Any]]) ?? []).map { $0.map { "\($0)" } }
        #expect(shown.count > 3 && shown[0] == ["root.q.d.s"] && shown[3] == ["INT32"], "\(shown)")
    }
}
