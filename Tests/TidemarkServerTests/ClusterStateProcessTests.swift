import Foundation
import Testing
import TidemarkTestSupport

/// Every change of state replicates (issue 28): schema statements, deletes and users are
/// entries of the groups, on three real `tidemarkd` processes; any node takes them (issue 30).
@Suite(.serialized) struct ClusterStateProcessTests {
    /// `SHOW TIMESERIES` at node `index`, as "path type encoding compression" lines.
    private func schema(_ cluster: TestCluster, at index: Int, _ pattern: String = "root.ct.**") -> [String]? {
        guard let (status, json) = cluster.sql("show timeseries \(pattern)", at: index), status == 200,
              let names = json["column_names"] as? [String], let values = json["values"] as? [[Any]] else { return nil }
        let columns = ["timeseries", "dataType", "encoding", "compression"].compactMap { names.firstIndex(of: $0) }
        guard columns.count == 4, let rows = values.first?.count else { return nil }
        return (0..<rows).map { row in columns.map { "\(values[$0][row])" }.joined(separator: " ") }
    }

    @Test func schemaAndDeletesAreTheSameOnEveryNodeThroughFailoverAndRestart() throws {
        let cluster = try TestCluster()
        let leader = try cluster.awaitLeader()
        let followers = [0, 1, 2].filter { $0 != leader }

        // DDL on the leader: the same schema, encoding and compressor on every node.
        #expect(cluster.sql("CREATE DATABASE root.ct", at: leader)?.json["code"] as? Int == 200)
        #expect(cluster.sql("CREATE TIMESERIES root.ct.d1.s1 WITH DATATYPE=INT32, ENCODING=RLE, COMPRESSOR=LZ4", at: leader)?.json["code"] as? Int == 200)
        let expected = ["root.ct.d1.s1 INT32 RLE LZ4"]
        for index in 0..<3 {
            #expect(eventually { schema(cluster, at: index) == expected }, "node \(index + 1): \(String(describing: schema(cluster, at: index)))")
        }
        // A second CREATE is refused with IoTDB's code, decided by the entry's apply.
        #expect(cluster.sql("CREATE DATABASE root.ct", at: leader)?.json["code"] as? Int == 501)

        // Any node coordinates: DDL, inserts and deletes at a follower of the data group go to
        // its leader, and every node answers the same.
        for follower in followers {
            #expect(cluster.sql("CREATE DATABASE root.f\(follower)", at: follower)?.json["code"] as? Int == 200, "CREATE DATABASE at a follower")
            #expect(cluster.sql("CREATE TIMESERIES root.ct.d\(follower).s1 WITH DATATYPE=TEXT", at: follower)?.json["code"] as? Int == 200)
            #expect(cluster.sql("INSERT INTO root.ct.d\(follower)(time,s1) VALUES (9,'x')", at: follower)?.json["code"] as? Int == 200)
            let client = try TestHTTPClient(port: cluster.nodes[follower]!.port)
            #expect(try client.request("POST", "/write?db=ct&precision=ms", body: Array("l\(follower) v=1i 5".utf8)).status == 204)
            #expect(cluster.sql("DELETE FROM root.ct.d\(follower).s1 WHERE time <= 9", at: follower)?.json["code"] as? Int == 200)
            #expect(cluster.sql("DROP DATABASE root.f\(follower)", at: follower)?.json["code"] as? Int == 200, "DROP DATABASE at a follower")
            for index in 0..<3 {
                #expect(cluster.sql("select count(s1) from root.ct.d\(follower)", at: index)?.json["values"] as? [[Int]] == [[0]], "node \(index + 1)")
                #expect(cluster.sql("select v from root.ct.l\(follower)", at: index)?.json["timestamps"] as? [Int] == [5], "node \(index + 1)")
            }
            #expect(cluster.sql("DELETE TIMESERIES root.ct.d\(follower).s1, root.ct.l\(follower).v", at: follower)?.json["code"] as? Int == 200)
        }
        // The point through the leader lands, typed by the leader's schema, on every node.
        #expect(cluster.sql("INSERT INTO root.ct.d1(time,s7) VALUES (1,5)", at: leader)?.json["code"] as? Int == 200)
        #expect(cluster.sql("INSERT INTO root.ct.d1(time,s1) VALUES (1,7),(2,8)", at: leader)?.json["code"] as? Int == 200)
        for index in 0..<3 {
            #expect(eventually { cluster.column("show databases", "database", at: index) == ["root.ct", "root.raft"] })
            #expect(eventually { schema(cluster, at: index)?.contains("root.ct.d1.s7 INT64 TS_2DIFF ZSTD") == true })
        }

        // DROP DATABASE with points in it, then a database that stays.
        #expect(cluster.write("m v=1i 1", at: leader) == 204)  // root.raft.m.v
        #expect(cluster.sql("DROP DATABASE root.raft", at: leader)?.json["code"] as? Int == 200)
        #expect(cluster.sql("DROP DATABASE root.raft", at: leader)?.json["code"] as? Int == 500)  // no such database
        for index in 0..<3 { #expect(eventually { cluster.column("show databases", "database", at: index) == ["root.ct"] }) }

        // SIGKILL the leader of root.ct's data: the new one has the same schema and takes DDL.
        #expect(eventually { cluster.leader(of: "root.ct") != nil })
        let ctLeader = try #require(cluster.leader(of: "root.ct"))
        #expect(try cluster.nodes[ctLeader]!.stop(signal: SIGKILL) == SIGKILL)
        cluster.nodes[ctLeader] = nil
        // Any node coordinates: one of the others, once the group elected a new leader.
        let second = (ctLeader + 1) % 3
        #expect(eventually { schema(cluster, at: second) == ["root.ct.d1.s1 INT32 RLE LZ4", "root.ct.d1.s7 INT64 TS_2DIFF ZSTD"] })
        #expect(cluster.sql("CREATE TIMESERIES root.ct.d1.s2 WITH DATATYPE=DOUBLE, ENCODING=PLAIN, COMPRESSOR=SNAPPY", at: second)?.json["code"] as? Int == 200)
        #expect(cluster.sql("select s7 from root.ct.d1", at: second)?.json["timestamps"] as? [Int] == [1])
        try cluster.start(ctLeader)

        // A whole-cluster restart after SIGKILL: every node replays to the same schema, the
        // dropped database stays dropped, and no acknowledged point is lost.
        let all = ["root.ct.d1.s1 INT32 RLE LZ4", "root.ct.d1.s2 DOUBLE PLAIN SNAPPY", "root.ct.d1.s7 INT64 TS_2DIFF ZSTD"]
        for index in 0..<3 { #expect(eventually { schema(cluster, at: index) == all }, "node \(index + 1) before the restart") }
        cluster.stopAll(kill: true)
        try cluster.startAll()
        for index in 0..<3 {
            #expect(eventually { schema(cluster, at: index) == all }, "node \(index + 1): \(String(describing: schema(cluster, at: index)))")
            #expect(cluster.column("show databases", "database", at: index) == ["root.ct"], "node \(index + 1) after the restart")
            #expect(cluster.sql("select s1 from root.ct.d1", at: index)?.json["timestamps"] as? [Int] == [1, 2])
            #expect(cluster.sql("select s7 from root.ct.d1", at: index)?.json["timestamps"] as? [Int] == [1])
        }
        cluster.stopAll()
    }

    @Test func usersAreTheSameOnEveryNode() throws {
        let cluster = try TestCluster()
        let leader = try cluster.awaitLeader()
        let follower = [0, 1, 2].first { $0 != leader }!
        func basic(_ name: String, _ password: String) -> String { "Basic " + Data("\(name):\(password)".utf8).base64EncodedString() }
        func status(_ statement: String, at index: Int, as authorization: String) -> Int? {
            cluster.sql(statement, at: index, authorization: authorization)?.status
        }

        #expect(cluster.sql("CREATE USER bob 'bobpass1'", at: leader)?.json["code"] as? Int == 200)
        #expect(cluster.sql("GRANT READ_SCHEMA ON root.** TO USER bob", at: leader)?.json["code"] as? Int == 200)
        // Users live in the meta group (issue 29): any node takes a change, passing it on to its leader.
        #expect(cluster.sql("CREATE USER eve 'evepass1'", at: follower)?.json["code"] as? Int == 200, "CREATE USER on a data follower")
        for index in 0..<3 {
            #expect(eventually { status("show databases", at: index, as: basic("bob", "bobpass1")) == 200 }, "bob on node \(index + 1)")
            #expect(eventually { status("show databases", at: index, as: basic("eve", "evepass1")) == 403 }, "eve on node \(index + 1): known, no privilege")
            #expect(eventually { cluster.column("list user", "user", at: index) == ["bob", "eve", "root"] })
        }

        // root's new password holds on every node, the default one nowhere, also after a restart.
        #expect(cluster.sql("ALTER USER root SET PASSWORD 'r00t-changed'", at: leader)?.json["code"] as? Int == 200)
        let root = basic("root", "r00t-changed")
        for index in 0..<3 {
            #expect(eventually { status("show databases", at: index, as: root) == 200 }, "new root password on node \(index + 1)")
            #expect(status("show databases", at: index, as: TestHTTPClient.rootAuthorization) == 401, "root/root on node \(index + 1)")
        }
        cluster.stopAll(kill: true)
        try cluster.startAll()
        for index in 0..<3 {
            #expect(status("show databases", at: index, as: root) == 200, "new root password on node \(index + 1) after a restart")
            #expect(status("show databases", at: index, as: TestHTTPClient.rootAuthorization) == 401)
            #expect(status("show databases", at: index, as: basic("bob", "bobpass1")) == 200)
        }
        cluster.stopAll()
    }
}
