import Foundation
import Testing
import TidemarkTestSupport

/// The control plane on real `tidemarkd` processes (issue 29): data-only nodes join, writes
/// allocate partitions in the meta group, SHOW REGIONS spreads replicas and is the same on
/// every node, a node holding a last copy cannot be removed, a new meta leader keeps
/// allocating, and a whole-cluster restart keeps the table, the regions and the users.
@Suite(.serialized) struct ClusterControlPlaneProcessTests {
    /// SHOW REGIONS at node `index` as rows of text (nil when it does not answer).
    private func regions(_ cluster: TestCluster, at index: Int) -> [[String]]? {
        guard let (status, json) = cluster.sql("show regions", at: index), status == 200,
              let values = json["values"] as? [[Any]], values.count == 12 else { return nil }
        return values[0].indices.map { row in values.map { "\($0[row])" } }
    }

    /// `"table_version":N` and `"route_version":N` of node `index`'s `/cluster`.
    private func versions(_ cluster: TestCluster, at index: Int) -> String? {
        guard let node = cluster.nodes[index], let text = try? TestHTTPClient(port: node.port, timeoutSeconds: 5).request("GET", "/cluster").text,
              let route = text.range(of: #""route_version":\d+,"table_version":\d+"#, options: .regularExpression) else { return nil }
        return String(text[route])
    }

    /// The meta leader as node `index`'s `/cluster` names it.
    private func metaLeader(_ cluster: TestCluster, at index: Int) -> Int? {
        guard let node = cluster.nodes[index], let text = try? TestHTTPClient(port: node.port, timeoutSeconds: 5).request("GET", "/cluster").text,
              let range = text.range(of: #""meta":\{"leader":\d+"#, options: .regularExpression) else { return nil }
        return Int(text[range].split(separator: ":").last!)
    }

    /// One line per device, each its own series slot (most of them).
    private func devices(_ count: Int, prefix: String, at timestamp: Int64 = 1000) -> String {
        (0..<count).map { "cpu,host=\(prefix)\($0) v=\($0) \(timestamp)" }.joined(separator: "\n")
    }

    @Test func fiveNodesWithTwoDataOnlyNodesSpreadRegionsAndAnswerAlike() throws {
        // Nodes 4 and 5 are launched together, before any of them is ready: two join at once.
        let cluster = try TestCluster(count: 5, metaCount: 3, dataLayout: nil)
        let ids = try (3..<5).map { index in
            try String(contentsOfFile: cluster.directory + "/data\(index + 1)/node_id", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect(Set(ids) == ["4", "5"], "each joining node got its own ID: \(ids)")
        for index in 0..<5 {
            #expect(eventually(within: 30) { cluster.column("show datanodes", "Status", at: index) == Array(repeating: "Running", count: 5) },
                    "node \(index + 1) sees five running nodes")
        }

        // Writes allocate slots and time partitions; a database asks for three copies of five groups.
        let leader = try cluster.awaitLeader()
        #expect(cluster.write(devices(300, prefix: "h"), at: leader) == 204)
        let created = cluster.sql("create database root.wide with DATA_REPLICATION_FACTOR=3, DATA_REGION_GROUP_NUM=5", at: leader)
        #expect(created?.json["code"] as? Int == 200, "\(String(describing: created))")

        // Every node answers SHOW REGIONS and /cluster alike (node 1 first takes in the new database).
        #expect(eventually(within: 30) { regions(cluster, at: 0)?.contains { $0[3] == "root.wide" && $0[1] == "DataRegion" } == true })
        for index in 1..<5 {
            #expect(eventually(within: 30) { regions(cluster, at: index) == regions(cluster, at: 0) && versions(cluster, at: index) == versions(cluster, at: 0) },
                    "node \(index + 1): \(String(describing: regions(cluster, at: index)))")
        }
        // The leader pushed the route map's changes (new groups) to the data-only nodes.
        for index in 3..<5 {
            let text = try TestHTTPClient(port: cluster.nodes[index]!.port).request("GET", "/cluster").text
            #expect(text.range(of: #""pushes_received":[1-9]"#, options: .regularExpression) != nil, "node \(index + 1): \(text)")
        }
        // New time partitions go to the groups there are (the table moves, the route map does
        // not): the leader's next heartbeat carries the newer version, and the data-only nodes pull.
        // Written at a member: a data-only node that coordinated the write would pull the
        // table itself, not because a peer carried a newer version.
        #expect(cluster.write(devices(300, prefix: "h", at: 30 * 24 * 3600 * 1000), at: 0) == 204)
        for index in 3..<5 {
            #expect(eventually(within: 30) { versions(cluster, at: index) == versions(cluster, at: 0) })
            let text = try TestHTTPClient(port: cluster.nodes[index]!.port).request("GET", "/cluster").text
            #expect(text.range(of: #""stale_pulls":[1-9]"#, options: .regularExpression) != nil, "node \(index + 1): \(text)")
        }
        // Every node opened the replicas the table places on it: each one reports it in heartbeats
        // (its TsFileSize is known), and the meta group names as leader a replica that leads.
        #expect(eventually(within: 30) { regions(cluster, at: 0)?.filter { $0[1] == "DataRegion" }.allSatisfy { $0[11] != "<null>" } ?? false },
                "\(String(describing: regions(cluster, at: 0)))")
        let reference = try #require(regions(cluster, at: 0))
        // Columns: RegionId, Type, Status, Database, SeriesSlotNum, TimeSlotNum, DataNodeId, RpcAddress, RpcPort, InternalAddress, Role.
        let byGroup = Dictionary(grouping: reference, by: { $0[0] })
        for (group, replicas) in byGroup {
            #expect(Set(replicas.map { $0[6] }).count == replicas.count, "group \(group) has two replicas on one node: \(replicas)")
            #expect(replicas.filter { $0[10] == "Leader" }.count == 1, "group \(group) names one leader")
        }
        let raftSlots = reference.filter { $0[3] == "root.raft" && $0[1] == "DataRegion" }.map { Int($0[4])! }.reduce(0, +)
        #expect(raftSlots >= 250, "300 devices fill most of their slots, spread over the database's data groups: \(raftSlots)")
        #expect(reference.filter { $0[3] == "root.wide" && $0[1] == "DataRegion" }.count == 15, "five groups of three: \(reference)")
        let perNode = Dictionary(grouping: reference, by: { $0[6] }).mapValues(\.count)
        let mean = Double(reference.count) / 5
        #expect(perNode.count == 5 && perNode.values.allSatisfy { abs(Double($0) - mean) <= 1.5 }, "replicas per node \(perNode), mean \(mean)")

        // Users live in the meta group: one made at a data-only node signs in at every node.
        #expect(cluster.sql("create user dora 'dora-pass-1'", at: 4)?.json["code"] as? Int == 200)
        // At once, at the same node: a change answered there is in its copy before the answer.
        let grant = cluster.sql("grant READ_SCHEMA on root.** to user dora", at: 4)
        #expect(grant?.json["code"] as? Int == 200, "\(String(describing: grant))")
        let dora = "Basic " + Data("dora:dora-pass-1".utf8).base64EncodedString()
        for index in 0..<5 {
            #expect(eventually(within: 30) { cluster.sql("show regions", at: index, authorization: dora)?.status == 200 }, "dora at node \(index + 1)")
        }

        // `tidemark cluster status` at a data-only node: every node with its regions, every group.
        let status = try runProcess(try builtProduct("tidemark"), ["cluster", "status", "--url", "http://\(cluster.address(of: 3))"])
        #expect(status.status == 0 && status.stdout.contains("\(byGroup.count) region groups"), "\(status.stdout)\(status.stderr)")
        let rows = status.stdout.split(separator: "\n").filter { $0.contains("Running") }
        let dataOf4 = reference.filter { $0[6] == "4" && $0[1] == "DataRegion" }.count
        #expect(rows.count == 5 && rows.contains { $0.hasPrefix("4 ") && $0.split(separator: " ", omittingEmptySubsequences: true).dropFirst(3).first == "\(dataOf4)"[...] },
                "\(status.stdout)")

        // A node that holds the only copy of a region cannot be removed.
        let lonely = try #require(reference.first { $0[3] == "root.raft" && $0[1] == "DataRegion" })[6]
        let removal = cluster.sql("remove datanode \(lonely)", at: 4)
        #expect(removal?.json["code"] as? Int == 919 && (removal?.json["message"] as? String)?.contains("only live copy") == true, "\(String(describing: removal))")
        #expect(cluster.column("show datanodes", "Status", at: 0) == Array(repeating: "Running", count: 5))

        // A data-only node with another fixed setting refuses to join, in one line (status 2).
        let sixth = try freePort()
        let config = """
            node_name: n6
            http: {listen: "127.0.0.1:0"}
            internal: {listen: "127.0.0.1:\(sixth)"}
            meta_peers: [\(cluster.internalPorts.prefix(3).map { "127.0.0.1:\($0)" }.joined(separator: ", "))]
            cluster_secret: test-secret
            series_slot_num: 999
            """
        try config.write(toFile: cluster.directory + "/n6.yaml", atomically: true, encoding: .utf8)
        let refused = try runProcess(try builtProduct("tidemarkd"), ["--config", cluster.directory + "/n6.yaml", "--data-dir", cluster.directory + "/data6"],
                                     timeoutSeconds: 60)
        #expect(refused.status == 2, "\(refused.stderr)")
        #expect(refused.stderr.contains("series_slot_num is 999 on this node but 1000 on node "), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: cluster.directory + "/data6/node_id"))
        cluster.stopAll()
    }

    @Test func aNewMetaLeaderAllocatesAndARestartKeepsTableRegionsAndUsers() throws {
        let cluster = try TestCluster()
        var dataLeader = try cluster.awaitLeader()
        #expect(cluster.write(devices(40, prefix: "a"), at: dataLeader) == 204)
        #expect(eventually(within: 30) { metaLeader(cluster, at: 0) != nil })
        let killed = try #require(metaLeader(cluster, at: 0)) - 1
        #expect(try cluster.nodes[killed]!.stop(signal: SIGKILL) == SIGKILL)
        cluster.nodes[killed] = nil
        let survivor = (killed + 1) % 3
        // A new meta leader is elected and takes new databases and partitions.
        #expect(eventually(within: 30) { metaLeader(cluster, at: survivor).map { $0 - 1 != killed } == true })
        let before = try #require(versions(cluster, at: survivor))
        #expect(eventually(within: 30) {
            let code = cluster.sql("create database root.later", at: survivor)?.json["code"] as? Int
            return code == 200 || code == 606 || code == 501
        })
        #expect(eventually(within: 30) { cluster.column("show databases details", "Database", at: survivor)?.contains("root.later") == true })
        dataLeader = try cluster.awaitLeader()
        #expect(eventually(within: 30) { cluster.write(devices(40, prefix: "b", at: 9_000_000_000), at: dataLeader) == 204 })
        #expect(versions(cluster, at: survivor) != before, "the table grew under the new leader")
        try cluster.start(killed)
        #expect(cluster.sql("create user reader 'reader-pass-1'", at: dataLeader)?.json["code"] as? Int == 200)

        // A whole-cluster restart keeps the table's version, the regions and the users.
        #expect(eventually(within: 30) { (0..<3).allSatisfy { regions(cluster, at: $0) == regions(cluster, at: 0) && versions(cluster, at: $0) == versions(cluster, at: 0) } })
        // The nodes come back on other client ports (the test's HTTP port is 0): the RpcPort
        // column and the route version (a registration with a new address) may change; a
        // group's leader (Role) is whoever wins its next election, and sizes are heard anew.
        func layout(_ index: Int) -> [[String]]? {
            regions(cluster, at: index)?.map { row in row.enumerated().filter { ![8, 10, 11].contains($0.offset) }.map(\.element) }
        }
        func tableVersion(_ index: Int) -> Substring? { versions(cluster, at: index)?.split(separator: ",").last }
        let layoutBefore = try #require(layout(0))
        let tableBefore = try #require(tableVersion(0))
        cluster.stopAll(kill: true)
        try cluster.startAll()
        let reader = "Basic " + Data("reader:reader-pass-1".utf8).base64EncodedString()
        for index in 0..<3 {
            #expect(eventually(within: 30) { tableVersion(index) == tableBefore }, "node \(index + 1): \(String(describing: versions(cluster, at: index)))")
            #expect(layout(index) == layoutBefore)
            #expect(eventually(within: 30) { cluster.sql("show databases", at: index, authorization: reader)?.status != 401 }, "node \(index + 1) knows the user")
        }
        cluster.stopAll()
    }
}

/// Issue 29 point 7 on real processes: region replicas run on the nodes that hold them, a
/// group whose leader dies elects another, and the meta leader's heartbeats move the group's
/// leader hint (SHOW REGIONS' Role) there and mark the dead node Unknown.
@Suite(.serialized) struct RegionHeartbeatProcessTests {
    /// SHOW REGIONS at `index` as rows of text.
    private func regions(_ cluster: TestCluster, at index: Int) -> [[String]]? {
        guard let (status, json) = cluster.sql("show regions", at: index), status == 200,
              let values = json["values"] as? [[Any]], values.count == 12 else { return nil }
        return values[0].indices.map { row in values.map { "\($0[row])" } }
    }

    @Test func aRegionLeaderThatDiesIsReplacedInTheRouteMap() throws {
        let cluster = try TestCluster(count: 3, metaCount: 3, extraConfig: "node_unknown_after_ms: 2000")
        let leader = try cluster.awaitLeader()
        #expect(cluster.sql("create database root.ha with DATA_REPLICATION_FACTOR=3, DATA_REGION_GROUP_NUM=2", at: leader)?.json["code"] as? Int == 200)
        // Columns: RegionId, Type, Status, Database, SeriesSlotNum, TimeSlotNum, DataNodeId, RpcAddress, RpcPort, InternalAddress, Role, TsFileSize.
        func dataRows(_ index: Int) -> [[String]] { (regions(cluster, at: index) ?? []).filter { $0[1] == "DataRegion" && $0[3] == "root.ha" } }
        #expect(eventually(within: 30) { let rows = dataRows(leader); return rows.count == 6 && rows.allSatisfy { $0[11] != "<null>" } },
                "every replica open and reporting: \(dataRows(leader))")
        let before = dataRows(leader)
        let led = try #require(before.first { $0[10] == "Leader" }, "a group names its leader")
        let group = led[0], deadNode = try #require(Int(led[6]))
        // Node IDs are the places in meta_peers: node k is index k - 1.
        #expect(try cluster.nodes[deadNode - 1]!.stop(signal: SIGKILL) == SIGKILL)
        cluster.nodes[deadNode - 1] = nil
        let survivor = deadNode % 3  // the next node's index
        #expect(eventually(within: 60) {
            let rows = dataRows(survivor).filter { $0[0] == group }
            return rows.count == 3 && rows.contains { $0[10] == "Leader" && $0[6] != "\(deadNode)" }
                && rows.first { $0[6] == "\(deadNode)" }?[2] == "Unknown"
        }, "group \(group) led elsewhere, node \(deadNode) Unknown: \(dataRows(survivor))")
        cluster.stopAll()
    }
}
