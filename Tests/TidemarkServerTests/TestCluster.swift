import Foundation
import Testing
import TidemarkTestSupport

/// `tidemarkd` processes on loopback (three by default): the first `metaCount` form the meta
/// group; the others are data-only nodes that join through them. Every node holds regions and
/// coordinates requests. By default (`dataLayout`) a database has one data region group with
/// a replica on three nodes (Raft, or multi-leader), so "the leader" is that group's.
final class TestCluster {
    let directory: String
    let internalPorts: [Int]
    let metaCount: Int
    let raft: String
    let consensus: String
    let extraConfig: String
    let logLevel: String
    let dataLayout: String
    /// Where node K keeps its data (default `<directory>/dataK`).
    let dataDirectories: [String]
    var nodes: [NodeProcess?]

    /// `extraConfig`: more lines of every node's config; `raft` the keys of its `raft:` section.
    /// `dataLayout`: the config lines that place data (nil: the cluster's defaults, one copy).
    init(count: Int = 3, metaCount: Int = 3, consensus: String = "raft", raft: String = "tick_ms: 50, election_ticks: 10",
         dataLayout: String? = "data_replication_factor: 3\ndata_region_groups_per_database: 1",
         extraConfig: String = "", dataDirectories: [String]? = nil, logLevel: String = "warning") throws {
        self.logLevel = logLevel
        self.dataLayout = dataLayout ?? ""
        precondition(metaCount >= 1 && metaCount <= count, "the meta group is some of the nodes")
        self.metaCount = metaCount
        self.consensus = consensus
        self.raft = raft
        self.extraConfig = extraConfig
        nodes = Array(repeating: nil, count: count)
        directory = try temporaryDirectory("cluster\(count)")
        internalPorts = try (0..<count).map { _ in try freePort() }
        self.dataDirectories = dataDirectories ?? (0..<count).map { [directory] in directory + "/data\($0 + 1)" }
        try startAll()
    }

    /// Starts every node that is not running, then waits for each: a node opens its port only
    /// once a majority of the meta group is up (a data-only node once it joined).
    func startAll() throws {
        let stopped = nodes.indices.filter { nodes[$0] == nil }
        for index in stopped { try launch(index) }
        for index in stopped { try nodes[index]!.waitUntilReady() }
    }

    /// Starts node `index` and waits until it is ready (the others being up).
    func start(_ index: Int) throws {
        try launch(index)
        try nodes[index]!.waitUntilReady()
    }

    private func launch(_ index: Int) throws {
        let path = try writeConfig(index)
        nodes[index] = try NodeProcess(launching: ["--config", path, "--data-dir", dataDirectories[index]])
    }

    /// Writes node `index`'s config (with `extra` lines too); returns its path.
    func writeConfig(_ index: Int, extra: String = "") throws -> String {
        let peers = internalPorts.prefix(metaCount).map { "127.0.0.1:\($0)" }.joined(separator: ", ")
        let config = """
            node_name: n\(index + 1)
            http: {listen: "127.0.0.1:0"}
            internal: {listen: "127.0.0.1:\(internalPorts[index])"}
            meta_peers: [\(peers)]
            cluster_secret: test-secret
            data_consensus: \(consensus)
            raft: {\(raft)}
            log_level: \(logLevel)
            \(dataLayout)
            \(extraConfig)
            \(extra)
            """
        let path = directory + "/n\(index + 1).yaml"
        try config.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Writes one line at node `index`: its HTTP status (nil when the node is unreachable).
    func write(_ line: String, at index: Int) -> Int? {
        guard let node = nodes[index], let client = try? TestHTTPClient(port: node.port, timeoutSeconds: 5) else { return nil }
        return try? client.request("POST", "/write?db=raft&precision=ms", body: Array(line.utf8)).status
    }

    /// One of node `index`'s counters or gauges at `/metrics` (the first sample of `name`).
    func metric(_ name: String, at index: Int) -> Double? {
        guard let node = nodes[index], let client = try? TestHTTPClient(port: node.port, timeoutSeconds: 5),
              let text = try? client.request("GET", "/metrics").text,
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name + " ") || $0.hasPrefix(name + "{") }) else { return nil }
        return line.split(separator: " ").last.flatMap { Double($0) }
    }

    /// The timestamps of `root.raft.<device>.v` that node `index`'s own replicas hold (a weak
    /// read: any replica answers, the node's own first).
    func stored(at index: Int, device: String = "m") -> Set<Int64>? {
        let sql = #"{"sql":"select v from root.raft.\#(device)","row_limit":100000,"consistency":"weak"}"#
        guard let node = nodes[index], let client = try? TestHTTPClient(port: node.port, timeoutSeconds: 5),
              let response = try? client.request("POST", "/rest/v2/query", body: Array(sql.utf8),
                                                  headers: ["Content-Type": "application/json"]),
              let json = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] else { return nil }
        return Set((json["timestamps"] as? [Int64]) ?? [])
    }

    /// `/cluster` of node `index`, parsed.
    func status(at index: Int) -> [String: Any]? {
        guard let node = nodes[index], let client = try? TestHTTPClient(port: node.port, timeoutSeconds: 5),
              let response = try? client.request("GET", "/cluster") else { return nil }
        return try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]
    }

    /// The data region groups of `database`, as the meta state at node `index` lists them.
    func dataGroups(at index: Int, of database: String = "root.raft") -> [String] {
        let meta = status(at: index)?["meta"] as? [String: Any]
        return ((meta?["region_groups"] as? [[String: Any]]) ?? []).filter {
            $0["database"] as? String == database && ($0["id"] as? String)?.hasPrefix("data-") == true
        }.compactMap { $0["id"] as? String }.sorted()
    }

    /// The node that says it leads a data group of `database`, if one does now.
    func leader(of database: String = "root.raft") -> Int? {
        nodes.indices.first { index in
            let groups = Set(dataGroups(at: index, of: database))
            let held = (status(at: index)?["groups"] as? [[String: Any]]) ?? []
            return held.contains { groups.contains($0["group"] as? String ?? "") && $0["role"] as? String == "leader" }
        }
    }

    /// Waits (bounded) for a leader of `root.raft`'s data, creating the database first when
    /// no node lists it: its index.
    func awaitLeader(within seconds: Double = 30) throws -> Int {
        var found: Int?
        _ = eventually(within: seconds, pollingEveryMs: 50) {
            if let any = nodes.indices.first(where: { nodes[$0] != nil }), dataGroups(at: any).isEmpty {
                _ = sql("create database root.raft", at: any)
                return false
            }
            found = leader()
            return found != nil
        }
        guard let found else { throw TestClientError(description: "no leader within \(seconds) s; stderr: \(nodes.compactMap { $0?.stderr.suffix(1500) })") }
        return found
    }

    /// The client address node `index` answers on.
    func address(of index: Int) -> String { "127.0.0.1:\(nodes[index]!.port)" }

    /// A statement at node `index` (`/rest/v2/query` for a SELECT or SHOW, else `/rest/v2/nonQuery`):
    /// the HTTP status and the JSON body; nil when the node is unreachable.
    /// `weak`: a weak read, which the node's own replicas answer when they can.
    func sql(_ statement: String, at index: Int, authorization: String = TestHTTPClient.rootAuthorization,
             weak: Bool = false) -> (status: Int, json: [String: Any])? {
        let query = ["select", "show", "count", "list"].contains { statement.lowercased().hasPrefix($0) }
        let body = try! JSONSerialization.data(withJSONObject: weak ? ["sql": statement, "consistency": "weak"] : ["sql": statement])
        guard let node = nodes[index], let client = try? TestHTTPClient(port: node.port, timeoutSeconds: 10),
              let response = try? client.request("POST", query ? "/rest/v2/query" : "/rest/v2/nonQuery", body: Array(body),
                                                  headers: ["Content-Type": "application/json", "Authorization": authorization]) else { return nil }
        let json = (try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]) ?? [:]
        return (response.status, json)
    }

    /// The first column of a statement's answer at node `index`, as text.
    func column(_ statement: String, _ column: String, at index: Int, weak: Bool = false) -> [String]? {
        guard let (status, json) = sql(statement, at: index, weak: weak), status == 200,
              let names = json["column_names"] as? [String], let position = names.firstIndex(of: column),
              let values = json["values"] as? [[Any]], position < values.count else { return nil }
        return values[position].map { "\($0)" }
    }

    /// Stops every node still running (SIGKILL when `kill`), by PID.
    func stopAll(kill: Bool = false) {
        for index in nodes.indices {
            _ = try? nodes[index]?.stop(signal: kill ? SIGKILL : SIGTERM)
            nodes[index] = nil
        }
    }

}
