import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A response as a test client reads it off the wire.
public struct WireResponse: Sendable {
    public var status: Int
    public var headers: [String: String]
    public var body: [UInt8]
    public var text: String { String(decoding: body, as: UTF8.self) }
}

public struct TestClientError: Error, CustomStringConvertible {
    public let description: String

    public init(description: String) { self.description = description }
}

/// A blocking loopback HTTP/1.1 client for tests, with a read timeout on every call,
/// so a server that never answers fails the test instead of hanging it.
public final class TestHTTPClient {
    private let descriptor: Int32
    private var buffer: [UInt8] = []

    public init(port: Int, timeoutSeconds: Int = 10) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw TestClientError(description: "socket: \(errno)") }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        // Every send goes out at once: with Nagle a small send after another waits for the
        // server's (delayed) acknowledgement, so a test could not know its bytes had arrived.
        var noDelay: Int32 = 1
        setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &noDelay, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard status == 0 else {
            // No close here: the stored descriptor makes deinit run, and it closes it. Closing
            // twice would close whatever file another thread opened under that number meanwhile.
            throw TestClientError(description: "connect to 127.0.0.1:\(port): \(String(cString: strerror(errno)))")
        }
    }

    deinit { if descriptor >= 0 { close(descriptor) } }

    public func send(_ text: String) throws { try send(Array(text.utf8)) }

    public func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { throw TestClientError(description: "send: \(String(cString: strerror(errno)))") }
            offset += sent
        }
    }

    /// Shuts down the sending side: the server sees end of stream but can still answer.
    public func shutdownWrite() { shutdown(descriptor, Int32(SHUT_WR)) }

    /// `Basic root:root`, the default credentials a fresh node accepts.
    public static let rootAuthorization = "Basic cm9vdDpyb290"

    /// Sends a request with `Content-Length` when there is a body, and reads its response.
    /// Requests carry root's credentials unless `headers` sets `Authorization` ("" for none).
    public func request(_ method: String, _ target: String, body: [UInt8]? = nil,
                        headers: [String: String] = [:]) throws -> WireResponse {
        var headers = headers
        if headers["Authorization"] == nil { headers["Authorization"] = Self.rootAuthorization }
        if headers["Authorization"] == "" { headers["Authorization"] = nil }
        var head = "\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if let body { head += "Content-Length: \(body.count)\r\n" }
        try send(Array((head + "\r\n").utf8) + (body ?? []))
        return try readResponse()
    }

    /// Reads one response (Content-Length framed, or to end of stream when absent).
    public func readResponse() throws -> WireResponse {
        while true {
            if let end = headerEnd() {
                let head = String(decoding: buffer[0..<end], as: UTF8.self)
                var lines = head.components(separatedBy: "\r\n")
                let statusLine = lines.removeFirst().split(separator: " ")
                guard statusLine.count >= 2, let status = Int(statusLine[1]) else {
                    throw TestClientError(description: "bad status line in \(head)")
                }
                var headers: [String: String] = [:]
                for line in lines where !line.isEmpty {
                    let parts = line.split(separator: ":", maxSplits: 1)
                    headers[parts[0].lowercased()] = parts.count > 1 ? parts[1].trimmingCharacters(in: .whitespaces) : ""
                }
                let bodyStart = end + 4
                if let lengthText = headers["content-length"], let length = Int(lengthText) {
                    while buffer.count < bodyStart + length {
                        guard try fill() else { throw TestClientError(description: "connection closed inside a body") }
                    }
                    let body = Array(buffer[bodyStart..<(bodyStart + length)])
                    buffer.removeFirst(bodyStart + length)
                    return WireResponse(status: status, headers: headers, body: body)
                }
                buffer.removeFirst(bodyStart)
                if (100..<200).contains(status) || status == 204 { return WireResponse(status: status, headers: headers, body: []) }
                while try fill() {}
                let body = buffer
                buffer.removeAll()
                return WireResponse(status: status, headers: headers, body: body)
            }
            guard try fill() else { throw TestClientError(description: "connection closed before a response") }
        }
    }

    /// True once the server has closed the connection (reads return end of stream).
    public func readsEndOfStream() throws -> Bool {
        if !buffer.isEmpty { return false }
        return try !fill()
    }

    private func headerEnd() -> Int? {
        guard buffer.count >= 4 else { return nil }
        for index in 0...(buffer.count - 4)
        where buffer[index] == 13 && buffer[index + 1] == 10 && buffer[index + 2] == 13 && buffer[index + 3] == 10 {
            return index
        }
        return nil
    }

    /// Reads more bytes; false at end of stream.
    private func fill() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
        if count == 0 { return false }
        if count < 0 {
            if errno == ECONNRESET { return false }
            throw TestClientError(description: "recv: \(String(cString: strerror(errno))) (timed out or failed)")
        }
        buffer.append(contentsOf: chunk[0..<count])
        return true
    }
}
