import Foundation
import Testing
import TidemarkCore
import TidemarkStages
import TidemarkTestSupport
@testable import TidemarkQuery
@testable import TidemarkServer

private func basic(_ user: String, _ password: String) -> String {
    "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
}

/// A client of a real node, sending SQL and line protocol as root unless told otherwise.
private struct Client {
    let http: TestHTTPClient

    init(_ node: NodeProcess) throws { http = try TestHTTPClient(port: node.port, timeoutSeconds: 60) }

    func sql(_ statement: String, as authorization: String = TestHTTPClient.rootAuthorization) throws -> WireResponse {
        let isQuery = statement.lowercased().hasPrefix("select") || statement.lowercased().hasPrefix("show")
            || statement.lowercased().hasPrefix("count")
        let body = "{\"sql\":\(String(data: try JSONEncoder().encode(statement), encoding: .utf8)!)}"
        return try http.request("POST", isQuery ? "/rest/v2/query" : "/rest/v2/nonQuery", body: Array(body.utf8),
                                headers: ["Authorization": authorization])
    }

    func write(_ lines: String, db: String, precision: String = "ms") throws -> WireResponse {
        try http.request("POST", "/write?db=\(db)&precision=\(precision)", body: Array(lines.utf8))
    }

    func ping() throws -> Int { try http.request("GET", "/ping").status }
}

/// What a hostile client found (issue 27), each against a real `tidemarkd`: the node answers
/// with an error that says what is wrong, stays up, and stops cleanly afterwards.
@Suite(.serialized) struct HostileClientTests {
    @Test func deepStatementsAndHugeNumbersGetAnswersNotACrash() throws {
        let node = try NodeProcess(arguments: ["--http-listen", "127.0.0.1:0", "--data-dir", try temporaryDirectory("hostile")])
        let client = try Client(node)
        #expect(try client.sql("insert into root.x.d(time, v) values (1, 1)").status == 200)
        let deep = [
            "select " + String(repeating: "(", count: 30_000) + "1" + String(repeating: ")", count: 30_000) + " from root.x",
            "select v" + String(repeating: "+v", count: 30_000) + " from root.x.d",
            "select v from root.x.d where " + String(repeating: "not ", count: 100_000) + "v > 1",
            "select " + String(repeating: "count(", count: 50_000) + "v" + String(repeating: ")", count: 50_000) + " from root.x.d",
            "select v from root.x.d where " + String(repeating: "(", count: 40_000) + "v > 1" + String(repeating: ")", count: 40_000),
        ]
        for statement in deep {
            let answer = try client.sql(statement)
            #expect(answer.status == 200 && answer.text.hasPrefix(#"{"code":700,"#) && answer.text.contains("nests deeper than 256"),
                    "\(statement.prefix(30))…: \(answer.text.prefix(200))")
        }
        let huge = "9223372036854775807"
        let constant = try client.sql("select 1 from root.a.b limit \(huge) offset 1")
        #expect(constant.status == 200 && constant.text.contains(#""timestamps":[]"#))
        #expect(try client.sql("select v from root.x.d limit \(huge) offset \(huge)").text.contains(#""timestamps":[]"#))
        #expect(try client.sql("select v from root.x.d order by time desc limit \(huge) offset \(huge)").status == 200)
        #expect(try client.ping() == 200)
        #expect(try node.stop() == 0)
    }

    @Test func aPointAtTheLastMillisecondIsReadAndTheNodeStops() throws {
        let dataDir = try temporaryDirectory("hostile")
        var node = try NodeProcess(arguments: ["--http-listen", "127.0.0.1:0", "--data-dir", dataDir])
        var client = try Client(node)
        #expect(try client.write("x v=1 9223372036854775807\nx v=2 0\nx v=3 -9223372036854775808", db: "p").status == 204)
        // Two reads at once once took both query threads for good.
        for _ in 0..<3 {
            let answer = try client.sql("select v from root.p.x")
            #expect(answer.text.contains(#""timestamps":[-9223372036854775808,0,9223372036854775807]"#), "\(answer.text)")
        }
        // The flush files each point under its time partition: Int64.min's once trapped there.
        #expect(try client.http.request("POST", "/flush").status == 200)
        #expect(try client.sql("select v from root.p.x where time >= 9223372036854775807").text.contains(#""timestamps":[9223372036854775807]"#))
        #expect(try node.stop() == 0)
        node = try NodeProcess(arguments: ["--http-listen", "127.0.0.1:0", "--data-dir", dataDir])
        client = try Client(node)
        #expect(try client.sql("select v from root.p.x").text.contains(#""timestamps":[-9223372036854775808,0,9223372036854775807]"#))
        #expect(try node.stop() == 0)
    }

    @Test func aUserReadsNothingThroughAClauseItHasNoPrivilegeFor() throws {
        let node = try NodeProcess(arguments: ["--http-listen", "127.0.0.1:0", "--data-dir", try temporaryDirectory("hostile")])
        let client = try Client(node)
        #expect(try client.sql("insert into root.b.d(time, secret, open) values (5, 42, 1)").status == 200)
        #expect(try client.sql("create user mallory 'pass-word1'").status == 200)
        #expect(try client.sql("grant READ_DATA on root.b.d.open to user mallory").status == 200)
        let mallory = basic("mallory", "pass-word1")
        for statement in ["select 0 from root.b.d where time = 5 and secret <= 42",
                          "select open from root.b.d where secret > 41",
                          "select count(open) from root.b.d where not (secret < 42)",
                          "select open from root.b.* where secret = 42 order by time desc"] {
            let answer = try client.sql(statement, as: mallory)
            #expect(answer.status == 403 && answer.text.contains("READ_DATA on [root.b."), "\(statement): \(answer.text)")
        }
        #expect(try client.sql("select open from root.b.d where open = 1 and time > 0", as: mallory).text.contains("[[1"))
        #expect(try node.stop() == 0)
    }

    @Test func badLinesAreListedAndTheGoodOnesWritten() throws {
        let config = try temporaryDirectory("hostile") + "/node.yaml"
        try "storage: {fields_per_line_max: 1000, series_per_write_max: 50}\n".write(toFile: config, atomically: true, encoding: .utf8)
        let node = try NodeProcess(arguments: ["--config", config, "--http-listen", "127.0.0.1:0", "--data-dir", try temporaryDirectory("hostile")])
        let client = try Client(node)
        let longLevel = String(repeating: "t", count: 200)
        let deepTags = (1...20).map { "k\($0)=v\($0)" }.joined(separator: ",")
        let wide = "w " + (0..<1001).map { "f\($0)=1" }.joined(separator: ",") + " 4"
        let answer = try client.write("good v=1 1\nm,tag=\(longLevel) v=1 2\nm,\(deepTags) v=1 3\n\(wide)\ngood v=2 5", db: "lp")
        #expect(answer.status == 400, "\(answer.text)")
        #expect(answer.text.contains("3 line(s) dropped") && answer.text.contains("line 2") && answer.text.contains("level_bytes_max")
                && answer.text.contains("line 3") && answer.text.contains("path_depth_max")
                && answer.text.contains("line 4") && answer.text.contains("fields_per_line_max"), "\(answer.text)")
        #expect(try client.sql("select v from root.lp.good").text.contains(#""timestamps":[1,5]"#))
        #expect(try client.sql("count timeseries root.lp.**").text.contains("[[1]]"))
        // More series than series_per_write_max: refused whole before the schema sees them.
        let many = (0..<51).map { "s\($0) v=1 1" }.joined(separator: "\n")
        let tooMany = try client.write(many, db: "lp")
        #expect(tooMany.status == 413 && tooMany.text.contains("series_per_write_max"))
        #expect(try client.sql("count timeseries root.lp.**").text.contains("[[1]]"))
        #expect(try node.stop() == 0)
    }

    @Test func aBackquotedPlainNameIsThePlainName() throws {
        let node = try NodeProcess(arguments: ["--http-listen", "127.0.0.1:0", "--data-dir", try temporaryDirectory("hostile")])
        let client = try Client(node)
        #expect(try client.sql("insert into root.uni.`plain`(time, `v`) values (1, 1)").status == 200)
        #expect(try client.sql("insert into root.uni.plain(time, v) values (2, 2)").status == 200)
        #expect(try client.http.request("POST", "/rest/v2/insertTablet", body: Array("""
            {"device":"root.uni.`plain`","measurements":["`v`"],"data_types":["INT64"],"values":[[3]],"timestamps":[3]}
            """.utf8)).text.contains("SUCCESS"))
        #expect(try client.sql("count timeseries root.uni.**").text.contains("[[1]]"))
        #expect(try client.sql("select v from root.uni.`plain`").text.contains(#""timestamps":[1,2,3]"#))
        // Quotes that are needed stay: a dotted level is one level.
        #expect(try client.sql("insert into root.uni.`a.b`(time, v) values (1, 1)").status == 200)
        #expect(try client.sql("show devices root.uni.**").text.contains(#"["root.uni.`a.b`","root.uni.plain"]"#))
        // A database level over level_bytes_max is refused like a series level.
        let long = try client.sql("create database root.\(String(repeating: "d", count: 500))")
        #expect(long.text.hasPrefix(#"{"code":509,"#) && long.text.contains("level_bytes_max"), "\(long.text)")
        #expect(try node.stop() == 0)
    }

    @Test func accessNeedsReadDataOnEveryPathAStatementReads() throws {
        func needs(_ sql: String) throws -> [String] {
            Access.needs(try Parser.parse(sql, nowMs: 0), user: "u").filter { $0.0 == .readData }.map(\.1)
        }
        #expect(try needs("select a from root.s.d where b > 1 and (time > 5 or not c = 2)") == ["root.s.d.a", "root.s.d.b", "root.s.d.c"])
        #expect(try needs("select 0 from root.s.d where time = 5 and secret <= 3") == ["root.s.d.secret"])
        #expect(try needs("select count(a) from root.s.* where b > 0 group by level = 1") == ["root.s.*.a", "root.s.*.b"])
        #expect(try needs("select a + b from root.s.d, root.t.d where c > 0 order by time desc")
                == ["root.s.d.a", "root.s.d.b", "root.s.d.c", "root.t.d.a", "root.t.d.b", "root.t.d.c"])
        #expect(try needs("select count(a) from root.s.d group by ([0, 10), 1ms), level = 1 fill(previous)") == ["root.s.d.a"])
    }

    @Test func aQueryStageThatRefusesNamesItself() throws {
        let answer = RESTv2.refused(by: "query", .overloaded, route: "/rest/v2/query")
        let body = try JSONSerialization.jsonObject(with: Data(answer.body)) as? [String: Any]
        #expect(answer.status == 503 && body?["stage"] as? String == "query" && body?["code"] as? Int == 606)
    }
}
