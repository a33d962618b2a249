import Foundation
import Testing
import TidemarkTestSupport

/// Two `tidemarkd` processes that list each other in `meta_peers` but differ in one thing
/// (cluster name or secret), in a fresh directory.
private final class TwoNodes {
    let directory: String
    let internalPorts: [Int]
    let nodes: [NodeProcess]

    /// `settings[i]`: more lines of node i's config (what differs between the two).
    init(_ label: String, settings: [String]) throws {
        let directory = try temporaryDirectory(label)
        let ports = try (0..<2).map { _ in try freePort() }
        self.directory = directory
        internalPorts = ports
        nodes = try (0..<2).map { index in
            let config = """
                node_name: n\(index + 1)
                http: {listen: "127.0.0.1:0"}
                internal: {listen: "127.0.0.1:\(ports[index])"}
                meta_peers: [\(ports.map { "\"127.0.0.1:\($0)\"" }.joined(separator: ", "))]
                raft: {tick_ms: 50, election_ticks: 10}
                log_level: warning
                \(settings[index])
                """
            let path = "\(directory)/n\(index + 1).yaml"
            try config.write(toFile: path, atomically: true, encoding: .utf8)
            // Never ready: a node opens its client port once a majority of the meta group agrees.
            return try NodeProcess(launching: ["--config", path, "--data-dir", "\(directory)/data\(index + 1)"])
        }
    }

    /// Whether either node opened its client port: it does once a majority of its meta group
    /// agreed and elected a leader, which two refusing nodes never are.
    var eitherIsReady: Bool { nodes.contains { $0.saidReady } }

    func stopAll() throws {
        for node in nodes { _ = try node.stop() }
    }
}

@Suite(.serialized) struct ClusterIdentityProcessTests {
    /// Two nodes with the same secret but different `cluster_name`: each refuses the other,
    /// both logs say why, and no leader is elected across them (each alone is no majority).
    @Test func nodesOfDifferentClustersRefuseEachOtherAndBothLogIt() throws {
        let pair = try TwoNodes("identity-name", settings: ["cluster_secret: shared-secret\ncluster_name: tidemark",
                                                            "cluster_secret: shared-secret\ncluster_name: other"])
        let onFirst = #"cluster name "other" differs from this node's "tidemark""#
        let onSecond = #"cluster name "tidemark" differs from this node's "other""#
        #expect(eventually(within: 30) { pair.nodes[0].stderr.contains(onFirst) && pair.nodes[1].stderr.contains(onSecond) },
                "stderr: \(pair.nodes.map { $0.stderr.suffix(2000) })")
        #expect(pair.nodes[0].stderr.contains("refused the internal connection with 127.0.0.1:\(pair.internalPorts[1])"))
        // Several election timeouts (500 ms each) pass without a leader: neither node is ready.
        #expect(!eventually(within: 3) { pair.eitherIsReady }, "a node became ready across two clusters")
        // However often the pair redials (every 200 ms), each says it once per 10 s.
        #expect(pair.nodes[0].stderr.components(separatedBy: onFirst).count - 1 == 1)
        try pair.stopAll()
    }

    /// Two nodes with different `cluster_secret`: the node receiving frames it cannot
    /// authenticate logs so, and the node that hears nobody says it, naming its peer.
    @Test func aWrongSecretIsLoggedByRealNodes() throws {
        let pair = try TwoNodes("identity-secret", settings: ["cluster_secret: one-secret", "cluster_secret: another-secret"])
        // Node 1 dials node 2: node 2 receives the frames that fail.
        #expect(eventually(within: 30) {
            pair.nodes[1].stderr.contains("frames from 127.0.0.1:") && pair.nodes[1].stderr.contains("fail authentication: cluster_secret probably differs")
        }, "stderr: \(pair.nodes[1].stderr.suffix(2000))")
        #expect(eventually(within: 30) {
            pair.nodes[0].stderr.contains("no authenticated frame from any peer for 500 ms (tried node 2 at 127.0.0.1:\(pair.internalPorts[1]))")
        }, "stderr: \(pair.nodes[0].stderr.suffix(2000))")
        #expect(!pair.eitherIsReady)
        try pair.stopAll()
    }

    /// The sample configs' placeholder secret on an address other machines reach: tidemarkd
    /// refuses to start (configuration error, status 2) and names `cluster_secret`.
    @Test func thePlaceholderSecretOffLoopbackIsRefusedAtStart() throws {
        let directory = try temporaryDirectory("identity-placeholder")
        let port = try freePort()
        func config(http: String) throws -> String {
            let path = "\(directory)/node-\(UUID().uuidString).yaml"
            try """
                http: {listen: "\(http)"}
                internal: {listen: "127.0.0.1:\(port)"}
                meta_peers: ["127.0.0.1:\(port)"]
                cluster_secret: change-me
                """.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let tidemarkd = try builtProduct("tidemarkd")
        let wildcard = try runProcess(tidemarkd, ["--config", try config(http: "0.0.0.0:0"), "--data-dir", directory + "/data"], timeoutSeconds: 30)
        #expect(wildcard.status == 2)
        #expect(wildcard.stderr.contains("cluster_secret: is the sample placeholder \"change-me\", and http.listen 0.0.0.0:0 is not a loopback address"))
        #expect(wildcard.stderr.contains("openssl rand -hex 32"))
        // On loopback the file is fine, but --http-listen moves the node off it.
        let moved = try runProcess(tidemarkd, ["--config", try config(http: "127.0.0.1:0"), "--http-listen", "[::]:0", "--data-dir", directory + "/data"],
                                   timeoutSeconds: 30)
        #expect(moved.status == 2 && moved.stderr.contains("cluster_secret") && moved.stderr.contains("http.listen [::]:0"))
    }
}
