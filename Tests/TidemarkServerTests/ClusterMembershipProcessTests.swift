import Foundation
import Testing
import TidemarkTestSupport

/// The meta group on three real `tidemarkd` processes (issue 29, membership and health): every
/// node registers, every node answers SHOW DATANODES and SHOW CLUSTER alike, a node whose link
/// is down for `node_unknown_after_ms` turns Unknown and Running again once back, and the
/// registrations survive a whole-cluster restart.
@Suite(.serialized) struct ClusterMembershipProcessTests {
    /// SHOW DATANODES at node `index`, as "id status rpc-address:port" lines.
    private func dataNodes(_ cluster: TestCluster, at index: Int) -> [String]? {
        guard let (status, json) = cluster.sql("show datanodes", at: index), status == 200,
              let values = json["values"] as? [[Any]], values.count == 6 else { return nil }
        return values[0].indices.map { row in "\(values[0][row]) \(values[1][row]) \(values[2][row]):\(values[3][row])" }
    }

    @Test func nodesRegisterAndTheirHealthIsTheSameOnEveryNode() throws {
        let cluster = try TestCluster(extraConfig: "node_unknown_after_ms: 1000")
        _ = try cluster.awaitLeader()
        func expected() -> [String] { (0..<3).map { "\($0 + 1) Running \(cluster.address(of: $0))" } }
        for index in 0..<3 {
            #expect(eventually(within: 30) { dataNodes(cluster, at: index) == expected() }, "node \(index + 1): \(String(describing: dataNodes(cluster, at: index)))")
        }
        let show = cluster.sql("show cluster", at: 0)
        #expect(show?.json["column_names"] as? [String] == ["NodeID", "NodeType", "Status", "InternalAddress", "InternalPort", "Version"])
        #expect((show?.json["values"] as? [[Any]])?[1].map { "\($0)" } == ["ConfigNode", "ConfigNode", "ConfigNode", "DataNode", "DataNode", "DataNode"])
        let clusterJSON = try TestHTTPClient(port: cluster.nodes[1]!.port).request("GET", "/cluster").text
        #expect(clusterJSON.contains(#""registered_nodes":[{"id":1"#) && clusterJSON.contains(#""meta_member":true"#))
        let cli = try runProcess(try builtProduct("tidemark"), ["cluster", "status", "--url", "http://\(cluster.address(of: 2))"])
        #expect(cli.status == 0 && cli.stdout.contains("meta leader: node ") && cli.stdout.split(separator: "\n").filter { $0.contains("Running") }.count == 3,
                "\(cli.stdout)\(cli.stderr)")

        // A node goes away: the others see it Unknown, then Running again (at its new address) once back.
        #expect(try cluster.nodes[2]!.stop(signal: SIGKILL) == SIGKILL)
        cluster.nodes[2] = nil
        for index in 0..<2 {
            #expect(eventually(within: 30) { dataNodes(cluster, at: index)?.contains { $0.hasPrefix("3 Unknown") } == true },
                    "node \(index + 1): \(String(describing: dataNodes(cluster, at: index)))")
        }
        try cluster.start(2)
        for index in 0..<3 {
            #expect(eventually(within: 30) { dataNodes(cluster, at: index) == expected() }, "node \(index + 1) after the restart: \(String(describing: dataNodes(cluster, at: index)))")
        }

        // A whole-cluster restart keeps every registration.
        cluster.stopAll(kill: true)
        try cluster.startAll()
        for index in 0..<3 {
            #expect(eventually(within: 30) { dataNodes(cluster, at: index) == expected() }, "node \(index + 1) after the cluster restart")
        }
        cluster.stopAll()
    }

    /// A setting fixed when the cluster was made cannot change: a restart that names another
    /// value is refused in one line naming the setting and both values, with status 2.
    @Test func aFixedSettingThatChangedRefusesTheStart() throws {
        let directory = try temporaryDirectory("fixed-settings")
        let config = directory + "/node.yaml"
        try "series_slot_num: 1000\n".write(toFile: config, atomically: true, encoding: .utf8)
        let node = try NodeProcess(arguments: ["--config", config, "--data-dir", directory + "/data", "--http-listen", "127.0.0.1:0"])
        #expect(try node.stop() == 0)
        try "series_slot_num: 10000\n".write(toFile: config, atomically: true, encoding: .utf8)
        let refused = try runProcess(try builtProduct("tidemarkd"), ["--config", config, "--data-dir", directory + "/data", "--http-listen", "127.0.0.1:0"],
                                     timeoutSeconds: 60)
        #expect(refused.status == 2, "\(refused.stderr)")
        let line = refused.stderr.split(separator: "\n").first { $0.contains("refusing to start") }
        #expect(line?.contains("series_slot_num is 10000 in this node's config, but the cluster was made with series_slot_num = 1000") == true,
                "\(refused.stderr)")
    }

    /// Start-up in the seed order: a node whose fixed settings differ from the meta group's
    /// members refuses to start in one line naming the setting and both values (status 2),
    /// before its client port ever opens.
    @Test func aNodeWhoseSettingsDifferFromThePeersRefusesToStart() throws {
        let cluster = try TestCluster()
        _ = try cluster.awaitLeader()
        #expect(try cluster.nodes[2]!.stop() == 0)
        cluster.nodes[2] = nil
        let config = try cluster.writeConfig(2, extra: "series_slot_num: 10000")
        // A fresh data directory: the node has no checkpoint of its own to compare with.
        let refused = try runProcess(try builtProduct("tidemarkd"), ["--config", config, "--data-dir", cluster.directory + "/fresh3"],
                                     timeoutSeconds: 60)
        #expect(refused.status == 2, "\(refused.stderr)")
        #expect(!refused.stdout.contains("tidemarkd ready"))
        let line = refused.stderr.split(separator: "\n").first { $0.contains("refusing to start") }
        #expect(line?.contains("series_slot_num is 10000 on this node but 1000 on node ") == true, "\(refused.stderr)")
        cluster.stopAll()
    }
}
