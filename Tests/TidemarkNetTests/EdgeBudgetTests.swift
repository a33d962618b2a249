import Dispatch
import Synchronization
import Testing
import TidemarkCore
import TidemarkTestSupport
@testable import TidemarkNet

/// Issue 27, items 9 and 10: the edge's node-wide budgets for request bodies being received
/// and for replies waiting to be sent.
@Suite struct EdgeBudgetTests {
    @Test func bodiesPastTheNodeBudgetGet503AndTheBudgetReturnsToZero() throws {
        var settings = HTTPSettings()
        settings.bodyBytesInFlightMax = 1000
        let harness = try EdgeHarness(settings: settings)
        let metrics = harness.server.metrics
        func inFlight() -> Int { metrics.bodyBytesInFlight.load(ordering: .relaxed) }

        // 800 declared bytes are reserved from the head on, while the body trickles in.
        let slow = try harness.client()
        try slow.send("POST /slow HTTP/1.1\r\nContent-Length: 800\r\n\r\n" + String(repeating: "a", count: 100))
        #expect(eventually { inFlight() == 800 })

        let declared = try harness.client()
        let refused = try declared.request("POST", "/declared", body: Array(repeating: 98, count: 300))
        #expect(refused.status == 503 && refused.headers["connection"] == "close")
        #expect(refused.text.contains("http.body_bytes_in_flight_max"))
        #expect(try declared.readsEndOfStream())

        // A chunked body has no declared length: it takes budget as its chunks arrive.
        let chunked = try harness.client()
        try chunked.send("POST /chunked HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n12c\r\n" + String(repeating: "c", count: 300) + "\r\n")
        #expect(try chunked.readResponse().status == 503)
        #expect(try chunked.readsEndOfStream())
        #expect(inFlight() == 800)

        try slow.send(String(repeating: "a", count: 700))
        #expect(try slow.readResponse().status == 200)
        #expect(eventually { inFlight() == 0 })
        let fits = try harness.client()
        #expect(try fits.request("POST", "/fits", body: Array(repeating: 100, count: 900)).status == 200)
        #expect(inFlight() == 0)
        #expect(metrics.bodyBudgetRefusals.load(ordering: .relaxed) == 2)
        #expect(harness.stop())
    }

    /// The decoder used to reset its count of a chunked body when the request ended, before
    /// the edge reserved it, so the last piece (up to a whole read) was never counted. Here
    /// the whole body, terminator included, arrives in one read, then waits in the "stages".
    @Test func aWholeChunkedBodyIsCountedWhileItsRequestWaitsInTheStages() throws {
        let held = HeldRequests()
        let harness = try EdgeHarness(requestHandler: held)
        let metrics = harness.server.metrics
        let client = try harness.client()
        try client.send("POST /chunked HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n" + String(repeating: "c", count: 100)
                        + "\r\nc8\r\n" + String(repeating: "d", count: 200) + "\r\n0\r\n\r\n")
        let request = try #require(held.awaitRequest())
        #expect(request.body.count == 300)
        #expect(metrics.bodyBytesInFlight.load(ordering: .relaxed) == 300)  // reserved before it was handed on
        held.answerAll()
        #expect(try client.readResponse().status == 200)
        #expect(eventually { metrics.bodyBytesInFlight.load(ordering: .relaxed) == 0 })
        #expect(harness.stop())
    }

    /// One connection used to be able to hold pipeline_depth_max × body_bytes_max (1 GiB by
    /// default, four times the node's budget). Past http.connection_body_bytes_max it now
    /// reads no further until its earlier requests are answered.
    @Test func aConnectionHoldsNoMoreBodyBytesThanItsBound() throws {
        var settings = HTTPSettings()
        settings.bodyBytesMax = 600
        settings.connectionBodyBytesMax = 1000
        let held = HeldRequests()
        let harness = try EdgeHarness(settings: settings, requestHandler: held)
        let metrics = harness.server.metrics
        func inFlight() -> Int { metrics.bodyBytesInFlight.load(ordering: .relaxed) }
        let client = try harness.client()
        let post = "POST /held HTTP/1.1\r\nContent-Length: 400\r\n\r\n" + String(repeating: "p", count: 400)

        // Declared bodies: the third head is admitted, but 400 more bytes would take the
        // connection past 1000, so its body waits unread and it is not handed on.
        try client.send(post + post + post)
        #expect(eventually { held.heads == 3 })
        #expect(try loopHadItsChanceToRead(harness))
        #expect(held.handedOver == 2 && inFlight() == 800)
        #expect(held.answerOldest())
        #expect(try client.readResponse().status == 200)
        #expect(eventually { held.handedOver == 3 })
        #expect(inFlight() == 800)

        // A chunked body is read until the connection reaches its bound, then waits too.
        try client.send("POST /held HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n12c\r\n" + String(repeating: "c", count: 300) + "\r\n")
        #expect(eventually { inFlight() == 1100 })
        try client.send("0\r\n\r\n")
        #expect(try loopHadItsChanceToRead(harness))
        #expect(held.handedOver == 3)
        #expect(held.answerOldest())
        #expect(try client.readResponse().status == 200)
        #expect(eventually { held.handedOver == 4 })
        #expect(inFlight() == 700)

        held.answerAll()
        for _ in 0..<2 { #expect(try client.readResponse().status == 200) }
        #expect(eventually { inFlight() == 0 })
        #expect(harness.stop())
    }

    @Test func aClientThatPipelinesWithoutReadingIsCutAndItsReplyBytesComeBack() throws {
        var settings = HTTPSettings()
        settings.writeBufferBytesMax = 1 << 20
        settings.connectionReplyBytesMax = 32 << 20
        // Larger than the kernel's socket buffers (4 MiB at most here): a reply the client
        // does not read stays pending at the edge, so the edge reads no more of its requests.
        let replyBytes = 16 << 20
        let dispatched = Atomic<Int>(0)
        let harness = try EdgeHarness(settings: settings) { _, responder, _ in
            dispatched.add(1, ordering: .relaxed)
            DispatchQueue.global().async {
                responder.respond(HTTPResponse(status: 200, body: [UInt8](repeating: 120, count: replyBytes), route: "/big"))
            }
            return .accepted
        }
        let metrics = harness.server.metrics
        func pending() -> Int { metrics.replyBytesPending.load(ordering: .relaxed) }

        // 64 replies of 16 MiB asked for at once and never read: 1 GiB if the edge held them.
        // It takes at most pipeline_depth_max (32) of them before it stops reading, and none
        // after it cuts the client.
        let greedy = try harness.client()
        try greedy.send(String(repeating: "GET /big HTTP/1.1\r\n\r\n", count: 64))
        #expect(eventually { metrics.replyBudgetCloses.load(ordering: .relaxed) == 1 })
        #expect(eventually { pending() == 0 })
        let taken = dispatched.load(ordering: .relaxed)
        #expect(taken >= 3 && taken <= settings.pipelineDepthMax)  // the third reply is the one that cuts it

        // A client that reads each reply before asking again is never cut, however big the reply.
        let polite = try harness.client()
        for _ in 0..<3 { #expect(try polite.request("GET", "/big").body.count == replyBytes) }
        #expect(metrics.replyBudgetCloses.load(ordering: .relaxed) == 1)
        #expect(dispatched.load(ordering: .relaxed) == taken + 3)  // the greedy client's later requests never were
        #expect(eventually { pending() == 0 })
        #expect(harness.stop())
    }

    @Test func pastTheNodeReplyBudgetALargeReplyIsA503AndAskingAgainLaterWorks() throws {
        var settings = HTTPSettings()
        settings.replyBytesPendingMax = 16 << 20
        let replyBytes = 32 << 20
        let harness = try EdgeHarness(settings: settings) { request, responder, _ in
            let bytes = request.target == "/small" ? 100 : replyBytes
            responder.respond(HTTPResponse(status: 200, body: [UInt8](repeating: 120, count: bytes), route: "/big"))
            return .accepted
        }
        let metrics = harness.server.metrics
        // The first reply passes whatever its size; unread, it holds the node's budget.
        let holder = try harness.client()
        try holder.send("GET /big HTTP/1.1\r\n\r\n")
        #expect(eventually { metrics.replyBytesPending.load(ordering: .relaxed) > 16 << 20 })
        let other = try harness.client()
        let refused = try other.request("GET", "/big")
        #expect(refused.status == 503 && refused.text.contains("http.reply_bytes_pending_max"))
        #expect(try other.request("GET", "/small").status == 200)  // small answers still pass
        #expect(try holder.readResponse().body.count == replyBytes)
        #expect(eventually { metrics.replyBytesPending.load(ordering: .relaxed) == 0 })
        #expect(try other.request("GET", "/big").body.count == replyBytes)
        #expect(metrics.replyBudgetRefusals.load(ordering: .relaxed) == 1)
        #expect(harness.stop())
    }

    /// A body refused from its head is never read; the edge drops what the client still
    /// sends until it closes, so the answer is not lost to a reset while the client writes.
    @Test func aClientStillSendingARefusedBodyGetsTheAnswerAndEndOfStream() throws {
        let harness = try EdgeHarness(requestHandler: RefuseBodies())
        let client = try harness.client()
        try client.send("POST /upload HTTP/1.1\r\nContent-Length: 33554431\r\n\r\n")
        try client.send([UInt8](repeating: 120, count: 2 << 20))  // more than the socket buffers hold
        let answer = try client.readResponse()
        #expect(answer.status == 401 && answer.headers["connection"] == "close")
        #expect(try client.readsEndOfStream())
        #expect(harness.server.metrics.bodyBytesInFlight.load(ordering: .relaxed) == 0)
        #expect(harness.stop())
    }
}

/// Waits until the loop has had its chance to read what the test already sent on any
/// connection: loopback delivers a send into the peer's socket before it returns, so by the
/// time another connection's malformed request is answered, a connection the edge reads
/// has been read in that pass of the loop or an earlier one; the pass is then let finish.
/// False if that took more than 10 s.
private func loopHadItsChanceToRead(_ harness: EdgeHarness) throws -> Bool {
    let probe = try harness.client()
    try probe.send("NOT HTTP\r\n\r\n")
    guard try probe.readResponse().status == 400 else { return false }
    let passed = DispatchSemaphore(value: 0)
    harness.loop.execute { passed.signal() }
    return passed.wait(timeout: .now() + 10) == .success
}

/// A handler that admits every head and keeps every request it is handed, unanswered,
/// until the test answers.
private final class HeldRequests: HTTPRequestHandler {
    private let held = Mutex<[(request: HTTPRequest, responder: HTTPResponder)]>([])
    private let arrived = DispatchSemaphore(value: 0)
    /// Heads admitted and requests handed over so far.
    private let headCount = Atomic<Int>(0)
    private let requestCount = Atomic<Int>(0)

    func admit(_ head: HTTPRequest, client: String, decision: HTTPAdmissionDecision) -> Admission {
        headCount.add(1, ordering: .relaxed)
        return .admit(as: nil)
    }

    func handle(_ request: HTTPRequest, responder: HTTPResponder, whenSpace: @escaping @Sendable () -> Void) -> HandOff {
        held.withLock { $0.append((request, responder)) }
        requestCount.add(1, ordering: .relaxed)
        arrived.signal()
        return .accepted
    }

    var heads: Int { headCount.load(ordering: .relaxed) }
    var handedOver: Int { requestCount.load(ordering: .relaxed) }

    /// Waits (10 s at most) for the next request to be handed over; nil if none came.
    func awaitRequest() -> HTTPRequest? {
        guard arrived.wait(timeout: .now() + 10) == .success else { return nil }
        return held.withLock { $0.last?.request }
    }

    /// Answers the oldest request still held; false if none is.
    @discardableResult
    func answerOldest() -> Bool {
        guard let oldest = held.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) else { return false }
        oldest.responder.respond(HTTPResponse(status: 200, body: Array("ok".utf8), route: "/held"))
        return true
    }

    /// Answers every request held now.
    func answerAll() {
        let all = held.withLock { held in
            defer { held.removeAll() }
            return held
        }
        for each in all { each.responder.respond(HTTPResponse(status: 200, body: Array("ok".utf8), route: "/held")) }
    }
}

/// Refuses every request that has a body, from its head.
private struct RefuseBodies: HTTPRequestHandler {
    func admit(_ head: HTTPRequest, client: String, decision: HTTPAdmissionDecision) -> Admission {
        head.header("content-length") == nil ? .admit(as: nil) : .refuse(.error(401, "no", route: "/upload"))
    }

    func handle(_ request: HTTPRequest, responder: HTTPResponder, whenSpace: @escaping @Sendable () -> Void) -> HandOff {
        .rejected(.error(200, "ok", route: "/upload"))
    }
}
