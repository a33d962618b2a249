import CHTTPParser
import CLibUV
import TidemarkCore

/// A response as the client received it.
public struct HTTPClientResponse: Sendable {
    public var status: Int
    /// Header names lower-cased.
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
}

public struct HTTPClientError: Error, Sendable, CustomStringConvertible {
    public let description: String
}

/// A blocking HTTP/1.1 client for the command-line tools: one request on its own
/// libuv loop, bounded by a timeout, with the response framed by http-parser.
public enum HTTPClient {
    /// Sends one request to `host:port` and waits for the whole response.
    public static func send(host: String, port: Int, method: String, target: String, body: [UInt8] = [],
                            headers: [(String, String)] = [], timeoutMs: UInt64 = 10_000,
                            responseBytesMax: Int = 64 * 1024 * 1024) throws(HTTPClientError) -> HTTPClientResponse {
        var head = "\(method) \(target) HTTP/1.1\r\nHost: \(host):\(port)\r\nConnection: close\r\nUser-Agent: tidemark\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if !body.isEmpty || method == "POST" || method == "PUT" { head += "Content-Length: \(body.count)\r\n" }
        let exchange = ClientExchange(request: Array((head + "\r\n").utf8) + body, responseBytesMax: responseBytesMax)
        return try exchange.run(host: host, port: port, timeoutMs: timeoutMs)
    }
}

/// The state of one client request on its private loop. Single-threaded: every
/// callback runs inside `run()` on the calling thread.
private final class ClientExchange {
    private let request: [UInt8]
    private let responseBytesMax: Int
    private let loop = UnsafeMutablePointer<uv_loop_t>.allocate(capacity: 1)
    private let tcp = UnsafeMutablePointer<uv_tcp_t>.allocate(capacity: 1)
    private let timer = UnsafeMutablePointer<uv_timer_t>.allocate(capacity: 1)
    private let parser = UnsafeMutablePointer<http_parser>.allocate(capacity: 1)
    private var settings = http_parser_settings()
    private var failure: String?
    private var status = 0
    private var headers: [(name: String, value: String)] = []
    private var headerName: [UInt8] = []
    private var headerValue: [UInt8] = []
    private var inValue = false
    private var body: [UInt8] = []
    private var complete = false
    private var received = 0

    init(request: [UInt8], responseBytesMax: Int) {
        self.request = request
        self.responseBytesMax = responseBytesMax
    }

    deinit {
        loop.deallocate()
        tcp.deallocate()
        timer.deallocate()
        parser.deallocate()
    }

    func run(host: String, port: Int, timeoutMs: UInt64) throws(HTTPClientError) -> HTTPClientResponse {
        uv_loop_init(loop)
        loop.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        http_parser_init(parser, HTTP_RESPONSE)
        parser.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        installParserCallbacks()
        uv_tcp_init(loop, tcp)
        uv_timer_init(loop, timer)
        uv_timer_start(timer, { timer in
            let exchange = ClientExchange.from(timer!.pointee.loop)
            exchange.finish(failure: "no complete response within the timeout")
        }, timeoutMs, 0)
        connect(host: host, port: port)
        uv_run(loop, UV_RUN_DEFAULT)
        uv_loop_close(loop)
        if let failure { throw HTTPClientError(description: "\(host):\(port): \(failure)") }
        return HTTPClientResponse(status: status, headers: headers, body: body)
    }

    private static func from(_ loop: UnsafeMutablePointer<uv_loop_t>?) -> ClientExchange {
        Unmanaged<ClientExchange>.fromOpaque(loop!.pointee.data).takeUnretainedValue()
    }

    private func connect(host: String, port: Int) {
        var storage = sockaddr_storage()
        let resolved = withUnsafeMutableBytes(of: &storage) { raw -> Bool in
            if uv_ip4_addr(host == "localhost" ? "127.0.0.1" : host, Int32(port), raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self)) == 0 { return true }
            return uv_ip6_addr(host, Int32(port), raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self)) == 0
        }
        guard resolved else {
            finish(failure: "host must be an IP address or localhost")
            return
        }
        let connect = UnsafeMutablePointer<uv_connect_t>.allocate(capacity: 1)
        let status = withUnsafeBytes(of: &storage) { raw in
            uv_tcp_connect(connect, tcp, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self)) { connect, status in
                let stream = connect!.pointee.handle!
                connect!.deallocate()
                let exchange = ClientExchange.from(stream.pointee.loop)
                guard status == 0 else {
                    exchange.finish(failure: "connect: \(String(cString: uv_strerror(status)))")
                    return
                }
                exchange.sendRequest(stream)
            }
        }
        if status != 0 {
            connect.deallocate()
            finish(failure: "connect: \(String(cString: uv_strerror(status)))")
        }
    }

    private func sendRequest(_ stream: UnsafeMutablePointer<uv_stream_t>) {
        let write = UnsafeMutablePointer<uv_write_t>.allocate(capacity: 1)
        let status = request.withUnsafeBytes { bytes in
            var buffer = uv_buf_init(UnsafeMutablePointer(mutating: bytes.baseAddress!.assumingMemoryBound(to: CChar.self)), UInt32(bytes.count))
            // uv_write copies the buffer descriptors; the bytes stay alive in `request` until the loop ends.
            return uv_write(write, stream, &buffer, 1) { write, status in
                let loop = write!.pointee.handle!.pointee.loop
                write!.deallocate()
                if status != 0 { ClientExchange.from(loop).finish(failure: "write: \(String(cString: uv_strerror(status)))") }
            }
        }
        guard status == 0 else {
            write.deallocate()
            finish(failure: "write: \(String(cString: uv_strerror(status)))")
            return
        }
        uv_read_start(stream, { _, suggested, buffer in
            buffer!.pointee = uv_buf_init(UnsafeMutablePointer<CChar>.allocate(capacity: suggested), UInt32(suggested))
        }, { stream, count, buffer in
            let exchange = ClientExchange.from(stream!.pointee.loop)
            defer { buffer!.pointee.base?.deallocate() }
            exchange.onRead(count: count, base: buffer!.pointee.base)
        })
    }

    private func onRead(count: Int, base: UnsafeMutablePointer<CChar>?) {
        guard !complete, failure == nil else { return }
        if count < 0 {
            // End of stream completes a response framed by connection close.
            http_parser_execute(parser, &settings, nil, 0)
            if !complete { finish(failure: count == Int(UV_EOF.rawValue) ? "connection closed before a complete response" : "read: \(String(cString: uv_strerror(Int32(count))))") }
            return
        }
        received += count
        guard received <= responseBytesMax else {
            finish(failure: "response larger than \(responseBytesMax) bytes")
            return
        }
        let parsed = http_parser_execute(parser, &settings, base, count)
        if !complete && parsed != count {
            let errno = http_errno(rawValue: tidemark_http_errno(parser))
            finish(failure: "malformed response: \(String(cString: http_errno_description(errno)))")
        }
    }

    fileprivate func finish(failure: String?) {
        if self.failure == nil && !complete { self.failure = failure }
        uv_timer_stop(timer)
        for handle in [UnsafeMutableRawPointer(tcp), UnsafeMutableRawPointer(timer)] {
            let handle = handle.assumingMemoryBound(to: uv_handle_t.self)
            if uv_is_closing(handle) == 0 { uv_close(handle, nil) }
        }
    }

    private func flushHeader() {
        guard !headerName.isEmpty else { return }
        headers.append((String(decoding: headerName, as: UTF8.self).lowercased(), String(decoding: headerValue, as: UTF8.self)))
        headerName = []
        headerValue = []
    }

    private static func exchange(_ parser: UnsafeMutablePointer<http_parser>?) -> ClientExchange {
        Unmanaged<ClientExchange>.fromOpaque(parser!.pointee.data).takeUnretainedValue()
    }

    private func installParserCallbacks() {
        settings.on_header_field = { parser, at, count in
            let exchange = ClientExchange.exchange(parser)
            if exchange.inValue { exchange.flushHeader() }
            exchange.inValue = false
            exchange.headerName.append(contentsOf: UnsafeRawBufferPointer(start: at, count: count))
            return 0
        }
        settings.on_header_value = { parser, at, count in
            let exchange = ClientExchange.exchange(parser)
            exchange.inValue = true
            exchange.headerValue.append(contentsOf: UnsafeRawBufferPointer(start: at, count: count))
            return 0
        }
        settings.on_headers_complete = { parser in
            let exchange = ClientExchange.exchange(parser)
            exchange.flushHeader()
            exchange.status = Int(parser!.pointee.status_code)
            return 0
        }
        settings.on_body = { parser, at, count in
            ClientExchange.exchange(parser).body.append(contentsOf: UnsafeRawBufferPointer(start: at, count: count))
            return 0
        }
        settings.on_message_complete = { parser in
            let exchange = ClientExchange.exchange(parser)
            // A 100 Continue is interim: wait for the final response.
            guard exchange.status >= 200 else {
                exchange.headers = []
                return 0
            }
            exchange.complete = true
            exchange.finish(failure: nil)
            return 0
        }
    }
}
