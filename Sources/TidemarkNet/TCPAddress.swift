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

    /// The IP address of a connected handle's peer, as text ("" if the system cannot say).
    static func peerHost(_ tcp: UnsafeMutablePointer<uv_tcp_t>) -> String {
        var storage = sockaddr_storage()
        var length = Int32(MemoryLayout<sockaddr_storage>.size)
        let status = withUnsafeMutablePointer(to: &storage) { pointer in
            uv_tcp_getpeername(tcp, UnsafeMutableRawPointer(pointer).assumingMemoryBound(to: sockaddr.self), &length)
        }
        guard status == 0 else { return "" }
        var text = [CChar](repeating: 0, count: 64)
        let family = storage.ss_family
        let named = withUnsafePointer(to: storage) { pointer in
            let raw = UnsafeRawPointer(pointer)
            return family == sa_family_t(AF_INET6)
                ? uv_ip6_name(raw.assumingMemoryBound(to: sockaddr_in6.self), &text, text.count)
                : uv_ip4_name(raw.assumingMemoryBound(to: sockaddr_in.self), &text, text.count)
        }
        return named == 0 ? String(cString: text) : ""
    }
}
