import TidemarkConsensus
import TidemarkStorage

/// A "not the leader" answer a client can act on: the leader's client address (its
/// `http.listen`), from the cluster's membership, as IoTDB's redirect names an endpoint.
struct LeaderHints: Sendable {
    /// What a refusal says, and where to retry.
    struct Refusal: Sendable, Equatable {
        var message: String
        var leaderAddress: String?
    }

    /// The client address of a node, when the membership knows it.
    let clientAddress: @Sendable (UInt64) -> String?

    /// For a node without peers: its one group has no other leader to name.
    static let standalone = LeaderHints { _ in nil }

    func refusal(_ error: ConsensusError) -> Refusal {
        guard case .notLeader(let group, let hint) = error else { return Refusal(message: "\(error)", leaderAddress: nil) }
        guard let hint else { return Refusal(message: "not the leader of \(group), and no leader is known yet; retry shortly", leaderAddress: nil) }
        let address = clientAddress(hint)
        return Refusal(message: "not the leader of \(group); the leader is node \(hint)" + (address.map { " at \($0)" } ?? ""),
                       leaderAddress: address)
    }

    /// A failed proposal as the engine reports it: retryable ones (not the leader, busy) as
    /// `unavailable`, naming the leader when known; others unchanged.
    func engineError(_ error: Error) -> Error {
        guard let consensus = error as? ConsensusError, consensus.isRetryable else { return error }
        let refusal = refusal(consensus)
        return EngineError.unavailable(refusal.message, leaderAddress: refusal.leaderAddress)
    }
}
