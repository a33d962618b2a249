import TidemarkConsensus
import TidemarkStorage

/// A "not the leader" answer a client can act on: the leader's client address (its
/// `http.listen`), from the cluster's membership, as IoTDB's redirect names an endpoint.
public struct LeaderHints: Sendable {
    /// What a refusal says, and where to retry.
    public struct Refusal: Sendable, Equatable {
        public var message: String
        public var leaderAddress: String?
        /// The leader's node ID, when known (a coordinator retries the write there).
        public var leaderNode: UInt64?

        public init(message: String, leaderAddress: String?, leaderNode: UInt64? = nil) {
            self.message = message
            self.leaderAddress = leaderAddress
            self.leaderNode = leaderNode
        }
    }

    /// The client address of a node, when the membership knows it.
    public let clientAddress: @Sendable (UInt64) -> String?

    public init(clientAddress: @escaping @Sendable (UInt64) -> String?) { self.clientAddress = clientAddress }

    /// For a node without peers: its one group has no other leader to name.
    public static let standalone = LeaderHints { _ in nil }

    public func refusal(_ error: ConsensusError) -> Refusal {
        guard case .notLeader(let group, let hint) = error else { return Refusal(message: "\(error)", leaderAddress: nil) }
        guard let hint else { return Refusal(message: "not the leader of \(group), and no leader is known yet; retry shortly", leaderAddress: nil) }
        let address = clientAddress(hint)
        return Refusal(message: "not the leader of \(group); the leader is node \(hint)" + (address.map { " at \($0)" } ?? ""),
                       leaderAddress: address, leaderNode: hint)
    }

    /// A failed proposal as the engine reports it: retryable ones (not the leader, busy) as
    /// `unavailable`, naming the leader when known; others unchanged.
    public func engineError(_ error: Error) -> Error {
        guard let consensus = error as? ConsensusError, consensus.isRetryable else { return error }
        let refusal = refusal(consensus)
        return EngineError.unavailable(refusal.message, leaderAddress: refusal.leaderAddress)
    }
}
