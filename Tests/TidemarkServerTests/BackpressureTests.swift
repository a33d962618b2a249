import Foundation
import Testing
import TidemarkCore
import TidemarkNet
import TidemarkStages
import TidemarkTestSupport
@testable import TidemarkServer

/// The real edge and a real one-thread decode stage with a one-event queue.
private func edge(overflow: OverflowPolicy, gate: Gate) throws -> (EdgeHarness, Stage<HTTPExchange>) {
    let settings = StageSettings(threads: 1, queueCapacity: 1, batchSize: 1, overflow: overflow, inline: false)
    let decode = Stage<HTTPExchange>(name: "decode", settings: settings) { batch in
        gate.pass()
        for exchange in batch {
            exchange.responder.respond(.json(200, "\"\(exchange.request.target)\"", route: "/t"))
        }
    }
    let handler = EdgeHandler(decode: decode)
    let harness = try EdgeHarness { request, responder, whenSpace in
        handler.handle(request, responder: responder, whenSpace: whenSpace)
    }
    return (harness, decode)
}

@Suite struct BackpressureTests {
    @Test func rejectAnswers503NamingTheStageAndRunsNothingOfTheRequest() throws {
        let gate = Gate()
        let (harness, decode) = try edge(overflow: .reject, gate: gate)
        let first = try harness.client(), second = try harness.client(), third = try harness.client()
        try first.send("GET /1 HTTP/1.1\r\n\r\n")
        #expect(gate.awaitEntry())  // the worker holds /1
        try second.send("GET /2 HTTP/1.1\r\n\r\n")
        // /2 fills the one-slot queue; wait until the stage shows it.
        let deadline = Date().addingTimeInterval(10)
        while decode.snapshot().queueDepth < 1 && Date() < deadline { usleep(1000) }
        let refused = try third.request("GET", "/3")
        #expect(refused.status == 503)
        let body = try JSONSerialization.jsonObject(with: Data(refused.body)) as? [String: Any]
        #expect(body?["stage"] as? String == "decode")
        #expect(body?["code"] as? Int == 503)
        #expect((body?["message"] as? String)?.contains("overloaded") == true)
        gate.release(2)
        #expect(try first.readResponse().text == "\"/1\"")
        #expect(try second.readResponse().text == "\"/2\"")
        #expect(decode.drain(deadlineNs: monotonicNowNs() + 10_000_000_000))
        #expect(decode.snapshot().completed == 2)  // /3 never reached the handler
        #expect(decode.snapshot().rejected == 1)
        #expect(harness.stop())
    }

    @Test func blockPausesTheConnectionUntilTheStageHasRoom() throws {
        let gate = Gate()
        let (harness, decode) = try edge(overflow: .block, gate: gate)
        let first = try harness.client(), second = try harness.client(), third = try harness.client()
        try first.send("GET /1 HTTP/1.1\r\n\r\n")
        #expect(gate.awaitEntry())
        try second.send("GET /2 HTTP/1.1\r\n\r\n")
        let deadline = Date().addingTimeInterval(10)
        while decode.snapshot().queueDepth < 1 && Date() < deadline { usleep(1000) }
        try third.send("GET /3 HTTP/1.1\r\n\r\n")
        while decode.snapshot().blocked < 1 && Date() < deadline { usleep(1000) }
        #expect(decode.snapshot().blocked == 1)  // /3 waits at the edge, not in memory past the queue
        gate.release(3)
        #expect(try first.readResponse().text == "\"/1\"")
        #expect(try second.readResponse().text == "\"/2\"")
        #expect(try third.readResponse().text == "\"/3\"")
        #expect(decode.snapshot().rejected == 0)
        #expect(decode.drain(deadlineNs: monotonicNowNs() + 10_000_000_000))
        #expect(decode.snapshot().completed == 3)
        #expect(harness.stop())
    }
}
