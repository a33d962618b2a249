import Foundation
import Testing
import TidemarkTestSupport

@Suite(.serialized) struct DiskFullProcessTests {
    /// Issue 27 review, item 1: a Raft node shut down for good at the first log write its full
    /// disk refused, while its health cleared once space was free: /ping 200 and every write
    /// refused until a restart. Now the round fails (its writers get an error), and the node
    /// takes writes again by itself once space is free.
    @Test(.enabled(if: Tmpfs.available)) func aRaftNodeOnAFullDiskTakesWritesAgainOnceSpaceIsFree() throws {
        let disk = try Tmpfs(label: "raftnode", sizeBytes: 16 << 20)
        defer { disk.unmount() }
        let internalPort = try freePort()
        let configPath = disk.path + "/node.yaml"
        try """
            node_name: n1
            http: {listen: "127.0.0.1:0"}
            internal: {listen: "127.0.0.1:\(internalPort)"}
            meta_peers: [127.0.0.1:\(internalPort)]
            cluster_secret: test-secret
            data_consensus: raft
            raft: {tick_ms: 50, election_ticks: 10}
            """.write(toFile: configPath, atomically: true, encoding: .utf8)
        let node = try NodeProcess(arguments: ["--config", configPath, "--data-dir", disk.path + "/data"])
        let client = try TestHTTPClient(port: node.port)
        let writer = BatchWriter(client)
        #expect(eventually { (try? writer.write()) == 204 }, "the one-node group took no write: \(node.stderr.suffix(2000))")
        let filler = try writer.fill(disk)

        try FileManager.default.removeItem(atPath: filler)
        #expect(eventually { (try? client.request("GET", "/ping").status) == 200 }, "/ping stayed degraded after space came back")
        #expect(eventually { (try? writer.write()) == 204 }, "the node refuses writes once space is free: \(writer.refusal)")
        let metrics = try client.request("GET", "/metrics").text
        #expect(metricSamples(metrics, "tidemark_storage_disk_full") == ["tidemark_storage_disk_full 0"])
        #expect(metricSamples(metrics, "tidemark_storage_disk_full_episodes_total") == ["tidemark_storage_disk_full_episodes_total 1"])
        // Every acknowledged point is there (a refused one may be too: its writer was told it may be applied).
        let sql = #"{"sql":"select v from root.sg.m.a","row_limit":100000}"#
        let answer = try client.request("POST", "/rest/v2/query", body: Array(sql.utf8), headers: ["Content-Type": "application/json"])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(answer.body)) as? [String: Any], "\(answer.text)")
        let stored = Set(((json["timestamps"] as? [Int]) ?? []))
        #expect(writer.acknowledged.isSubset(of: stored), "acknowledged points missing: \(writer.acknowledged.subtracting(stored).count)")
        #expect(try node.stop() == 0)
        #expect(node.stderr.components(separatedBy: "disk full: log writes are refused").count == 2, "logged once per episode: \(node.stderr)")
        #expect(!node.stderr.contains("this node stops accepting writes"))
    }

    /// A node whose disk is full is ReadOnly in the meta group (it takes no new regions), on
    /// every node, and Running again once space is free.
    @Test(.enabled(if: Tmpfs.available)) func aNodeOnAFullDiskIsReadOnlyInTheMetaGroupUntilSpaceIsFree() throws {
        let disks = try (0..<3).map { try Tmpfs(label: "readonly\($0)", sizeBytes: 64 << 20) }
        defer { for disk in disks { disk.unmount() } }
        let cluster = try TestCluster(dataDirectories: disks.map { $0.path + "/data" })
        defer { cluster.stopAll() }
        let leader = try cluster.awaitLeader()
        func metaLeader() -> Int? {
            guard let text = try? TestHTTPClient(port: cluster.nodes[leader]!.port).request("GET", "/cluster").text,
                  let range = text.range(of: #""meta":\{"leader":\d+"#, options: .regularExpression) else { return nil }
            return Int(text[range].split(separator: ":").last!).map { $0 - 1 }
        }
        #expect(eventually(within: 30) { metaLeader() != nil })
        // A node that leads neither group: the others commit its report while its own disk refuses.
        let full = try #require((0..<3).first { $0 != leader && $0 != metaLeader() })
        func status(of index: Int, at node: Int) -> String? { cluster.column("show datanodes", "Status", at: node)?[index] }
        #expect(eventually(within: 30) { (0..<3).allSatisfy { status(of: full, at: $0) == "Running" } })

        let filler = try disks[full].fill(leaveBytes: 0)
        // Writes at the leader reach the full node's log, which refuses them: its disk is full.
        var batch = 0
        #expect(eventually(within: 30) {
            batch += 1
            _ = cluster.write((0..<200).map { "m,dev=a v=\($0)i \(batch * 1000 + $0)" }.joined(separator: "\n"), at: leader)
            // The others' copies of the meta state: the full node's own cannot log the change.
            return (0..<3).filter { $0 != full }.allSatisfy { status(of: full, at: $0) == "ReadOnly" }
        }, "node \(full + 1) never turned ReadOnly: \((0..<3).map { status(of: full, at: $0) ?? "-" })")
        // No new region goes to it: a database with a copy on every running node cannot be made.
        let refused = cluster.sql("create database root.everywhere with DATA_REPLICATION_FACTOR=3", at: leader)
        #expect(refused?.json["code"] as? Int == 920, "\(String(describing: refused))")

        try FileManager.default.removeItem(atPath: filler)
        #expect(eventually(within: 30) {
            batch += 1
            _ = cluster.write("m,dev=a v=1i \(batch * 1000)", at: leader)
            return (0..<3).allSatisfy { status(of: full, at: $0) == "Running" }
        }, "node \(full + 1) stayed ReadOnly once space was free: \((0..<3).map { status(of: full, at: $0) ?? "-" }) \(cluster.metric("tidemark_storage_disk_full", at: full) ?? -1) \(cluster.nodes[full]!.stderr.suffix(3000))")
    }
}
