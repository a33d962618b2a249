#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a node says of itself to its peers in the hello that opens an internal connection,
/// and the bounds on it: the hello is read before the peer is trusted with more than a few
/// hundred bytes, so every field has a limit the config enforces first.
public enum ClusterIdentity {
    /// Bytes of `cluster_name` at most (the config refuses a longer one).
    public static let nameBytesMax = 64
    /// Bytes of a client address (`HOST:PORT`) at most. A parsed `ListenAddress` takes 53 at
    /// most (`[` + a 45-character IPv6 literal + `]:65535`), so any configured address fits.
    public static let clientAddressBytesMax = 64
    /// The secret the sample cluster configs ship with: fine on loopback, refused elsewhere.
    public static let placeholderSecret = "change-me"

    /// The address clients reach this node at, as peers hand it out in leader hints: the bound
    /// HTTP address, or, when that listens on every interface (a wildcard host no client can
    /// dial), the host of the internal address (the one the peers reach this node at) with
    /// the HTTP port.
    public static func clientAddress(http: ListenAddress, internalListen: ListenAddress) -> String {
        guard http.isWildcard else { return "\(http)" }
        return "\(ListenAddress(host: internalListen.host, port: http.port))"
    }
}

extension ListenAddress {
    /// Whether the host is a loopback address (127.0.0.0/8 or ::1): only this machine can
    /// connect. A wildcard host (0.0.0.0, ::) is not: it listens on every interface.
    public var isLoopback: Bool {
        if let bytes = Self.ipv4Bytes(host) { return bytes[0] == 127 }
        if let bytes = Self.ipv6Bytes(host) {
            // ::1, or an IPv4-mapped loopback address (::ffff:127.x.y.z).
            let mapped = bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xff && bytes[11] == 0xff
            return bytes == [UInt8](repeating: 0, count: 15) + [1] || (mapped && bytes[12] == 127)
        }
        return false
    }

    /// Whether the host is the wildcard of its family (0.0.0.0 or ::): every interface.
    public var isWildcard: Bool {
        if let bytes = Self.ipv4Bytes(host) { return bytes.allSatisfy { $0 == 0 } }
        if let bytes = Self.ipv6Bytes(host) { return bytes.allSatisfy { $0 == 0 } }
        return false
    }

    private static func ipv4Bytes(_ host: String) -> [UInt8]? {
        guard !host.contains(":") else { return nil }
        var address = in_addr()
        guard inet_pton(AF_INET, host, &address) == 1 else { return nil }
        return withUnsafeBytes(of: address) { Array($0) }
    }

    private static func ipv6Bytes(_ host: String) -> [UInt8]? {
        guard host.contains(":") else { return nil }
        var address = in6_addr()
        guard inet_pton(AF_INET6, host, &address) == 1 else { return nil }
        return withUnsafeBytes(of: address) { Array($0) }
    }
}
