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
    /// Request body bytes of requests read or being read and not yet answered (`http.body_bytes_in_flight_max`).
    public let bodyBytesInFlight = Atomic<Int>(0)
    /// Reply bytes waiting to be sent now (`http.reply_bytes_pending_max` bounds it).
    public let replyBytesPending = Atomic<Int>(0)
    /// Requests refused because their body did not fit `http.body_bytes_in_flight_max`.
    public let bodyBudgetRefusals = Atomic<UInt64>(0)
    /// Connections closed because their unsent replies passed a bound.
    public let replyBudgetCloses = Atomic<UInt64>(0)
    /// Large replies answered 503 instead because other connections held the node's reply budget.
    public let replyBudgetRefusals = Atomic<UInt64>(0)

    public init() {}

    func record(route: String, status: Int) {
        responses.withLock { $0[RouteStatus(route: route, status: status), default: 0] += 1 }
    }

    /// Response counts, sorted by route then status.
    public func responseCounts() -> [(RouteStatus, UInt64)] {
        responses.withLock { $0 }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }
}
