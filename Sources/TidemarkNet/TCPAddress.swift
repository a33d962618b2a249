import CLibUV
import TidemarkCore
#if canImport(Glibc)
import Glibc
#endif

/// Socket addresses for libuv TCP handles: one place that turns a `ListenAddress` into a
/// `sockaddr` and back.
enum TCPAddress {
    /// Calls `body` with `address` as a `sockaddr`.
    static func withSockaddr<T>(_ address: ListenAddress, _ body: (UnsafePointer<sockaddr>) throws(UVError) -> T) throws(UVError) -> T {
        var storage = sockaddr_storage()
        return try withUnsafeMutablePointer(to: &storage) { pointer throws(UVError) in
            let raw = UnsafeMutableRawPointer(pointer)
            if address.host.contains(":") {
                try uvCheck("address \(address)", uv_ip6_addr(address.host, Int32(address.port), raw.assumingMemoryBound(to: sockaddr_in6.self)))
            } else {
                try uvCheck("address \(address)", uv_ip4_addr(address.host, Int32(address.port), raw.assumingMemoryBound(to: sockaddr_in.self)))
            }
            return try body(raw.assumingMemoryBound(to: sockaddr.self))
        }
    }

    static func bind(_ tcp: UnsafeMutablePointer<uv_tcp_t>, _ address: ListenAddress) throws(UVError) {
        try withSockaddr(address) { socketAddress throws(UVError) in
            _ = try uvCheck("bind \(address)", uv_tcp_bind(tcp, socketAddress, 0))
        }
    }

    /// The address a bound handle listens on (the real port when 0 was asked for).
    static func bound(_ tcp: UnsafeMutablePointer<uv_tcp_t>, host: String) throws(UVError) -> ListenAddress {
        var storage = sockaddr_storage()
        var length = Int32(MemoryLayout<sockaddr_storage>.size)
        _ = try withUnsafeMutablePointer(to: &storage) { pointer throws(UVError) in
            try uvCheck("uv_tcp_getsockname", uv_tcp_getsockname(tcp, UnsafeMutableRawPointer(pointer).assumingMemoryBound(to: sockaddr.self), &length))
        }
        let family = storage.ss_family
        let port: UInt16 = withUnsafeBytes(of: storage) { raw in
            family == sa_family_t(AF_INET6)
                ? raw.load(as: sockaddr_in6.self).sin6_port
                : raw.load(as: sockaddr_in.self).sin_port
        }
        return ListenAddress(host: host, port: Int(UInt16(bigEndian: port)))
    }

    /// The full address of a connected handle's peer, or nil if the system cannot say.
    static func peer(_ tcp: UnsafeMutablePointer<uv_tcp_t>) -> ListenAddress? {
        var storage = sockaddr_storage()
        var length = Int32(MemoryLayout<sockaddr_storage>.size)
        let status = withUnsafeMutablePointer(to: &storage) { pointer in
            uv_tcp_getpeername(tcp, UnsafeMutableRawPointer(pointer).assumingMemoryBound(to: sockaddr.self), &length)
        }
        guard status == 0 else { return nil }
        var text = [CChar](repeating: 0, count: 64)
        return withUnsafeBytes(of: storage) { raw -> ListenAddress? in
            if storage.ss_family == sa_family_t(AF_INET6) {
                var address = raw.load(as: sockaddr_in6.self)
                guard uv_ip6_name(&address, &text, text.count) == 0 else { return nil }
                return ListenAddress(host: decodedCString(text), port: Int(UInt16(bigEndian: address.sin6_port)))
            }
            var address = raw.load(as: sockaddr_in.self)
            guard uv_ip4_name(&address, &text, text.count) == 0 else { return nil }
            return ListenAddress(host: decodedCString(text), port: Int(UInt16(bigEndian: address.sin_port)))
        }
    }

    /// The client a connected handle's peer counts as for per-client limits: its IPv4
    /// address, or the /64 prefix of its IPv6 address ("" if the system cannot say). A host
    /// is commonly given a whole IPv6 /64, so keying by the full address would give one
    /// client 2^64 separate budgets.
    static func peerHost(_ tcp: UnsafeMutablePointer<uv_tcp_t>) -> String {
        var storage = sockaddr_storage()
        var length = Int32(MemoryLayout<sockaddr_storage>.size)
        let status = withUnsafeMutablePointer(to: &storage) { pointer in
            uv_tcp_getpeername(tcp, UnsafeMutableRawPointer(pointer).assumingMemoryBound(to: sockaddr.self), &length)
        }
        guard status == 0 else { return "" }
        return withUnsafeBytes(of: storage) { raw in
            if storage.ss_family == sa_family_t(AF_INET6) {
                return clientKey(ipv6: withUnsafeBytes(of: raw.load(as: sockaddr_in6.self).sin6_addr) { Array($0) })
            }
            return clientKey(ipv4: withUnsafeBytes(of: raw.load(as: sockaddr_in.self).sin_addr) { Array($0) })
        }
    }

    /// An IPv4 address (4 bytes, network order) as text.
    static func clientKey(ipv4 bytes: [UInt8]) -> String {
        precondition(bytes.count == 4, "an IPv4 address has 4 bytes")
        return bytes.map(String.init).joined(separator: ".")
    }

    /// The /64 prefix of an IPv6 address (16 bytes, network order) as `prefix::/64`; an
    /// IPv4-mapped address (`::ffff:a.b.c.d`, a dual-stack listener's IPv4 client) as its
    /// IPv4 address, so it counts as the same client either way.
    static func clientKey(ipv6 bytes: [UInt8]) -> String {
        precondition(bytes.count == 16, "an IPv6 address has 16 bytes")
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff {
            return clientKey(ipv4: Array(bytes[12...]))
        }
        var prefix = Array(bytes[0..<8]) + [UInt8](repeating: 0, count: 8)
        var text = [CChar](repeating: 0, count: 64)
        guard uv_inet_ntop(AF_INET6, &prefix, &text, text.count) == 0 else { return "" }
        return decodedCString(text) + "/64"
    }

    /// The text of a NUL-terminated buffer libuv filled (an address is ASCII).
    private static func decodedCString(_ buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
