import Foundation
import Synchronization

/// Ports this test process handed out already (never twice, even once their probe closed).
private let handedOut = Mutex<Set<Int>>([])

/// A port on 127.0.0.1 that was free when probed, for a process that must know its port
/// before it starts (a cluster member named in the others' `meta_peers`). Probed below the
/// kernel's ephemeral range (32768 and up on Linux): a port the kernel picked for a probe
/// could be given to any outgoing connection of another test before the node binds it.
public func freePort() throws -> Int {
    for _ in 0..<500 {
        let port = Int.random(in: 20_000..<32_000)
        guard handedOut.withLock({ $0.insert(port).inserted }) else { continue }
        if canBind(port) { return port }
    }
    throw TestClientError(description: "cannot probe a free port in 20000..<32000")
}

/// Whether `port` on 127.0.0.1 can be bound now.
private func canBind(_ port: Int) -> Bool {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard descriptor >= 0 else { return false }
    defer { close(descriptor) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    return withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
}
