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
}
