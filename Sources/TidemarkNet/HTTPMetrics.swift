import Synchronization

/// HTTP counters the edge keeps for `/metrics`: responses by route and status, connections.
public final class HTTPMetrics: Sendable {
    public struct RouteStatus: Hashable, Sendable, Comparable {
        public let route: String
        public let status: Int

        public static func < (lhs: RouteStatus, rhs: RouteStatus) -> Bool {
            (lhs.route, lhs.status) < (rhs.route, rhs.status)
        }
    }

    private let responses = Mutex<[RouteStatus: UInt64]>([:])
    public let openConnections = Atomic<Int>(0)
    public let acceptedConnections = Atomic<UInt64>(0)
    /// Connections refused because `connections_max` were open.
    public let refusedConnections = Atomic<UInt64>(0)

    public init() {}

    func record(route: String, status: Int) {
        responses.withLock { $0[RouteStatus(route: route, status: status), default: 0] += 1 }
    }

    /// Response counts, sorted by route then status.
    public func responseCounts() -> [(RouteStatus, UInt64)] {
        responses.withLock { $0 }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }
}
