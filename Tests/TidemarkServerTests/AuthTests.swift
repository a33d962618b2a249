import Foundation
import Testing
import TidemarkTestSupport

private func basic(_ user: String, _ password: String) -> String {
    "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
}

@Suite(.serialized) struct AuthTests {
    @Test func credentialsPrivilegesAndUsersThatSurviveARestart() throws {
        let dataDir = try temporaryDirectory("data")
        var node = try NodeProcess(arguments: ["--http-listen", "127.0.0.1:0", "--data-dir", dataDir])
        var client = try TestHTTPClient(port: node.port)
        #expect(node.stderr.contains("default password"))
        // /ping and /metrics are open; everything else needs credentials.
        #expect(try client.request("GET", "/ping", headers: ["Authorization": ""]).status == 200)
        #expect(try client.request("GET", "/metrics", headers: ["Authorization": ""]).status == 200)
        let none = try client.request("GET", "/stages", headers: ["Authorization": ""])
        #expect(none.status == 401 && none.text == #"{"code":800,"message":"INIT_AUTH_ERROR"}"#)
        let wrong = try client.request("POST", "/rest/v2/query", body: Array(#"{"sql":"show databases"}"#.utf8), headers: ["Authorization": basic("root", "nope")])
        #expect(wrong.status == 401 && wrong.text == #"{"code":801,"message":"WRONG_LOGIN_PASSWORD"}"#)
        // Refused before its body was read, so the connection cannot go on.
        #expect(wrong.headers["connection"] == "close")
        client = try TestHTTPClient(port: node.port)
        let malformed = try client.request("GET", "/stages", headers: ["Authorization": "Basic !!!"])
        #expect(malformed.status == 400 && malformed.text == #"{"code":303,"message":"Illegal format of authorization header."}"#)

        // A refused statement closes its connection (its body is never read): each gets its own.
        func sql(_ statement: String, as authorization: String = TestHTTPClient.rootAuthorization, query: Bool = false) throws -> WireResponse {
            try TestHTTPClient(port: node.port).request("POST", query ? "/rest/v2/query" : "/rest/v2/nonQuery",
                               body: Array("{\"sql\":\(String(data: try JSONEncoder().encode(statement), encoding: .utf8)!)}".utf8),
                               headers: ["Authorization": authorization])
        }
        #expect(try sql("insert into root.plant.d1(time, s) values (1, 1.5)").status == 200)
        #expect(try sql("create user alice 'secret1'").text == #"{"code":200,"message":"SUCCESS_STATUS"}"#)
        let alice = basic("alice", "secret1")
        let denied = try sql("select s from root.plant.d1", as: alice, query: true)
        #expect(denied.status == 403)
        #expect(denied.text == #"{"code":803,"message":"No permissions for this operation, please add privilege READ_DATA on [root.plant.d1.s]"}"#)
        #expect(try sql("grant READ_DATA on root.plant.** to user alice").status == 200)
        #expect(try sql("select s from root.plant.d1", as: alice, query: true).text.contains("[[1.5]]"))
        #expect(try sql("insert into root.plant.d1(time, s) values (2, 2.5)", as: alice).status == 403)
        let lineDenied = try client.request("POST", "/write?db=plant", body: Array("m f=1 1".utf8), headers: ["Authorization": alice])
        #expect(lineDenied.status == 403 && lineDenied.text.contains("WRITE_DATA"))
        #expect(try sql("create user bob 'secret2'", as: alice).status == 403)
        #expect(try sql("alter user alice set password 'secret3'", as: alice).status == 200)
        #expect(try sql("list user", query: true).text.contains(#"["alice","root"]"#))
        #expect(try node.stop() == 0)

        node = try NodeProcess(arguments: ["--http-listen", "127.0.0.1:0", "--data-dir", dataDir])
        client = try TestHTTPClient(port: node.port)
        #expect(try sql("select s from root.plant.d1", as: alice, query: true).status == 401)  // old password
        #expect(try sql("select s from root.plant.d1", as: basic("alice", "secret3"), query: true).text.contains("[[1.5]]"))
        #expect(try sql("alter user root set password 'n3w-root'").status == 200)
        #expect(try sql("show databases", query: true).status == 401)
        #expect(try node.stop() == 0)
        node = try NodeProcess(arguments: ["--http-listen", "127.0.0.1:0", "--data-dir", dataDir])
        #expect(!node.stderr.contains("default password"))
        #expect(try node.stop() == 0)
    }

    /// Issue 27, items 6 and 9, against a real node: 16 connections × 32 pipelined wrong
    /// passwords used to queue 512 hashes on the decode thread, before everyone's /ping. Now
    /// /ping and a remembered root are answered while the flood is queued, the flood costs
    /// `auth.failed_logins_per_client_max` hashes (the rest get 429), and bodies of refused
    /// requests are never buffered.
    @Test func aWrongPasswordFloodNeitherStarvesOthersNorCostsAHashPerTry() throws {
        let node = try NodeProcess(arguments: ["--http-listen", "127.0.0.1:0", "--data-dir", try temporaryDirectory("data")])
        let root = try TestHTTPClient(port: node.port)
        let showDatabases = Array(#"{"sql":"show databases"}"#.utf8)
        #expect(try root.request("POST", "/rest/v2/query", body: showDatabases).status == 200)  // root is now remembered

        let attackers = try (0..<16).map { _ in try TestHTTPClient(port: node.port) }
        for (index, attacker) in attackers.enumerated() {
            let flood = (0..<32).map { "GET /stages HTTP/1.1\r\nAuthorization: \(basic("root", "wrong-\(index)-\($0)"))\r\n\r\n" }
            try attacker.send(flood.joined())
        }
        let other = try TestHTTPClient(port: node.port)
        #expect(try other.request("GET", "/ping", headers: ["Authorization": ""]).status == 200)
        #expect(try root.request("POST", "/rest/v2/query", body: showDatabases).status == 200)

        var statuses: [Int: Int] = [:]
        for attacker in attackers {
            for _ in 0..<32 { statuses[try attacker.readResponse().status, default: 0] += 1 }
        }
        #expect(statuses[401] == 10 && statuses[429] == 502)

        // Bodies declared by callers that are refused are never read.
        let head = "POST /rest/v2/insertTablet HTTP/1.1\r\nContent-Length: 33554431\r\nAuthorization: \(basic("root", "wrong"))\r\n\r\n"
        let senders = try (0..<8).map { _ in try TestHTTPClient(port: node.port) }
        for sender in senders { try sender.send(head + String(repeating: "x", count: 60_000)) }
        for sender in senders {
            let answer = try sender.readResponse()
            #expect(answer.status == 429 && answer.headers["connection"] == "close")
        }
        let metrics = try other.request("GET", "/metrics", headers: ["Authorization": ""]).text
        func sample(_ name: String) -> Double? {
            metrics.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ").last!) }
        }
        // One hash at start (is root's password still the default?), one for root, ten for the flood.
        #expect(sample("tidemark_auth_password_hashes_total") == 12)
        #expect(sample("tidemark_auth_limited_logins_total") == 510)
        #expect(sample("tidemark_http_body_bytes_in_flight") == 0)
        #expect(try node.stop() == 0)
    }
}
