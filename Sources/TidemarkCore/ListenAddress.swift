/// A `HOST:PORT` to listen on; IPv6 hosts are written in brackets (`[::1]:18080`).
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    /// 0 lets the operating system pick a free port.
    public var port: Int

    public init(host: String, port: Int) {
        precondition((0...65535).contains(port))
        self.host = host
        self.port = port
    }

    /// Parses `HOST:PORT`, or returns why it cannot.
    public static func parse(_ text: String) -> Result<ListenAddress, ListenAddressError> {
        guard let colon = text.lastIndex(of: ":") else {
            return .failure(.init(reason: "expected HOST:PORT, got \"\(text)\""))
        }
        var host = String(text[..<colon])
        let portText = text[text.index(after: colon)...]
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return .failure(.init(reason: "missing host in \"\(text)\"")) }
        guard let port = Int(portText), (0...65535).contains(port) else {
            return .failure(.init(reason: "port must be an integer from 0 to 65535 in \"\(text)\""))
        }
        return .success(ListenAddress(host: host, port: port))
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

public struct ListenAddressError: Error, Sendable, Equatable {
    public let reason: String
}
