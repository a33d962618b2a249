#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
        if host == "localhost" { host = "127.0.0.1" }
        guard isIPLiteral(host) else {
            return .failure(.init(reason: "host must be an IPv4 or IPv6 address (or localhost), got \"\(host)\""))
        }
        guard let port = Int(portText), (0...65535).contains(port) else {
            return .failure(.init(reason: "port must be an integer from 0 to 65535 in \"\(text)\""))
        }
        return .success(ListenAddress(host: host, port: port))
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    private static func isIPLiteral(_ host: String) -> Bool {
        var address = in6_addr()
        return inet_pton(host.contains(":") ? AF_INET6 : AF_INET, host, &address) == 1
    }
}

public struct ListenAddressError: Error, Sendable, Equatable {
    public let reason: String
}
