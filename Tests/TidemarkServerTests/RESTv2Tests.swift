import Foundation
import Testing
import TidemarkTestSupport

private func post(_ client: TestHTTPClient, _ route: String, _ json: String) throws -> WireResponse {
    try client.request("POST", route, body: Array(json.utf8), headers: ["Content-Type": "application/json"])
}

@Suite(.serialized) struct RESTv2Tests {
    @Test func theReferenceExamplesAnswerAsIoTDBDoes() throws {
        let dataDir = try temporaryDirectory("data")
        var node = try NodeProcess(arguments: ["--http-listen", "127.0.0.1:0", "--data-dir", dataDir])
        var client = try TestHTTPClient(port: node.port)
        let success = #"{"code":200,"message":"SUCCESS_STATUS"}"#
        #expect(try post(client, "/rest/v2/nonQuery", #"{"sql":"CREATE DATABASE root.ln"}"#).text == success)
        #expect(try post(client, "/rest/v2/insertTablet", """
            {"timestamps":[1635232143960,1635232153960],"measurements":["s3","s4"],
             "data_types":["INT32","BOOLEAN"],"values":[[11,null],[false,true]],
             "is_aligned":false,"device":"root.sg27"}
            """).text == success)
        #expect(try post(client, "/rest/v2/insertRecords", """
            {"timestamps":[1635232113960,1635232151960,1635232143960,1635232143960],
             "measurements_list":[["s33","s44"],["s55","s66"],["s77","s88"],["s771","s881"]],
             "data_types_list":[["INT32","INT64"],["FLOAT","DOUBLE"],["FLOAT","DOUBLE"],["BOOLEAN","TEXT"]],
             "values_list":[[1,11],[2.1,2],[4,6],[false,"cccccc"]],"is_aligned":false,
             "devices":["root.s1","root.s1","root.s1","root.s3"]}
            """).text == success)
        let query = try post(client, "/rest/v2/query", #"{"sql":"select s3, s4, s3 + 1 from root.sg27 limit 2"}"#)
        #expect(query.status == 200)
        #expect(query.text == #"{"expressions":["root.sg27.s3","root.sg27.s4","root.sg27.s3 + 1"],"column_names":null,"data_types":["INT32","BOOLEAN","DOUBLE"],"timestamps":[1635232143960,1635232153960],"values":[[11,null],[false,true],[12.0,null]]}"#)
        let devices = try post(client, "/rest/v2/query", #"{"sql":"show devices"}"#)
        #expect(devices.text == #"{"expressions":null,"column_names":["devices","isAligned"],"data_types":["TEXT","TEXT"],"timestamps":null,"values":[["root.s1","root.s3","root.sg27"],["false","false","false"]]}"#)
        let last = try post(client, "/rest/v2/query", #"{"sql":"select last s3 from root.sg27"}"#)
        #expect(last.text == #"{"expressions":null,"column_names":["timeseries","value","dataType"],"data_types":["TEXT","TEXT","TEXT"],"timestamps":[1635232143960],"values":[["root.sg27.s3"],["11"],["INT32"]]}"#)

        // Errors: HTTP 200 with IoTDB's codes, except malformed bodies.
        #expect(try post(client, "/rest/v2/nonQuery", #"{"sql":"CREATE DATABASE root.ln"}"#).text.hasPrefix(#"{"code":501,"#))
        #expect(try post(client, "/rest/v2/query", #"{"sql":"selec s3 from root.sg27"}"#).text.hasPrefix(#"{"code":700,"message":"line 1, column 1: expected a statement"#))
        #expect(try post(client, "/rest/v2/query", #"{"sql":"select * from root.sg27","row_limit":2}"#).text
            == #"{"code":708,"message":"Dataset row size exceeded the given max row size (2)"}"#)
        let malformed = try post(client, "/rest/v2/query", #"{"sql": "#)
        #expect(malformed.status == 400)
        #expect(malformed.text.hasPrefix(#"{"code":303,"message":"malformed JSON"#))
        #expect(try post(client, "/rest/v2/insertTablet", #"{"device":"root.sg27","timestamps":[1],"measurements":["s3"],"data_types":["INT32"],"values":[["eleven"]]}"#).text.hasPrefix(#"{"code":614,"#))
        #expect(try post(client, "/rest/v2/insertTablet", #"{"device":"root.sg27","timestamps":[1],"measurements":["s4"],"data_types":["INT32"],"values":[[5]]}"#).text.hasPrefix(#"{"code":614,"#))
        #expect(try post(client, "/rest/v2/nonQuery", #"{"sql":"insert into root.sg27(time, s3) values (1, 7)"}"#).text == success)

        // Restart keeps everything.
        #expect(try node.stop() == 0)
        node = try NodeProcess(arguments: ["--http-listen", "127.0.0.1:0", "--data-dir", dataDir])
        client = try TestHTTPClient(port: node.port)
        let again = try post(client, "/rest/v2/query", #"{"sql":"select count(s3), sum(s3) from root.sg27"}"#)
        #expect(again.text == #"{"expressions":["count(root.sg27.s3)","sum(root.sg27.s3)"],"column_names":null,"data_types":["INT64","DOUBLE"],"timestamps":null,"values":[[2],[18.0]]}"#)
        #expect(try post(client, "/rest/v2/query", #"{"sql":"show databases"}"#).text.contains(#""root.ln""#))

        // FLUSH (SQL, and POST /flush) puts the memtables in segment files.
        #expect(try client.request("GET", "/flush").status == 405)
        #expect(try client.request("POST", "/flush").text == success)
        #expect(try post(client, "/rest/v2/nonQuery", #"{"sql":"flush root.sg27 true"}"#).text == success)
        let metrics = try client.request("GET", "/metrics").text
        let segments = metrics.split(separator: "\n").first { $0.hasPrefix("tidemark_storage_segments ") }
        #expect(segments.flatMap { Double($0.split(separator: " ")[1]) } ?? 0 > 0)

        // A write after the flush lives only in the log until a SIGKILL; the restart replays it.
        #expect(try post(client, "/rest/v2/nonQuery", #"{"sql":"insert into root.sg27(time, s3) values (2, 100)"}"#).text == success)
        #expect(try node.stop(signal: SIGKILL) == SIGKILL)
        node = try NodeProcess(arguments: ["--http-listen", "127.0.0.1:0", "--data-dir", dataDir])
        client = try TestHTTPClient(port: node.port)
        let afterKill = try post(client, "/rest/v2/query", #"{"sql":"select count(s3), sum(s3) from root.sg27"}"#)
        #expect(afterKill.text == #"{"expressions":["count(root.sg27.s3)","sum(root.sg27.s3)"],"column_names":null,"data_types":["INT64","DOUBLE"],"timestamps":null,"values":[[3],[118.0]]}"#)
        #expect(try node.stop() == 0)
    }
}
