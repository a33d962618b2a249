import Testing
import TidemarkTestSupport
@testable import TidemarkNet

private func makeDecoder(headerBytesMax: Int = 8192, bodyBytesMax: Int = 1 << 20) -> HTTPRequestDecoder {
    HTTPRequestDecoder(headerBytesMax: headerBytesMax, bodyBytesMax: bodyBytesMax)
}

@Suite struct HTTPRequestDecoderTests {
    @Test func decodesARequestWithHeadersAndBody() throws {
        let result = makeDecoder().feedAll(Array("POST /write?db=plant1 HTTP/1.1\r\nHost: x\r\nX-Tag: A b\r\nContent-Length: 5\r\n\r\nhello".utf8))
        #expect(result.error == nil)
        let request = try #require(result.requests.first)
        #expect(request.method == "POST")
        #expect(request.target == "/write?db=plant1")
        #expect(request.path == "/write")
        #expect(request.header("x-tag") == "A b")
        #expect(request.header("HOST") == "x")
        #expect(request.body == Array("hello".utf8))
        #expect(request.keepAlive)
    }

    @Test func partialInputCompletesOnlyAtTheLastByte() {
        let bytes = Array("PUT /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz".utf8)
        let headBytes = bytes.count - 3
        let decoder = makeDecoder()
        var index = 0, heads = 0
        while index < bytes.count {
            let step = [bytes[index]].withUnsafeBytes { decoder.feed($0) }
            #expect(step.error == nil)
            if let head = step.head {
                // The head comes out before any byte of the body is taken.
                heads += 1
                #expect(head.target == "/a" && head.body.isEmpty && decoder.declaredBodyBytes == 3)
                #expect(index < headBytes)
            } else {
                #expect(step.consumed == 1)
            }
            index += step.consumed
            if index < bytes.count {
                #expect(step.request == nil)
                #expect(decoder.isInsideRequest)
            } else {
                #expect(step.request?.body == Array("xyz".utf8))
                #expect(!decoder.isInsideRequest)
            }
        }
        #expect(heads == 1)
    }

    @Test func pipelinedRequestsComeOutOneAtATimeInOrder() {
        let decoder = makeDecoder()
        let bytes = Array("GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nPOST /3 HTTP/1.1\r\nContent-Length: 2\r\n\r\nokGET /4".utf8)
        let head = bytes.withUnsafeBytes { decoder.feed($0) }
        #expect(head.head?.target == "/1" && head.request == nil)
        let first = bytes[head.consumed...].withUnsafeBytes { decoder.feed($0) }
        #expect(first.request?.target == "/1")
        #expect(head.consumed + first.consumed == "GET /1 HTTP/1.1\r\n\r\n".utf8.count)
        let rest = decoder.feedAll(Array(bytes[(head.consumed + first.consumed)...]))
        #expect(rest.requests.map(\.target) == ["/2", "/3"])
        #expect(rest.requests.last?.body == Array("ok".utf8))
        #expect(rest.error == nil)
        #expect(decoder.isInsideRequest)  // "GET /4" is waiting for the rest of its head
    }

    @Test func chunkedBodiesAreReassembled() {
        let chunked = "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: t\r\n\r\n"
        let result = makeDecoder().feedAll(Array(chunked.utf8))
        #expect(result.error == nil)
        #expect(result.requests.first.map { String(decoding: $0.body, as: UTF8.self) } == "hello, world")
    }

    @Test func malformedInputIsA400WithTheParserReason() {
        for bad in ["GARBAGE\r\n\r\n", "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
                    "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                    "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"] {
            let decoder = makeDecoder()
            let result = decoder.feedAll(Array(bad.utf8))
            #expect(result.error?.status == 400, "input: \(bad.debugDescription)")
            #expect(result.error?.reason.hasPrefix("malformed HTTP request: ") == true)
            #expect(result.requests.isEmpty)
            #expect(decoder.isFinished)
        }
    }

    /// Issue 27: http-parser (built lenient) reads "Transfer-Encoding : chunked" and folded
    /// header lines as chunked; a proxy in front may frame them otherwise (request smuggling).
    @Test func whitespaceBeforeTheColonAndFoldedHeadersAre400() {
        let smuggled = ["POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
                        "POST / HTTP/1.1\r\nTransfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n",
                        "POST / HTTP/1.1\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
                        "POST / HTTP/1.1\r\nX-A: 1\r\n\tTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                        "GET / HTTP/1.1\r\nX-A: 1\r\n 2\r\n\r\n"]
        for text in smuggled {
            let whole = makeDecoder().feedAll(Array(text.utf8))
            #expect(whole.error?.status == 400, "input: \(text.debugDescription)")
            #expect(whole.requests.isEmpty)
            // The same, a byte at a time.
            let decoder = makeDecoder()
            var error: HTTPDecodeError?
            for byte in Array(text.utf8) where error == nil && !decoder.isFinished {
                var rest = [byte]
                while !rest.isEmpty && error == nil {
                    let step = rest.withUnsafeBytes { decoder.feed($0) }
                    error = step.error
                    #expect(step.request == nil)
                    rest.removeFirst(step.consumed)
                    if step.consumed == 0 && step.head == nil { break }
                }
            }
            #expect(error?.status == 400, "input fed bytewise: \(text.debugDescription)")
        }
        // Spaces and tabs are fine inside values, in bodies, and in empty lines before a request.
        let fine = "\r\nPOST /a HTTP/1.1\r\nX-A: 1 2\t3\r\nContent-Length: 5\r\n\r\n\n \n\tzGET /b HTTP/1.1\r\nX-B:  b\r\n\r\n"
        let result = makeDecoder().feedAll(Array(fine.utf8))
        #expect(result.error == nil)
        #expect(result.requests.map(\.target) == ["/a", "/b"])
        #expect(result.requests.first?.body == Array("\n \n\tz".utf8))
    }

    @Test func onlyHTTP1IsServed() {
        let result = makeDecoder().feedAll(Array("GET / HTTP/9.9\r\n\r\n".utf8))
        #expect(result.error?.status == 505)
        #expect(result.requests.isEmpty)
    }

    @Test func headerLimitIs431() {
        let big = "GET / HTTP/1.1\r\nX-Big: \(String(repeating: "a", count: 300))\r\n\r\n"
        let result = makeDecoder(headerBytesMax: 256).feedAll(Array(big.utf8))
        #expect(result.error?.status == 431)
        #expect(makeDecoder(headerBytesMax: 1024).feedAll(Array(big.utf8)).requests.count == 1)
    }

    @Test func bodyLimitIs413ForDeclaredAndChunkedBodies() {
        let declared = makeDecoder(bodyBytesMax: 10).feedAll(Array("POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n".utf8))
        #expect(declared.error?.status == 413)
        let chunked = makeDecoder(bodyBytesMax: 10).feedAll(Array("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n6\r\nabcdef\r\n0\r\n\r\n".utf8))
        #expect(chunked.error?.status == 413)
        let exact = makeDecoder(bodyBytesMax: 10).feedAll(Array("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789".utf8))
        #expect(exact.requests.first?.body.count == 10)
    }

    @Test func expectContinueIsReportedBeforeTheBody() {
        let decoder = makeDecoder()
        let head = Array("POST /w HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n".utf8)
        let step = head.withUnsafeBytes { decoder.feed($0) }
        #expect(step.continueRequested)
        #expect(step.head?.target == "/w")
        #expect(step.request == nil)
        let body = (head[step.consumed...] + Array("data".utf8)).withUnsafeBytes { decoder.feed($0) }
        #expect(!body.continueRequested)
        #expect(body.request?.body == Array("data".utf8))
        let unknown = makeDecoder().feedAll(Array("POST / HTTP/1.1\r\nExpect: magic\r\n\r\n".utf8))
        #expect(unknown.error?.status == 417)
    }

    @Test func keepAliveFollowsVersionAndConnectionHeader() {
        let http10 = makeDecoder().feedAll(Array("GET / HTTP/1.0\r\n\r\n".utf8)).requests.first
        #expect(http10?.keepAlive == false)
        #expect(http10?.versionMinor == 0)
        let http10KeepAlive = makeDecoder().feedAll(Array("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".utf8)).requests.first
        #expect(http10KeepAlive?.keepAlive == true)
        let close = makeDecoder().feedAll(Array("GET / HTTP/1.1\r\nConnection: close\r\n\r\n".utf8)).requests.first
        #expect(close?.keepAlive == false)
    }
}

@Suite struct HTTPRequestDecoderPropertyTests {
    static let stream = Array((
        "GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\n"
            + "POST /b HTTP/1.1\r\nContent-Length: 11\r\nX-A: 1\r\n\r\nhello world"
            + "PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n"
            + "HEAD /d HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    ).utf8)

    /// Feeds `bytes` in the given chunk sizes, as reads from a socket would arrive.
    static func decode(_ bytes: [UInt8], chunks: [Int]) -> [String] {
        let decoder = HTTPRequestDecoder(headerBytesMax: 8192, bodyBytesMax: 1 << 20)
        var pending: [UInt8] = []
        var start = 0
        var seen: [String] = []
        for size in chunks + [bytes.count] where start < bytes.count {
            let end = min(bytes.count, start + size)
            pending += bytes[start..<end]
            start = end
            let result = decoder.feedAll(pending)
            // feedAll consumed everything it could; what a paused parser left would be re-fed.
            pending = []
            seen += result.requests.map { "\($0.method) \($0.target) \(String(decoding: $0.body, as: UTF8.self)) \($0.keepAlive)" }
            if let error = result.error { seen.append("error \(error.status)") }
        }
        return seen
    }

    @Test func anySplitOfAPipelinedStreamGivesTheSameRequests() {
        let whole = Self.decode(Self.stream, chunks: [Self.stream.count])
        #expect(whole == ["GET /a?x=1  true", "POST /b hello world true", "PUT /c abcdefg true", "HEAD /d  true"])
        var generator = Seeded(state: 42)
        for _ in 0..<500 {
            let chunks = (0..<40).map { _ in Int.random(in: 1...24, using: &generator) }
            #expect(Self.decode(Self.stream, chunks: chunks) == whole)
        }
    }

    @Test func randomCorruptionNeverCrashesAndEndsInARequestOrAnError() {
        var generator = Seeded(state: 7)
        for _ in 0..<2000 {
            var bytes = Self.stream
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
            }
            let decoder = HTTPRequestDecoder(headerBytesMax: 8192, bodyBytesMax: 1 << 20)
            let result = decoder.feedAll(bytes)
            if let error = result.error {
                #expect([400, 413, 417, 431, 505].contains(error.status))
                #expect(decoder.isFinished)
            }
            #expect(result.requests.count <= 4)
        }
    }
}
