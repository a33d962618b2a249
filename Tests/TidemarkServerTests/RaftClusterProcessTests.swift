import Foundation
import Testing
import TidemarkTestSupport

@Suite(.serialized) struct RaftClusterProcessTests {
    @Test func theLeaderIsKilledAndNothingAcknowledgedIsLost() throws {
        let cluster = try TestCluster()
        var acknowledged = Set<Int64>()
        var timestamp: Int64 = 1_700_000_000_000
        var leader: Int?
        /// Writes the next point somewhere it is accepted (the leader), within `seconds`.
        func writeNext(seconds: Double) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                for index in ([leader].compactMap { $0 } + [0, 1, 2]) where cluster.nodes[index] != nil {
                    if cluster.write("m v=\(timestamp % 1000)i \(timestamp)", at: index) == 204 {
                        acknowledged.insert(timestamp)
                        timestamp += 1
                        leader = index
                        return true
                    }
                }
                usleep(20_000)  // no leader yet: an election takes a few ticks
            }
            return false
        }
        for _ in 0..<40 where !writeNext(seconds: 20) {
            Issue.record("no node accepted writes; stderr: \(cluster.nodes.compactMap { $0?.stderr.suffix(2000) })")
            break
        }
        // Any node takes writes (it sends them to the group's leader): the leader is the one to kill.
        let first = try cluster.awaitLeader()
        let group = try #require(cluster.dataGroups(at: first).first)

        // SIGKILL the leader mid-stream: another node takes over and writes go on.
        #expect(try cluster.nodes[first]!.stop(signal: SIGKILL) == SIGKILL)
        cluster.nodes[first] = nil
        leader = nil
        for _ in 0..<40 where !writeNext(seconds: 20) {
            Issue.record("no new leader took the writes; stderr: \(cluster.nodes.compactMap { $0?.stderr.suffix(2000) })")
            break
        }
        #expect(leader != first)

        // The new leader says so at /cluster, and counts its Raft work at /metrics.
        #expect(eventually { cluster.leader() != nil && cluster.leader() != first }, "no new leader of \(group)")
        let second = try #require(cluster.leader())
        let client = try TestHTTPClient(port: cluster.nodes[second]!.port)
        let status = try client.request("GET", "/cluster").text
        #expect(status.contains(#""node_id":\#(second + 1)"#) && status.contains(#""group":"\#(group)","role":"leader""#))
        // Every live node's client address is listed next to its internal one: its own, and
        // the other's from its hello.
        for (index, node) in cluster.nodes.enumerated() {
            guard let node else { continue }
            #expect(status.contains(#"{"id":\#(index + 1),"internal":"127.0.0.1:\#(cluster.internalPorts[index])","client":"127.0.0.1:\#(node.port)"}"#),
                    "\(status)")
        }
        let metrics = try client.request("GET", "/metrics").text
        #expect(metrics.contains("tidemark_raft_fsyncs_total ") && metrics.contains(#"tidemark_raft_is_leader{group="\#(group)"} 1"#))

        // Every acknowledged write is on the new leader.
        let onLeader = try #require(cluster.stored(at: second))
        #expect(acknowledged.subtracting(onLeader).isEmpty, "acknowledged writes missing on the new leader: \(acknowledged.subtracting(onLeader).count)")

        // The killed node restarts from its disk and catches up.
        try cluster.start(first)
        #expect(eventually { cluster.stored(at: first).map { acknowledged.isSubset(of: $0) } ?? false }, "the restarted node did not catch up")

        // Idle now, the group falls asleep on every node: no ticks, no heartbeats...
        func asleepEverywhere() -> Bool {
            cluster.nodes.allSatisfy { node in
                guard let node, let client = try? TestHTTPClient(port: node.port, timeoutSeconds: 5),
                      let status = try? client.request("GET", "/cluster").text else { return false }
                return status.contains(#""quiesced":true"#)
            }
        }
        #expect(eventually(asleepEverywhere), "the idle group did not quiesce on every node")

        // ...and when its sleeping leader dies, the others notice the lost link, wake up and
        // elect another, which takes writes.
        #expect(try cluster.nodes[second]!.stop(signal: SIGKILL) == SIGKILL)
        cluster.nodes[second] = nil
        leader = nil
        for _ in 0..<1 where !writeNext(seconds: 20) {
            Issue.record("no leader took over from the sleeping one; stderr: \(cluster.nodes.compactMap { $0?.stderr.suffix(2000) })")
        }
        #expect(leader != nil)
        #expect(eventually { cluster.leader() != nil && cluster.leader() != second }, "no leader took over from the sleeping one")
        for node in cluster.nodes.compactMap({ $0 }) { _ = try? node.stop() }
    }

    /// A follower that was down while the leader flushed and compacted its log past what it
    /// has catches up from a region image (segments, schema, deletes), sent in pieces of 512 bytes
    /// that it puts together in a file and deletes once installed, and keeps it all across a
    /// restart.
    @Test func aFollowerBehindTheCompactedLogCatchesUpFromARegionImage() throws {
        let cluster = try TestCluster(raft: "tick_ms: 50, election_ticks: 10, catch_up_bytes_max: 1, snapshot_chunk_bytes: 512",
                                     extraConfig: "storage: {memtable_bytes_max: 16384}")
        var acknowledged = Set<Int64>()
        var timestamp: Int64 = 1_700_000_000_000
        /// Ten lines of ten fields at whichever node takes them; the node, or nil within the bound.
        func writeBatch(preferring preferred: Int?) -> Int? {
            let lines = (0..<10).map { line in
                "img v=\(line)i," + (1...9).map { "p\($0)=\(Double($0) + 0.5)" }.joined(separator: ",") + " \(timestamp + Int64(line))"
            }.joined(separator: "\n")
            for _ in 0..<500 {
                for index in [preferred].compactMap({ $0 }) + [0, 1, 2] where cluster.nodes[index] != nil {
                    if cluster.write(lines, at: index) == 204 {
                        acknowledged.formUnion((0..<10).map { timestamp + Int64($0) })
                        timestamp += 10
                        return index
                    }
                }
                usleep(20_000)  // no leader yet
            }
            return nil
        }
        _ = try #require(writeBatch(preferring: nil), "no node took writes")
        let leader = try cluster.awaitLeader()
        let group = try #require(cluster.dataGroups(at: leader).first)
        let behind = (leader + 1) % 3
        #expect(eventually { cluster.stored(at: behind, device: "img") == acknowledged }, "the follower did not get the first writes")
        #expect(try cluster.nodes[behind]!.stop(signal: SIGKILL) == SIGKILL)
        cluster.nodes[behind] = nil

        // A user and a typed series the follower misses, in entries the leader compacts away:
        // only the image can bring them.
        let created = cluster.sql("CREATE USER carol 'carolpw1'", at: leader)
        #expect(created?.json["code"] as? Int == 200, "\(String(describing: created))")
        #expect(cluster.sql("GRANT READ_SCHEMA ON root.** TO USER carol", at: leader)?.json["code"] as? Int == 200)
        #expect(cluster.sql("CREATE TIMESERIES root.raft.typed.s WITH DATATYPE=INT32, ENCODING=RLE", at: leader)?.json["code"] as? Int == 200)
        let carol = "Basic " + Data("carol:carolpw1".utf8).base64EncodedString()
        func imageStateArrived() -> Bool {
            cluster.sql("show timeseries root.raft.typed.s", at: behind, authorization: carol, weak: true)?.status == 200
                && cluster.column("show timeseries root.raft.typed.s", "encoding", at: behind, weak: true) == ["RLE"]
        }
        // About 8 memtables' worth: the leader flushes and compacts its log past the dead node.
        for _ in 0..<80 { #expect(writeBatch(preferring: leader) == leader, "the leader refused a write") }
        #expect(eventually { (cluster.metric(#"tidemark_raft_compacted_index{group="\#(group)"}"#, at: leader) ?? 0) > 0 }, "the leader never compacted its log")

        try cluster.start(behind)
        #expect(eventually { cluster.stored(at: behind, device: "img").map { acknowledged.isSubset(of: $0) } ?? false },
                "the restarted follower did not catch up")
        #expect((cluster.metric("tidemark_raft_snapshots_installed_total", at: behind) ?? 0) >= 1, "it caught up without an image")
        #expect(eventually(imageStateArrived), "the image did not bring the user and the series' encoding")
        #expect((cluster.metric("tidemark_raft_snapshots_sent_total", at: leader) ?? 0) >= 1)
        #expect((cluster.metric("tidemark_raft_snapshot_bytes_sent_total", at: leader) ?? 0) > 3 * 512, "the image was not sent in pieces")
        let images = cluster.directory + "/data\(behind + 1)/raft/images"
        #expect(eventually { (try? FileManager.default.contentsOfDirectory(atPath: images))?.isEmpty == true },
                "the installed image's file stayed: \((try? FileManager.default.contentsOfDirectory(atPath: images)) ?? [])")

        // Writes go on reaching it, and a restart keeps the image and what came after.
        #expect(writeBatch(preferring: leader) == leader)
        #expect(eventually { cluster.stored(at: behind, device: "img") == acknowledged })
        #expect(try cluster.nodes[behind]!.stop(signal: SIGKILL) == SIGKILL)
        try cluster.start(behind)
        #expect(eventually { cluster.stored(at: behind, device: "img") == acknowledged }, "the follower lost data across its restart")
        #expect(imageStateArrived(), "the follower lost the image's user or schema across its restart")
        for node in cluster.nodes.compactMap({ $0 }) { _ = try? node.stop() }
    }

    /// Multi-leader: every node takes writes (each its own device) and all converge; a node
    /// killed meanwhile catches up from the others' logs after its restart.
    @Test func everyNodeTakesWritesAndAKilledNodeCatchesUp() throws {
        let cluster = try TestCluster(consensus: "multi_leader")
        var acknowledged: [Int: Set<Int64>] = [0: [], 1: [], 2: []]
        var timestamp: Int64 = 1_700_000_000_000
        /// Writes one point of node `index`'s device there; whether it was acknowledged.
        func write(at index: Int) -> Bool {
            timestamp += 1
            guard cluster.write("d\(index) v=\(timestamp % 1000)i \(timestamp)", at: index) == 204 else { return false }
            acknowledged[index]!.insert(timestamp)
            return true
        }
        /// Whether node `index` holds every acknowledged point of every device, within a bound.
        func converged(at index: Int) -> Bool {
            eventually {
                (0..<3).allSatisfy { device in
                    cluster.stored(at: index, device: "d\(device)").map { acknowledged[device]!.isSubset(of: $0) } ?? false
                }
            }
        }
        for _ in 0..<20 { for index in 0..<3 { #expect(write(at: index), "node \(index) refused a write") } }
        for index in 0..<3 { #expect(converged(at: index), "node \(index) lacks writes of the others") }
        /// What node 1's /metrics says it keeps for a peer that lacks its entries.
        func retained() -> Int? {
            guard let client = try? TestHTTPClient(port: cluster.nodes[0]!.port), let text = try? client.request("GET", "/metrics").text,
                  let line = text.split(separator: "\n").first(where: { $0.hasPrefix("tidemark_multileader_retained_entries{") }) else { return nil }
            return line.split(separator: " ").last.flatMap { Double($0) }.map { Int($0) }
        }
        /// Waits (bounded) until node 1 keeps `entries` for its peers.
        func retained(becomes entries: Int) -> Bool { eventually { retained() == entries } }
        // Every peer acknowledged node 1's entries: it keeps none.
        #expect(retained(becomes: 0))

        // Node 3 dies; the others go on taking writes, keeping them for it.
        #expect(try cluster.nodes[2]!.stop(signal: SIGKILL) == SIGKILL)
        cluster.nodes[2] = nil
        for _ in 0..<20 { for index in 0..<2 { #expect(write(at: index)) } }
        #expect(retained() == 20, "node 1 keeps its 20 entries for the dead node")
        try cluster.start(2)
        #expect(converged(at: 2), "the restarted node did not catch up")
        #expect(retained(becomes: 0), "node 1 still keeps entries the restarted node has")
        #expect(acknowledged[2]!.isSubset(of: cluster.stored(at: 2, device: "d2") ?? []), "the restarted node lost its own writes")
        for node in cluster.nodes.compactMap({ $0 }) { _ = try? node.stop() }
    }
}
