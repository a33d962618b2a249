import Foundation
import Testing
import TidemarkCluster
import TidemarkCore
import Logging
import TidemarkQuery
import TidemarkServer
import TidemarkStorage
import TidemarkTestSupport

/// Everything stored for `path`, read straight from the node's regions after it stopped.
private func stored(_ dataDir: String, _ path: String) throws -> (timestamps: [Int64], values: Column) {
    let regions = try LocalRegion.openAll(dataDir: dataDir, options: EngineOptions(), logger: Logger(label: "test"))
    defer { for region in regions { region.close() } }
    return try RegionUnion(scanBatchPoints: 4096) { regions.map(\.engine) }.scan(path: path, range: Int64.min...Int64.max).all()
}

@Suite(.serialized) struct WriteTests {
    @Test func lineProtocolWritesGoodLinesAndReportsBadOnesByNumber() throws {
        let dataDir = try temporaryDirectory("data")
        let node = try NodeProcess(arguments: ["--http-listen", "127.0.0.1:0", "--data-dir", dataDir])
        let client = try TestHTTPClient(port: node.port)
        let good = try client.request("POST", "/write?db=plant1&precision=ms", body: Array("""
            weather,site=s1 temperature=21.5,ok=true 1000
            weather,site=s1 temperature=21.75 2000
            """.utf8))
        #expect(good.status == 204)
        let mixed = try client.request("POST", "/write?db=plant1&precision=s", body: Array("""
            weather,site=s1 temperature=22.25 3
            weather,site=s1 temperature=1i 4
            not a line
            weather,site=s2 temperature=5 5
            """.utf8))
        #expect(mixed.status == 400)
        #expect(mixed.text.contains("line 2, column 1: root.plant1.weather.s1.temperature is DOUBLE, got a INT64 value"))
        #expect(mixed.text.contains("line 3, column"))
        #expect(!mixed.text.contains("line 1,") && !mixed.text.contains("line 4,"))
        // A request whose only value of a series has another type than the schema's: that
        // line is refused, the rest of the request lands.
        let schemaConflict = try client.request("POST", "/write?db=plant1&precision=s", body: Array("""
            weather,site=s1 temperature=7i 6
            weather,site=s3 temperature=1.5 6
            """.utf8))
        #expect(schemaConflict.status == 400)
        #expect(schemaConflict.text.contains("line 1, column 1: root.plant1.weather.s1.temperature is DOUBLE, got a INT64 value"))
        #expect(!schemaConflict.text.contains("line 2,"))
        #expect(try client.request("POST", "/write", body: Array("m f=1".utf8)).status == 400)  // no db
        #expect(try client.request("POST", "/write?db=plant1&u=root&p=root", body: Array("q f=1 1".utf8), headers: ["Authorization": ""]).status == 204)
        // Refused from its head, before its body was read: the answer closes the connection.
        let refused = try client.request("POST", "/write?db=plant1&u=root&p=bad", body: Array("q f=1 1".utf8), headers: ["Authorization": ""])
        #expect(refused.status == 401)
        #expect(refused.headers["connection"] == "close")
        let second = try TestHTTPClient(port: node.port)
        #expect(try second.request("POST", "/write?db=x&precision=h", body: Array("m f=1".utf8)).status == 400)
        #expect(try second.request("GET", "/write?db=x").status == 405)
        #expect(try node.stop() == 0)

        let temperature = try stored(dataDir, "root.plant1.weather.s1.temperature")
        #expect(temperature.timestamps == [1000, 2000, 3000])
        #expect(temperature.values == .double([21.5, 21.75, 22.25]))
        #expect(try stored(dataDir, "root.plant1.weather.s1.ok").values == .boolean([true]))
        #expect(try stored(dataDir, "root.plant1.weather.s2.temperature").timestamps == [5000])
        #expect(try stored(dataDir, "root.plant1.weather.s3.temperature").timestamps == [6000])
    }

    @Test func theCLIWritesAFileAndQueriesIt() throws {
        let node = try NodeProcess(arguments: ["--http-listen", "127.0.0.1:0", "--data-dir", try temporaryDirectory("data")])
        let url = "http://127.0.0.1:\(node.port)"
        let file = try temporaryDirectory("lp") + "/points.lp"
        try (0..<12).map { "press,line=l1 temp=\(20 + $0).5 \($0)" }.joined(separator: "\n").write(toFile: file, atomically: true, encoding: .utf8)
        let write = try runProcess(try builtProduct("tidemark"), ["write", file, "--db", "plant", "--precision", "s", "--batch-lines", "5", "--url", url])
        #expect(write.status == 0, "\(write.stderr)")
        #expect(write.stdout.contains("12 lines in 3 requests, 0 with errors"))
        let count = try runProcess(try builtProduct("tidemark"), ["sql", "--url", url, "--format", "csv", "-e", "select count(temp), max_value(temp) from root.plant.press.l1"])
        #expect(count.stdout == "count(root.plant.press.l1.temp),max_value(root.plant.press.l1.temp)\n12,31.5\n")
        let shell = try runProcess(try builtProduct("tidemark"), ["sql", "--url", url],
                                   stdin: "create database root.other;\nshow\n databases;\nselec;\n")
        #expect(shell.stdout.contains("OK ("))
        #expect(shell.stdout.contains("| root.other"))
        #expect(shell.stderr.contains("error 700: line 1, column 1"))
        let bench = try runProcess(try builtProduct("tidemark"), ["bench", "--url", url, "--devices", "20", "--fields", "3",
                                                                 "--batch-lines", "50", "--connections", "2", "--duration", "1"])
        #expect(bench.status == 0, "\(bench.stdout) \(bench.stderr)")
        #expect(bench.stdout.contains("points/s") && bench.stdout.contains(", 0 errors"))
        let stored = try runProcess(try builtProduct("tidemark"), ["sql", "--url", url, "--format", "csv", "-e", "count timeseries root.bench.**"])
        #expect(stored.stdout == "count\n60\n")
        let wrongPassword = try runProcess("/usr/bin/env", ["TIDEMARK_PASSWORD=nope", try builtProduct("tidemark"), "sql", "--url", url, "-e", "show databases"])
        #expect(wrongPassword.status == 1)
        #expect(wrongPassword.stderr.contains("WRONG_LOGIN_PASSWORD"))
        #expect(try node.stop() == 0)
    }

    @Test func thePythonInfluxDBClientWritesThroughWrite() throws {
        let dataDir = try temporaryDirectory("data")
        let node = try NodeProcess(arguments: ["--http-listen", "127.0.0.1:0", "--data-dir", dataDir])
        let script = """
            import sys
            from influxdb import InfluxDBClient
            client = InfluxDBClient(host="127.0.0.1", port=int(sys.argv[1]), username="root", password="root", database="factory", timeout=10)
            points = [{"measurement": "press", "tags": {"line": "l3", "unit": "p7"}, "time": 1700000000000 + i * 10000,
                       "fields": {"temperature": 20.0 + i / 100, "cycles": i, "state": "run" if i % 2 else "idle"}}
                      for i in range(500)]
            assert client.write_points(points, time_precision="ms", batch_size=200)
            print("written", len(points))
            """
        let result = try runProcess("/usr/bin/env", ["python3", "-c", script, String(node.port)])
        #expect(result.status == 0, "python: \(result.stderr)")
        #expect(result.stdout.contains("written 500"))
        #expect(try node.stop() == 0)
        let temperature = try stored(dataDir, "root.factory.press.l3.p7.temperature")
        #expect(temperature.timestamps == (0..<500).map { 1_700_000_000_000 + Int64($0) * 10_000 })
        guard case .double(let values) = temperature.values else { Issue.record("temperature is not DOUBLE"); return }
        #expect(values == (0..<500).map { 20.0 + Double($0) / 100 })
        #expect(try stored(dataDir, "root.factory.press.l3.p7.cycles").values == .int64((0..<500).map(Int64.init)))
        #expect(try stored(dataDir, "root.factory.press.l3.p7.state").values == .text((0..<500).map { $0 % 2 == 1 ? "run" : "idle" }))
    }
}
