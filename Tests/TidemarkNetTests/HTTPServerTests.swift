import Foundation
import Synchronization
import Testing
import TidemarkCore
import TidemarkTestSupport
@testable import TidemarkNet

@Suite struct HTTPServerTests {
    @Test func keepAliveServesManyRequestsOnOneConnection() throws {
        let harness = try EdgeHarness()
        let client = try harness.client()
        for index in 0..<20 {
            let response = try client.request("POST", "/r\(index)", body: Array("b\(index)".utf8))
            #expect(response.status == 200)
            #expect(response.text == "POST /r\(index) b\(index)")
        }
        #expect(harness.server.metrics.responseCounts().first { $0.0.route == "/echo" }?.1 == 20)
        #expect(harness.stop())
    }

    @Test func pipelinedRequestsAreAnsweredInOrderEvenWhenFinishedOutOfOrder() throws {
        // The first request is answered last: its reply must still go out first.
        let held = Mutex<HTTPResponder?>(nil)
        let later = Mutex<[HTTPResponder]>([])
        let harness = try EdgeHarness { request, responder, _ in
            if request.target == "/slow" {
                held.withLock { $0 = responder }
            } else {
                responder.respond(.json(200, "\"\(request.target)\"", route: "/t"))
                let count = later.withLock { $0.append(responder); return $0.count }
                if count == 3, let slow = held.withLock({ $0 }) { slow.respond(.json(200, "\"/slow\"", route: "/t")) }
            }
            return .accepted
        }
        let client = try harness.client()
        try client.send("GET /slow HTTP/1.1\r\n\r\nGET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n")
        let bodies = try (0..<4).map { _ in try client.readResponse().text }
        #expect(bodies == ["\"/slow\"", "\"/a\"", "\"/b\"", "\"/c\""])
        #expect(harness.stop())
    }

    @Test func chunkedBodyAndExpectContinueOverTheWire() throws {
        let harness = try EdgeHarness()
        let client = try harness.client()
        try client.send("POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        #expect(try client.readResponse().text == "POST /c abcde")
        try client.send("POST /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        let interim = try client.readResponse()
        #expect(interim.status == 100)
        try client.send("body")
        #expect(try client.readResponse().text == "POST /e body")
        #expect(harness.stop())
    }

    @Test func malformedRequestGets400AndCloseWhileOthersAreServed() throws {
        let harness = try EdgeHarness()
        let good = try harness.client()
        let bad = try harness.client()
        try bad.send("BREW /pot HTCPCP/1.0\r\n\r\n")
        let response = try bad.readResponse()
        #expect(response.status == 400)
        #expect(response.text.contains("malformed HTTP request"))
        #expect(response.headers["connection"] == "close")
        #expect(try bad.readsEndOfStream())
        #expect(try good.request("GET", "/still").status == 200)
        #expect(harness.server.metrics.responseCounts().contains { $0.0 == .init(route: "edge", status: 400) })
        #expect(harness.stop())
    }

    @Test func smuggledTransferEncodingGets400AndCloseAndNothingBehindItRuns() throws {
        let harness = try EdgeHarness()
        let client = try harness.client()
        try client.send("POST /s HTTP/1.1\r\nTransfer-Encoding : chunked\r\nContent-Length: 27\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.status == 400 && response.headers["connection"] == "close")
        #expect(response.text.contains("whitespace in a header name"))
        #expect(try client.readsEndOfStream())
        #expect(harness.stop())
    }

    @Test func halfClosedClientGetsEveryAnswerThenTheConnectionCloses() throws {
        var settings = HTTPSettings()
        settings.pipelineDepthMax = 1  // the later requests wait, unparsed, behind the first
        let harness = try EdgeHarness(settings: settings)
        let client = try harness.client()
        try client.send("GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\nGET /4 HTTP/1.1\r\nHost:")
        client.shutdownWrite()
        #expect(try (1...3).map { _ in try client.readResponse().text } == ["GET /1 ", "GET /2 ", "GET /3 "])
        #expect(try client.readsEndOfStream())  // the unfinished /4 is dropped with the connection
        #expect(harness.stop())
    }

    @Test func oversizeBodyGets413() throws {
        var settings = HTTPSettings()
        settings.bodyBytesMax = 16
        let harness = try EdgeHarness(settings: settings)
        let client = try harness.client()
        let response = try client.request("POST", "/big", body: [UInt8](repeating: 65, count: 17))
        #expect(response.status == 413)
        #expect(try client.readsEndOfStream())
        #expect(try harness.client().request("POST", "/ok", body: [UInt8](repeating: 65, count: 16)).status == 200)
        #expect(harness.stop())
    }

    @Test func slowRequestGets408AndIdleConnectionIsClosed() throws {
        var settings = HTTPSettings()
        settings.requestTimeoutMs = 150
        settings.idleTimeoutMs = 150
        let harness = try EdgeHarness(settings: settings)
        let slow = try harness.client()
        try slow.send("GET /never-finished HTTP/1.1\r\nHost: x\r\n")
        let response = try slow.readResponse()  // bounded by the client's read timeout
        #expect(response.status == 408)
        #expect(try slow.readsEndOfStream())
        let idle = try harness.client()
        #expect(try idle.request("GET", "/once").status == 200)
        #expect(try idle.readsEndOfStream())  // closed by the server after idle_timeout_ms
        #expect(harness.stop())
    }

    @Test func connectionsPastTheLimitGet503() throws {
        var settings = HTTPSettings()
        settings.connectionsMax = 2
        let harness = try EdgeHarness(settings: settings)
        let first = try harness.client()
        let second = try harness.client()
        #expect(try first.request("GET", "/1").status == 200)
        #expect(try second.request("GET", "/2").status == 200)
        let third = try harness.client()
        let refused = try third.readResponse()
        #expect(refused.status == 503)
        #expect(refused.text.contains("too many connections"))
        #expect(harness.server.metrics.refusedConnections.load(ordering: .relaxed) == 1)
        #expect(try first.request("GET", "/again").status == 200)
        #expect(harness.stop())
    }

    @Test func deferredRequestStopsReadingAndResumesWhenThereIsRoom() throws {
        // The handler defers every request until the test calls the last whenSpace.
        let open = Atomic<Bool>(false)
        let wake = Mutex<(@Sendable () -> Void)?>(nil)
        let offers = Atomic<Int>(0)
        let harness = try EdgeHarness { request, responder, whenSpace in
            offers.add(1, ordering: .relaxed)
            guard open.load(ordering: .relaxed) else {
                wake.withLock { $0 = whenSpace }
                return .deferred
            }
            responder.respond(.json(200, "\"\(request.target)\"", route: "/t"))
            return .accepted
        }
        let client = try harness.client()
        try client.send("GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n")
        let deadline = Date().addingTimeInterval(10)
        while wake.withLock({ $0 }) == nil && Date() < deadline { usleep(1000) }
        // While deferred, the edge offers nothing more: /2 stays unread behind /1.
        #expect(offers.load(ordering: .relaxed) == 1)
        open.store(true, ordering: .relaxed)
        let resume = try #require(wake.withLock { $0 })
        resume()
        #expect(try client.readResponse().text == "\"/1\"")
        #expect(try client.readResponse().text == "\"/2\"")
        #expect(offers.load(ordering: .relaxed) == 3)
        #expect(harness.stop())
    }

    @Test func requestsBufferedDuringAPauseAreEachAnsweredOnceWhenRefusedLater() throws {
        // /0 is deferred, pausing the connection with /1…/9 buffered; after the resume the
        // handler refuses everything, so responses are written from inside the decode loop.
        let wake = Mutex<(@Sendable () -> Void)?>(nil)
        let refusing = Atomic<Bool>(false)
        let harness = try EdgeHarness { request, _, whenSpace in
            guard refusing.load(ordering: .relaxed) else {
                wake.withLock { $0 = whenSpace }
                return .deferred
            }
            return .rejected(.error(503, "refused \(request.target)", route: "/t"))
        }
        let client = try harness.client()
        try client.send((0..<10).map { "GET /\($0) HTTP/1.1\r\n\r\n" }.joined())
        let deadline = Date().addingTimeInterval(10)
        while wake.withLock({ $0 }) == nil && Date() < deadline { usleep(1000) }
        refusing.store(true, ordering: .relaxed)
        let resume = try #require(wake.withLock { $0 })
        resume()
        for index in 0..<10 {
            let response = try client.readResponse()
            #expect(response.status == 503)
            #expect(response.text.contains("refused /\(index)\""))
        }
        #expect(try client.request("GET", "/after").status == 503)
        #expect(harness.stop())
    }

    @Test func shutdownFinishesInFlightRequestsThenCloses() throws {
        let held = Mutex<HTTPResponder?>(nil)
        let harness = try EdgeHarness { _, responder, _ in
            held.withLock { $0 = responder }
            return .accepted
        }
        let client = try harness.client()
        try client.send("GET /inflight HTTP/1.1\r\n\r\n")
        let deadline = Date().addingTimeInterval(10)
        while held.withLock({ $0 }) == nil && Date() < deadline { usleep(1000) }
        let server = harness.server, loop = harness.loop
        let closed = DispatchSemaphore(value: 0)
        loop.execute { server.shutdown { closed.signal() } }
        #expect(closed.wait(timeout: .now() + 0.05) == .timedOut)  // still serving the held request
        held.withLock { $0 }?.respond(.json(200, "\"done\"", route: "/t"))
        let response = try client.readResponse()
        #expect(response.text == "\"done\"")
        #expect(response.headers["connection"] == "close")
        #expect(closed.wait(timeout: .now() + 10) == .success)
        #expect(throws: (any Error).self) { try TestHTTPClient(port: harness.port).request("GET", "/") }
        loop.execute { loop.close() }
    }
}
