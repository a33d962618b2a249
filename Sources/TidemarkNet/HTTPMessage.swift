/// One HTTP/1.1 request as the edge hands it to the decode stage: framing done, body whole.
public struct HTTPRequest: Sendable {
    public var method: String
    /// The request target as sent, e.g. `/write?db=plant1`.
    public var target: String
    /// Header names lower-cased, values as sent, in order.
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    public var versionMajor: Int
    public var versionMinor: Int
    /// Whether the connection stays open after the response.
    public var keepAlive: Bool
    /// Who the handler's admission check found behind the request's credentials, from its
    /// head, before the body was read (nil for open routes, or when no check ran).
    public var admittedAs: String?
    /// In a head (`HTTPRequestHandler.admit`), whether a body follows it: chunked, or a declared
    /// length above zero. Set by the decoder, which knows how the request is framed.
    public var announcesBody = false

    public init(method: String, target: String, headers: [(name: String, value: String)] = [], body: [UInt8] = [],
                versionMajor: Int = 1, versionMinor: Int = 1, keepAlive: Bool = true) {
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.versionMajor = versionMajor
        self.versionMinor = versionMinor
        self.keepAlive = keepAlive
    }

    /// The target without its query string.
    public var path: Substring { target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? "" }

    /// The first value of header `name` (case-insensitive).
    public func header(_ name: String) -> String? {
        let lowered = name.lowercased()
        return headers.first { $0.name == lowered }?.value
    }
}

/// A response for the edge to write.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// The route label under which `/metrics` counts this response (`/ping`, `other`, …).
    public var route: String

    public init(status: Int, contentType: String? = nil, body: [UInt8] = [], route: String,
                headers: [(name: String, value: String)] = []) {
        self.status = status
        self.body = body
        self.route = route
        self.headers = headers
        if let contentType { self.headers.append(("Content-Type", contentType)) }
    }

    /// A JSON body given as text.
    public static func json(_ status: Int, _ json: String, route: String) -> HTTPResponse {
        HTTPResponse(status: status, contentType: "application/json", body: Array(json.utf8), route: route)
    }

    /// A JSON error body `{"code":…,"message":…}`, the shape IoTDB's REST API uses.
    public static func error(_ status: Int, _ message: String, route: String, extra: [(String, String)] = []) -> HTTPResponse {
        var fields = "\"code\":\(status),\"message\":\(jsonQuoted(message))"
        for (key, value) in extra { fields += ",\(jsonQuoted(key)):\(jsonQuoted(value))" }
        return json(status, "{\(fields)}", route: route)
    }
}

/// `,"key":"value"` for a JSON object being written, or nothing when there is no value.
public func jsonField(_ key: String, _ value: String?) -> String {
    value.map { ",\(jsonQuoted(key)):\(jsonQuoted($0))" } ?? ""
}

/// `text` as a JSON string literal.
public func jsonQuoted(_ text: String) -> String {
    var out = "\""
    out.reserveCapacity(text.utf8.count + 2)
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20:
            let hex = String(scalar.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}

/// Reason phrases for the status codes Tidemark sends.
public func httpReasonPhrase(_ status: Int) -> String {
    switch status {
    case 100: "Continue"
    case 200: "OK"
    case 201: "Created"
    case 204: "No Content"
    case 400: "Bad Request"
    case 401: "Unauthorized"
    case 403: "Forbidden"
    case 404: "Not Found"
    case 405: "Method Not Allowed"
    case 408: "Request Timeout"
    case 411: "Length Required"
    case 413: "Content Too Large"
    case 417: "Expectation Failed"
    case 429: "Too Many Requests"
    case 431: "Request Header Fields Too Large"
    case 500: "Internal Server Error"
    case 501: "Not Implemented"
    case 503: "Service Unavailable"
    case 505: "HTTP Version Not Supported"
    default: "Status \(status)"
    }
}

extension HTTPResponse {
    /// The response as bytes on the wire. `headOnly` omits the body (for HEAD).
    /// Appends bytes directly: this runs on the loop thread for every response.
    func serialized(keepAlive: Bool, http10: Bool = false, date: [UInt8], headOnly: Bool = false, into out: inout [UInt8]) {
        out.reserveCapacity(out.count + 160 + body.count)
        out.append(contentsOf: "HTTP/1.1 \(status) \(httpReasonPhrase(status))\r\nServer: tidemark\r\nDate: ".utf8)
        out.append(contentsOf: date)
        out.append(contentsOf: Self.lineEnd)
        for (name, value) in headers {
            out.append(contentsOf: name.utf8)
            out.append(contentsOf: Self.separator)
            out.append(contentsOf: value.utf8)
            out.append(contentsOf: Self.lineEnd)
        }
        if status != 204 && !(100..<200).contains(status) {
            out.append(contentsOf: "Content-Length: \(body.count)\r\n".utf8)
        }
        if !keepAlive {
            out.append(contentsOf: "Connection: close\r\n".utf8)
        } else if http10 {
            out.append(contentsOf: "Connection: keep-alive\r\n".utf8)
        }
        out.append(contentsOf: Self.lineEnd)
        if !headOnly { out.append(contentsOf: body) }
    }

    private static let lineEnd: [UInt8] = [13, 10]
    private static let separator: [UInt8] = [58, 32]
}
