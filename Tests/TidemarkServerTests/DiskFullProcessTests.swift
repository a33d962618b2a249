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
}
