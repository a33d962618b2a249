import TidemarkCore
import Foundation
import Logging
import Testing
import TidemarkCluster
import TidemarkServer
import TidemarkStorage
import TidemarkTestSupport

/// Parses a Prometheus text page with the reference Python parser (prometheus_client)
/// and returns, per metric family, its type and samples as "name{labels} value" lines.
private func parsePrometheus(_ page: String) throws -> [String: (type: String, samples: [String])] {
    let script = """
        import json, sys
        from prometheus_client.parser import text_string_to_metric_families
        out = {}
        for family in text_string_to_metric_families(sys.stdin.read()):
            out[family.name] = {"type": family.type, "samples": [
                s.name + "{" + ",".join(k + "=" + v for k, v in sorted(s.labels.items())) + "} " + ("%g" % s.value)
                for s in family.samples]}
        print(json.dumps(out))
        """
    let result = try runProcess("/usr/bin/env", ["python3", "-c", script], stdin: page)
    guard result.status == 0 else { throw TestClientError(description: "prometheus_client rejected /metrics: \(result.stderr)") }
    let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as! [String: [String: Any]]
    return json.mapValues { ($0["type"] as! String, $0["samples"] as! [String]) }
}

/// Failures collected from several client threads.
private final class LockedFailures: @unchecked Sendable {
    private let lock = NSLock()
    private var failures: [String] = []  // protected by lock
    func add(_ failure: String) { lock.withLock { failures.append(failure) } }
    var all: [String] { lock.withLock { failures } }
}

private func writeConfig(_ yaml: String) throws -> String {
    let path = try temporaryDirectory("config") + "/node.yaml"
    try yaml.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

/// Connects to 127.0.0.1:`port`, sends `request`, and resets the connection at once
/// (SO_LINGER 0), before the answer can be read. False when it could not connect.
private func sendAndReset(port: Int, _ request: String) -> Bool {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard descriptor >= 0 else { return false }
    defer { close(descriptor) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    let connected = withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
    guard connected else { return false }
    var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
    setsockopt(descriptor, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
    let bytes = Array(request.utf8)
    return send(descriptor, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count
}

@Suite(.serialized) struct NodeProcessTests {
    /// Clients that hang up (a reset) before their answer is written: the node's write fails
    /// on a dead socket, which must close that connection, not end the process (SIGPIPE).
    @Test func clientsThatHangUpBeforeTheirAnswerDoNotStopTheNode() throws {
        let config = try writeConfig("""
            data_dir: \(try temporaryDirectory("data"))
            http: {listen: 127.0.0.1:0}
            """)
        let node = try NodeProcess(arguments: ["--config", config])
        let request = "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
        // Pipelined: the answers queue several writes on a socket already reset.
        for _ in 0..<200 { #expect(sendAndReset(port: node.port, String(repeating: request, count: 8)), "the node stopped taking connections") }
        #expect(node.process.isRunning)
        #expect(try TestHTTPClient(port: node.port).request("GET", "/ping").status == 200)
        #expect(try node.stop() == 0)
    }

    @Test func nodeServesPingMetricsAndStagesThenStopsCleanlyOnSIGTERM() throws {
        let dataDir = try temporaryDirectory("data")
        let config = try writeConfig("""
            node_name: e2e
            data_dir: \(dataDir)
            http: {listen: 127.0.0.1:0}
            stages:
              decode: {threads: 1, batch: 8}
            """)
        let node = try NodeProcess(arguments: ["--config", config])
        let client = try TestHTTPClient(port: node.port)

        let ping = try client.request("GET", "/ping")
        #expect(ping.status == 200)
        #expect(ping.text == #"{"code":200,"message":"SUCCESS_STATUS"}"#)

        let metrics = try client.request("GET", "/metrics")
        #expect(metrics.status == 200)
        #expect(metrics.headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") == true)
        let families = try parsePrometheus(metrics.text)
        for (name, type) in [("tidemark_stage_queue_depth", "gauge"), ("tidemark_stage_queue_capacity", "gauge"),
                             ("tidemark_stage_threads", "gauge"), ("tidemark_stage_busy_threads", "gauge"),
                             ("tidemark_stage_completed", "counter"), ("tidemark_stage_blocked", "counter"),
                             ("tidemark_stage_rejected", "counter"), ("tidemark_stage_queue_wait_seconds", "histogram"),
                             ("tidemark_stage_service_seconds", "histogram"), ("tidemark_http_requests", "counter"),
                             ("process_resident_memory_bytes", "gauge"), ("process_open_fds", "gauge"),
                             ("tidemark_uptime_seconds", "gauge"), ("tidemark_storage_segments", "gauge"),
                             ("tidemark_storage_memtable_bytes", "gauge"), ("tidemark_storage_quarantined_segments", "counter")] {
            #expect(families[name]?.type == type, "family \(name)")
        }
        let threads = try #require(families["tidemark_stage_threads"]).samples
        #expect(threads.count == 8)  // the seven stages of DESIGN.md and the auth stage
        #expect(threads.contains("tidemark_stage_threads{stage=decode} 1"))
        #expect(try #require(families["tidemark_http_requests"]).samples.contains("tidemark_http_requests_total{route=/ping,status=200} 1"))
        let rss = try #require(families["process_resident_memory_bytes"]?.samples.first)
        #expect((Double(rss.split(separator: " ").last!) ?? 0) > 1_000_000)
        let waits = try #require(families["tidemark_stage_queue_wait_seconds"]).samples
        #expect(waits.contains { $0.hasPrefix("tidemark_stage_queue_wait_seconds_count{stage=decode} ") && !$0.hasSuffix(" 0") })

        let stages = try client.request("GET", "/stages")
        let reports = try StageReport.decode(stages.body)
        // The seven stages of DESIGN.md, then the auth stage that hashes passwords.
        #expect(reports.map(\.name) == ["decode", "route", "append", "apply", "query", "flush", "handoff", "auth"])
        #expect(reports.first?.batchSize == 8)
        #expect((reports.first?.completed ?? 0) >= 2)

        let cli = try runProcess(try builtProduct("tidemark"), ["stages", "--url", "http://127.0.0.1:\(node.port)"])
        #expect(cli.status == 0)
        let lines = cli.stdout.split(separator: "\n")
        #expect(lines.first?.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
            == "Stage Threads Active Pending Completed Blocked Rejected p99 wait p99 service")
        #expect(lines.count == 9)
        #expect(lines.contains { $0.hasPrefix("handoff ") })
        #expect(lines.contains { $0.hasPrefix("auth ") })

        #expect(try client.request("GET", "/nope").status == 404)
        #expect(try client.request("POST", "/ping", body: []).status == 405)

        #expect(try node.stop(signal: SIGTERM) == 0)
        #expect(node.stderr.contains("stopped cleanly"))
    }

    @Test func concurrentPipelinedClientsAllGetTheirAnswersInOrder() throws {
        let node = try NodeProcess(arguments: ["--http-listen", "127.0.0.1:0", "--data-dir", try temporaryDirectory("data")])
        let clients = 8, rounds = 40, depth = 8
        let failures = LockedFailures()
        DispatchQueue.concurrentPerform(iterations: clients) { index in
            do {
                let client = try TestHTTPClient(port: node.port)
                for round in 0..<rounds {
                    // Alternate a route answered by the stage with a 404, so order is visible.
                    let targets = (0..<depth).map { $0 % 2 == 0 ? "/ping" : "/missing-\(index)-\(round)-\($0)" }
                    try client.send(targets.map { "GET \($0) HTTP/1.1\r\nHost: t\r\nAuthorization: \(TestHTTPClient.rootAuthorization)\r\n\r\n" }.joined())
                    for target in targets {
                        let response = try client.readResponse()
                        let expected = target == "/ping" ? 200 : 404
                        if response.status != expected || (expected == 404 && !response.text.contains(target)) {
                            failures.add("client \(index) round \(round): \(target) got \(response.status) \(response.text)")
                        }
                    }
                }
            } catch {
                failures.add("client \(index): \(error)")
            }
        }
        #expect(failures.all.isEmpty, "\(failures.all.prefix(5))")
        let stages = try StageReport.decode(try TestHTTPClient(port: node.port).request("GET", "/stages").body)
        #expect((stages.first?.completed ?? 0) >= UInt64(clients * rounds * depth))
        #expect(try node.stop() == 0)
    }

    @Test func sigintAlsoStopsCleanlyAndReleasesTheDataDirectory() throws {
        let dataDir = try temporaryDirectory("data")
        let first = try NodeProcess(arguments: ["--http-listen", "127.0.0.1:0", "--data-dir", dataDir])
        // A second node on the same data directory must refuse to start.
        let second = try runProcess(try builtProduct("tidemarkd"), ["--http-listen", "127.0.0.1:0", "--data-dir", dataDir])
        #expect(second.status == 1)
        #expect(second.stderr.contains("another tidemarkd is using it"))
        #expect(try first.stop(signal: SIGINT) == 0)
        let third = try NodeProcess(arguments: ["--http-listen", "127.0.0.1:0", "--data-dir", dataDir])
        #expect(try third.stop() == 0)
    }

    @Test(arguments: [
        ("stages:\n  decdoe: {threads: 1}\n", "node.yaml:2:11: stages.decdoe: unknown key"),
        ("stages:\n  decode:\n    thread: 1\n", "node.yaml:3:13: stages.decode.thread: unknown key"),
        ("listen: 1\n", "node.yaml:1:9: listen: unknown key"),
        ("stages:\n  route:\n    threads: many\n", "node.yaml:3:14: stages.route.threads: expected an integer, got \"many\""),
        ("stages:\n  apply: {threads: 0}\n", "node.yaml:2:10: stages.apply.threads: must be at least 1 unless inline is true (got 0)"),
        ("stages:\n  route: {queue: 0}\n", "node.yaml:2:10: stages.route.queue: must be at least 1 (got 0)"),
        ("http: {listen: nowhere}\n", "node.yaml:1:16: http.listen: expected HOST:PORT, got \"nowhere\""),
        ("http: {listen: \"db.example:80\"}\n", "node.yaml:1:16: http.listen: host must be an IPv4 or IPv6 address"),
    ])
    func configMistakesExitWithStatus2AndOneLine(yaml: String, expected: String) throws {
        let config = try writeConfig(yaml)
        let result = try runProcess(try builtProduct("tidemarkd"), ["--config", config])
        #expect(result.status == 2)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1)
        #expect(lines.first.map { $0.hasPrefix("tidemarkd: config error: \(config.dropLast("node.yaml".count))") } == true)
        #expect(lines.first?.contains(expected) == true, "got: \(result.stderr)")
    }

    @Test func aDamagedSegmentIsQuarantinedAtStartAndCountedInMetrics() throws {
        let dataDir = try temporaryDirectory("data")
        let regionDir = dataDir + "/regions/0"
        do {
            let region = try LocalRegion(dataDir: dataDir, options: EngineOptions(), logger: Logger(label: "test"))
            try region.write([PointWrite(path: "root.sg.d.s", timestamp: 1, value: .int64(7))])
            try region.engine.flush()
            region.close()
        }
        let segment = try #require(try FileManager.default.contentsOfDirectory(atPath: regionDir + "/segments").first)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: regionDir + "/segments/" + segment))
        bytes[bytes.count - 30] ^= 0xFF  // inside the footer
        try bytes.write(to: URL(fileURLWithPath: regionDir + "/segments/" + segment))
        let node = try NodeProcess(arguments: ["--http-listen", "127.0.0.1:0", "--data-dir", dataDir])
        let families = try parsePrometheus(try TestHTTPClient(port: node.port).request("GET", "/metrics").text)
        #expect(families["tidemark_storage_quarantined_segments"]?.samples == ["tidemark_storage_quarantined_segments_total{} 1"])
        #expect(families["tidemark_storage_segments"]?.samples == ["tidemark_storage_segments{} 0"])
        #expect(node.stderr.contains("quarantined a damaged segment"))
        #expect(FileManager.default.fileExists(atPath: regionDir + "/quarantine/" + segment))
        #expect(try node.stop() == 0)
    }

    @Test func aTakenPortIsReportedAndTheNodeExits1() throws {
        let first = try NodeProcess(arguments: ["--http-listen", "127.0.0.1:0", "--data-dir", try temporaryDirectory("data")])
        let second = try runProcess(try builtProduct("tidemarkd"),
                                    ["--http-listen", "127.0.0.1:\(first.port)", "--data-dir", try temporaryDirectory("data")])
        #expect(second.status == 1)
        #expect(second.stderr.contains("127.0.0.1:\(first.port): address already in use"))
        #expect(try first.stop() == 0)
    }

    @Test func unreadableConfigExitsWithStatus2() throws {
        let result = try runProcess(try builtProduct("tidemarkd"), ["--config", "/nonexistent/node.yaml"])
        #expect(result.status == 2)
        #expect(result.stderr == "tidemarkd: config error: /nonexistent/node.yaml: cannot read file: No such file or directory\n")
    }
}
