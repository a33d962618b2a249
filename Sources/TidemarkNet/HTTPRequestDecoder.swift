import CHTTPParser

/// Why a request cannot be served, with the status to answer and a reason for the body.
public struct HTTPDecodeError: Error, Sendable, Equatable {
    public let status: Int
    public let reason: String
}

/// What one call to `HTTPRequestDecoder.feed` found.
public struct HTTPDecodeStep: Sendable {
    /// Bytes of the input that were consumed; the rest must be fed again.
    public var consumed = 0
    /// Headers with `Expect: 100-continue` were completed and the body is wanted.
    public var continueRequested = false
    /// The head (request line and headers, no body yet) of the request being decoded: the
    /// decoder stops right after it, so the caller can check credentials and budgets before
    /// any of the body is read. `feed` goes on with the body when called again.
    public var head: HTTPRequest?
    /// Body bytes consumed by this step, also when the request ended in it (whose counts
    /// the decoder has already reset): the caller reserves a chunked body's budget from this.
    public var bodyBytes = 0
    /// A whole request, if one ended inside the consumed bytes.
    public var request: HTTPRequest?
    /// Set when the input is not acceptable; the connection must answer it and close.
    public var error: HTTPDecodeError?
}

/// Turns a byte stream into HTTP/1.1 requests with Node's http-parser, enforcing
/// header and body limits. It stops after each complete request, so the caller
/// decides whether to read on (pipelining depth, backpressure).
///
/// Not thread-safe: one decoder belongs to one connection on the loop thread.
public final class HTTPRequestDecoder {
    private let parser: UnsafeMutablePointer<http_parser>
    private let headerBytesMax: Int
    private let bodyBytesMax: Int

    // The request being assembled.
    private var method = ""
    private var target: [UInt8] = []
    private var headers: [(name: String, value: String)] = []
    private var headerName: [UInt8] = []
    private var headerValue: [UInt8] = []
    private var headerBytes = 0
    private var body: [UInt8] = []
    private var step = HTTPDecodeStep()
    private var limitError: HTTPDecodeError?
    private var foldScanner = HeaderFoldScanner()
    /// The body length the current request's head declared: nil when it is chunked (or
    /// before its head is complete), 0 when it has none.
    public private(set) var declaredBodyBytes: Int?
    /// The connection can carry no more requests (after an error or an upgrade).
    public private(set) var isFinished = false
    /// Bytes of a request have arrived and it is not complete yet.
    public private(set) var isInsideRequest = false

    public init(headerBytesMax: Int, bodyBytesMax: Int) {
        precondition(headerBytesMax > 0 && bodyBytesMax >= 0)
        self.headerBytesMax = headerBytesMax
        self.bodyBytesMax = bodyBytesMax
        parser = .allocate(capacity: 1)
        http_parser_init(parser, HTTP_REQUEST)
        parser.pointee.data = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit { parser.deallocate() }

    /// Parses from `bytes` until one request is complete, an error is found, or the bytes run out.
    public func feed(_ bytes: UnsafeRawBufferPointer) -> HTTPDecodeStep {
        precondition(!isFinished, "feed after the decoder finished")
        step = HTTPDecodeStep()
        guard !bytes.isEmpty else { return step }
        isInsideRequest = true
        if !foldScanner.scan(bytes) {
            // An obs-fold line continues a header on the next line; http-parser would join it
            // (a folded Transfer-Encoding still means chunked), so it is a smuggling vector: refuse.
            fail(HTTPDecodeError(status: 400, reason: "malformed HTTP request: folded header line (obs-fold) is not accepted"))
            return step
        }
        let consumed = withUnsafePointer(to: &Self.settings) { settings in
            http_parser_execute(parser, settings, bytes.baseAddress!.assumingMemoryBound(to: CChar.self), bytes.count)
        }
        step.consumed = consumed
        let errno = http_errno(rawValue: tidemark_http_errno(parser))
        if errno == HPE_PAUSED {
            http_parser_pause(parser, 0)
        } else if errno != HPE_OK {
            fail(limitError ?? Self.describe(errno))
        } else if tidemark_http_upgrade(parser) != 0 && step.request != nil {
            // After an upgrade (or CONNECT) the stream is no longer HTTP; serve this request, then close.
            step.request!.keepAlive = false
            isFinished = true
        }
        return step
    }

    /// Convenience for tests and tools: feeds a whole buffer, collecting every request.
    public func feedAll(_ bytes: [UInt8]) -> (requests: [HTTPRequest], continues: Int, error: HTTPDecodeError?) {
        var requests: [HTTPRequest] = []
        var continues = 0
        var offset = 0
        while offset < bytes.count && !isFinished {
            let step = bytes.withUnsafeBytes { feed(UnsafeRawBufferPointer(rebasing: $0[offset...])) }
            offset += step.consumed
            if step.continueRequested { continues += 1 }
            if let request = step.request { requests.append(request) }
            if let error = step.error { return (requests, continues, error) }
            // A head may end without consuming its last LF; the next feed goes on from it.
            if step.consumed == 0 && step.head == nil { break }
        }
        return (requests, continues, nil)
    }

    private func fail(_ error: HTTPDecodeError) {
        step.error = error
        step.request = nil
        step.head = nil
        isFinished = true
    }

    private static func describe(_ errno: http_errno) -> HTTPDecodeError {
        if errno == HPE_HEADER_OVERFLOW { return HTTPDecodeError(status: 431, reason: "request headers are too large") }
        let name = String(cString: http_errno_name(errno))
        let description = String(cString: http_errno_description(errno))
        return HTTPDecodeError(status: 400, reason: "malformed HTTP request: \(description) (\(name))")
    }

    // MARK: - Callbacks

    private func countHeaderBytes(_ count: Int) -> Int32 {
        headerBytes += count
        guard headerBytes <= headerBytesMax else {
            limitError = HTTPDecodeError(status: 431, reason: "request line and headers exceed \(headerBytesMax) bytes")
            return 1
        }
        return 0
    }

    private func flushHeader() {
        guard !headerName.isEmpty else { return }
        headers.append((String(decoding: headerName, as: UTF8.self).lowercased(), String(decoding: headerValue, as: UTF8.self)))
        headerName.removeAll(keepingCapacity: true)
        headerValue.removeAll(keepingCapacity: true)
    }

    private func onHeadersComplete() -> Int32 {
        flushHeader()
        headerValueStarted = false
        method = String(cString: http_method_str(http_method(rawValue: tidemark_http_method(parser))))
        guard parser.pointee.http_major == 1 else {
            limitError = HTTPDecodeError(status: 505, reason: "HTTP/\(parser.pointee.http_major).\(parser.pointee.http_minor) is not supported; use HTTP/1.1")
            return -1
        }
        let declaredLength = parser.pointee.content_length
        // content_length is ULLONG_MAX when absent (chunked or no body).
        if declaredLength != UInt64.max && declaredLength > UInt64(bodyBytesMax) {
            limitError = HTTPDecodeError(status: 413, reason: "request body of \(declaredLength) bytes exceeds \(bodyBytesMax) bytes")
            return -1
        }
        if let expect = headers.first(where: { $0.name == "expect" })?.value {
            guard expect.lowercased() == "100-continue" else {
                limitError = HTTPDecodeError(status: 417, reason: "unsupported Expect: \(expect)")
                return -1
            }
            step.continueRequested = true
        }
        let chunked = tidemark_http_chunked(parser) != 0
        declaredBodyBytes = chunked ? nil : (declaredLength == UInt64.max ? 0 : Int(declaredLength))
        // Room for the body is reserved when it starts to arrive, after the caller has
        // admitted the head: a refused request never makes the node allocate its body.
        step.head = HTTPRequest(
            method: method, target: String(decoding: target, as: UTF8.self), headers: headers,
            versionMajor: Int(parser.pointee.http_major), versionMinor: Int(parser.pointee.http_minor),
            keepAlive: http_should_keep_alive(parser) != 0)
        step.head!.announcesBody = chunked || declaredBodyBytes! > 0
        http_parser_pause(parser, 1)
        return 0
    }

    private func onBody(_ at: UnsafePointer<CChar>, _ count: Int) -> Int32 {
        guard body.count + count <= bodyBytesMax else {
            limitError = HTTPDecodeError(status: 413, reason: "request body exceeds \(bodyBytesMax) bytes")
            return 1
        }
        if body.isEmpty, let declaredBodyBytes, declaredBodyBytes > 0 { body.reserveCapacity(declaredBodyBytes) }
        step.bodyBytes += count
        body.append(contentsOf: UnsafeRawBufferPointer(start: at, count: count))
        return 0
    }

    private func onMessageComplete() -> Int32 {
        step.request = HTTPRequest(
            method: method, target: String(decoding: target, as: UTF8.self), headers: headers, body: body,
            versionMajor: Int(parser.pointee.http_major), versionMinor: Int(parser.pointee.http_minor),
            keepAlive: http_should_keep_alive(parser) != 0)
        target.removeAll(keepingCapacity: true)
        headers.removeAll(keepingCapacity: true)
        body = []
        headerBytes = 0
        declaredBodyBytes = nil
        foldScanner = HeaderFoldScanner()
        isInsideRequest = false
        http_parser_pause(parser, 1)
        return 0
    }

    private static func decoder(_ parser: UnsafeMutablePointer<http_parser>?) -> HTTPRequestDecoder {
        Unmanaged<HTTPRequestDecoder>.fromOpaque(parser!.pointee.data).takeUnretainedValue()
    }

    private static func bytes(_ at: UnsafePointer<CChar>?, _ count: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: at, count: count)
    }

    nonisolated(unsafe) private static var settings: http_parser_settings = {
        // nonisolated(unsafe): written once here, then only read by http_parser_execute on the loop thread.
        var settings = http_parser_settings()
        settings.on_message_begin = { parser in
            let decoder = decoder(parser)
            decoder.isInsideRequest = true
            return 0
        }
        settings.on_url = { parser, at, count in
            let decoder = decoder(parser)
            decoder.target.append(contentsOf: bytes(at, count))
            return decoder.countHeaderBytes(count)
        }
        settings.on_header_field = { parser, at, count in
            let decoder = decoder(parser)
            if decoder.headerValueStarted {
                decoder.flushHeader()
                decoder.headerValueStarted = false
            }
            let name = bytes(at, count)
            // http-parser (built lenient) takes a space as part of a name, and still reads
            // "Transfer-Encoding :" as chunked; a proxy in front may not: refuse it (RFC 9112 5.1).
            if name.contains(where: { $0 == 32 || $0 == 9 }) {
                decoder.limitError = HTTPDecodeError(status: 400, reason: "malformed HTTP request: whitespace in a header name")
                return 1
            }
            decoder.headerName.append(contentsOf: name)
            return decoder.countHeaderBytes(count)
        }
        settings.on_header_value = { parser, at, count in
            let decoder = decoder(parser)
            decoder.headerValueStarted = true
            decoder.headerValue.append(contentsOf: bytes(at, count))
            return decoder.countHeaderBytes(count)
        }
        settings.on_headers_complete = { parser in decoder(parser).onHeadersComplete() }
        settings.on_body = { parser, at, count in decoder(parser).onBody(at!, count) }
        settings.on_message_complete = { parser in decoder(parser).onMessageComplete() }
        return settings
    }()

    /// A value callback has run for the current header (its value may be empty).
    private var headerValueStarted = false
}

/// Finds obs-fold in a request's header block: a header line that starts with a space or a
/// tab. It looks only at the bytes before the blank line that ends the headers; the decoder
/// starts a fresh one for each request.
struct HeaderFoldScanner {
    /// False once the blank line after the headers has been seen.
    private var inHeaders = true
    /// Bytes on the current line, not counting CR.
    private var lineBytes = 0
    /// Non-empty lines completed in this head (the request line is the first).
    private var lines = 0

    /// Scans the next bytes of the stream; false when a folded header line starts in them.
    mutating func scan(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var index = 0
        while inHeaders && index < bytes.count {
            let byte = bytes[index]
            index += 1
            if byte == 10 {
                if lineBytes > 0 {
                    lines += 1
                } else if lines > 0 {
                    inHeaders = false  // empty lines before the request line are skipped, as http-parser does
                }
                lineBytes = 0
            } else if byte != 13 {
                if lineBytes == 0 && lines > 0 && (byte == 32 || byte == 9) { return false }
                lineBytes += 1
            }
        }
        return true
    }
}
