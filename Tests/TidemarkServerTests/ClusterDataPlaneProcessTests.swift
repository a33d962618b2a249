import Foundation
import Synchronization
import Testing
import TidemarkTestSupport

/// Issue 30 on real processes: any node coordinates. Rows written through every node of a
/// cluster land in the region groups the partition table places them in, spread over the
/// nodes, and every query answers the same through every node as a single node holding the
/// same data does.
@Suite(.serialized) struct ClusterDataPlaneProcessTests {
    /// One hour per time partition: the workload's three hours touch three partitions.
    static let fixed = "time_partition_interval_ms: 3600000"
    static let startMs: Int64 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000

    /// 30 devices × 2 fields × 36 timestamps (every 5 minutes for 3 hours), as line-protocol
    /// requests of one device each, so the requests can go to different nodes.
    static func requests() -> [String] {
        (0..<30).map { device in
            (0..<36).map { step in
                let time = startMs + Int64(step) * 300_000
                return "cpu,host=h\(device) v=\(device * 100 + step)i,load=\(Double(step) / 4 + Double(device)) \(time)"
            }.joined(separator: "\n")
        }
    }

    /// The statements every node must answer alike (raw, filters, every aggregate, GROUP BY
    /// with FILL, ALIGN BY DEVICE, LAST, SHOW and COUNT).
    static var statements: [String] {
        let end = startMs + 3 * 3_600_000
        return [
            "select v from root.dp.cpu.h3",
            "select v, load from root.dp.cpu.h7 where time >= \(startMs + 3_600_000) and v > 720",
            "select v from root.dp.** where time < \(startMs + 600_000)",
            "select count(v), sum(v), avg(load), min_value(v), max_value(load), first_value(v), last_value(load), min_time(v), max_time(v) from root.dp.**",
            "select count(v) from root.dp.cpu.* where time >= \(startMs + 1_800_000) and time < \(startMs + 9_000_000)",
            "select max_value(v), count(load) from root.dp.cpu.h1, root.dp.cpu.h22 group by ([\(startMs), \(end)), 20m)",
            "select last_value(v) from root.dp.cpu.h5 group by ([\(startMs - 3_600_000), \(end)), 1h) fill(previous)",
            "select v from root.dp.cpu.* where time = \(startMs + 300_000) align by device",
            "select last v from root.dp.**",
            "select v from root.dp.** limit 5 offset 10",
            "show timeseries root.dp.**",
            "show devices",
            "count timeseries root.**",
            "show databases",
        ]
    }

    /// The answer to `statement` at `port` (its HTTP status and body as text).
    static func answer(_ statement: String, port: Int) -> String {
        let query = ["select", "show", "count"].contains { statement.lowercased().hasPrefix($0) }
        let body = try! JSONSerialization.data(withJSONObject: ["sql": statement, "row_limit": 100_000])
        guard let client = try? TestHTTPClient(port: port, timeoutSeconds: 20),
              let response = try? client.request("POST", query ? "/rest/v2/query" : "/rest/v2/nonQuery", body: Array(body),
                                                  headers: ["Content-Type": "application/json", "Authorization": TestHTTPClient.rootAuthorization])
        else { return "unreachable" }
        return "\(response.status) \(response.text)"
    }

    @Test func fiveNodesAnswerEveryQueryAsOneNodeDoesThroughEveryNode() throws {
        let cluster = try TestCluster(count: 5, metaCount: 3, dataLayout: "data_region_groups_per_database: 5", extraConfig: Self.fixed)
        defer { cluster.stopAll() }
        let directory = try temporaryDirectory("dp-single")
        let config = directory + "/single.yaml"
        try "http: {listen: \"127.0.0.1:0\"}\nlog_level: warning\n\(Self.fixed)\n".write(toFile: config, atomically: true, encoding: .utf8)
        let single = try NodeProcess(launching: ["--config", config, "--data-dir", directory + "/data"])
        defer { _ = try? single.stop() }
        try single.waitUntilReady()

        // The same requests: to the single node, and round-robin over the cluster's nodes.
        for (index, request) in Self.requests().enumerated() {
            let singleClient = try TestHTTPClient(port: single.port)
            #expect(try singleClient.request("POST", "/write?db=dp&precision=ms", body: Array(request.utf8)).status == 204)
            var status: Int?
            let client = try TestHTTPClient(port: cluster.nodes[index % 5]!.port, timeoutSeconds: 20)
            #expect(eventually(within: 30) {
                status = (try? client.request("POST", "/write?db=dp&precision=ms", body: Array(request.utf8)))?.status ?? -1
                return status == 204
            }, "request \(index) at node \(index % 5 + 1): \(String(describing: status))")
        }
        // The rows are spread: the database's five groups are led on several nodes, and the
        // coordinators sent parts to them.
        let sent = (0..<5).compactMap { cluster.metric("tidemark_route_parts_sent_total", at: $0) }.reduce(0, +)
        let received = (0..<5).compactMap { cluster.metric("tidemark_route_parts_received_total", at: $0) }.reduce(0, +)
        #expect(sent > 0 && received > 0, "no write part crossed nodes: sent \(sent), received \(received)")
        let holders = (0..<5).filter { (cluster.metric("tidemark_regions_leading", at: $0) ?? 0) > 0 }
        #expect(holders.count >= 3, "regions lead on \(holders.count) nodes")

        for statement in Self.statements {
            let expected = Self.answer(statement, port: single.port)
            #expect(expected.hasPrefix("200 ") && !expected.contains("\"code\":"), "\(statement) at the single node: \(expected)")
            for index in 0..<5 {
                #expect(Self.answer(statement, port: cluster.nodes[index]!.port) == expected, "\(statement) at node \(index + 1)")
            }
        }
        #expect((0..<5).compactMap { cluster.metric("tidemark_route_fragments_received_total", at: $0) }.reduce(0, +) > 0)

        // A delete through one node, a series created through another: the same everywhere.
        for (port, via) in [(single.port, "single"), (cluster.nodes[3]!.port, "node 4")] {
            #expect(Self.answer("delete from root.dp.cpu.* where time < \(Self.startMs + 3_600_000)", port: port).contains("SUCCESS_STATUS"), "\(via)")
        }
        for (port, via) in [(single.port, "single"), (cluster.nodes[1]!.port, "node 2")] {
            #expect(Self.answer("create timeseries root.dp.cpu.h0.extra with datatype=INT32, encoding=RLE", port: port).contains("SUCCESS_STATUS"), "\(via)")
        }
        for statement in Self.statements {
            let expected = Self.answer(statement, port: single.port)
            for index in 0..<5 {
                #expect(Self.answer(statement, port: cluster.nodes[index]!.port) == expected, "after the delete: \(statement) at node \(index + 1)")
            }
        }
    }

    /// Two coordinators create one series with two types at once: the series' region group
    /// (its slot's, whatever the time partition) takes one type, on every node, and the other
    /// coordinator's points are refused as a type conflict. A series created with a declared
    /// type keeps it through a failover of its group.
    @Test func oneSeriesHasOneTypeWhateverTheRaceAndThroughAFailover() throws {
        let cluster = try TestCluster()
        defer { cluster.stopAll() }
        #expect(cluster.sql("create database root.race", at: 0)?.json["code"] as? Int == 200)
        // Two nodes write the same series at once, one an integer, the other a double, in
        // different time partitions (a week apart).
        @Sendable func write(_ line: String, port: Int) -> Int? {
            guard let client = try? TestHTTPClient(port: port, timeoutSeconds: 20) else { return nil }
            return try? client.request("POST", "/write?db=race&precision=ms", body: Array(line.utf8)).status
        }
        let ports = [cluster.nodes[1]!.port, cluster.nodes[2]!.port]
        let results = Mutex<[Int: Int]>([:])
        let both = DispatchGroup()
        for (index, line) in ["d v=1i 1000", "d v=1.5 \(8 * 24 * 3_600_000)"].enumerated() {
            DispatchQueue.global().async(group: both) {
                var status: Int?
                _ = eventually(within: 30) {
                    status = write(line, port: ports[index])
                    return status == 204 || status == 400
                }
                if let status { results.withLock { $0[index] = status } }
            }
        }
        #expect(both.wait(timeout: .now() + 60) == .success)
        let statuses = results.withLock { [$0[0], $0[1]] }
        #expect(Set(statuses.compactMap { $0 }) == [204, 400], "one type won, the other's point was refused: \(statuses)")
        let winner = statuses[0] == 204 ? "INT64" : "DOUBLE"
        for index in 0..<3 {
            #expect(cluster.column("show timeseries root.race.d.v", "dataType", at: index) == [winner], "node \(index + 1)")
            #expect(eventually { cluster.column("show timeseries root.race.d.v", "dataType", at: index, weak: true) == [winner] },
                    "node \(index + 1)'s replica (it applies the entry a moment after the leader)")
        }

        // A declared type that inference would not pick, then the group's leader dies.
        #expect(cluster.sql("create timeseries root.race.t.s with datatype=FLOAT, encoding=GORILLA", at: 2)?.json["code"] as? Int == 200)
        #expect(eventually { cluster.leader(of: "root.race") != nil })
        let leader = try #require(cluster.leader(of: "root.race"))
        #expect(try cluster.nodes[leader]!.stop(signal: SIGKILL) == SIGKILL)
        cluster.nodes[leader] = nil
        let other = (leader + 1) % 3
        // Line protocol's 2.5 is a DOUBLE, which the FLOAT series refuses; SQL's literal takes the series' type.
        #expect(eventually(within: 30) { write("t s=2.5 5000", port: cluster.nodes[other]!.port) == 400 }, "the DOUBLE is refused")
        var answer: (status: Int, json: [String: Any])?
        #expect(eventually(within: 30) {
            answer = cluster.sql("insert into root.race.t(time, s) values (5000, 2.5)", at: other)
            return answer?.json["code"] as? Int == 200
        }, "the insert after the failover: \(String(describing: answer))")
        try cluster.start(leader)
        for index in 0..<3 {
            #expect(eventually { cluster.column("show timeseries root.race.t.s", "dataType", at: index, weak: true) == ["FLOAT"] }, "node \(index + 1)")
            #expect(eventually { cluster.sql("select s from root.race.t", at: index)?.json["values"] as? [[Double]] == [[2.5]] },
                    "node \(index + 1): \(String(describing: cluster.sql("select s from root.race.t", at: index)))")
        }
    }
}
