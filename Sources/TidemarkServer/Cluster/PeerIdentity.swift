import Logging
import TidemarkConsensus
import TidemarkCore

/// Who may be on the other end of an internal connection: a node of this cluster (its
/// hello names the same `cluster_name`) that the two nodes' `meta_peers` agree on. The
/// secret says a frame comes from someone who knows it; this says the two configs describe
/// the same cluster, so two clusters sharing a secret, or a node listed in another place,
/// never mix their Raft groups.
struct PeerIdentity {
    let nodeID: UInt64
    let clusterName: String

    /// IDs from here up are provisional: a node outside `meta_peers` that has no ID yet picks
    /// one at random to ask the meta group for its real one (`NodeJoin`).
    static let provisionalIDMin: UInt64 = 1 << 62

    static func isProvisional(_ id: UInt64) -> Bool { id >= provisionalIDMin }

    static func randomProvisionalID() -> UInt64 { UInt64.random(in: provisionalIDMin...UInt64.max) }

    /// Why a hello is refused: `kind` for the log's rate limit, `message` for the operator.
    struct Refusal: Equatable {
        var kind: String
        var message: String
    }

    /// Why the first hello on a connection is refused, or nil when it is accepted. `dialed`
    /// is the node this side dialed at `address` (nil on the accepting side, which only
    /// learns from the hello who calls); `peers` are the nodes of this node's `meta_peers`.
    func refusal(of frame: RaftFrame, dialed: UInt64?, address: String, peers: [UInt64: ListenAddress]) -> Refusal? {
        guard let hello = frame.hello else { return Refusal(kind: "no_hello", message: "the node at \(address) sent a hello without its cluster name") }
        if hello.clusterName != clusterName {
            return Refusal(kind: "cluster_name", message: "cluster name \"\(hello.clusterName)\" differs from this node's \"\(clusterName)\"")
        }
        if let dialed, frame.from != dialed {
            return Refusal(kind: "node_id", message: "the node at \(address) says it is node \(frame.from); meta_peers lists it as node \(dialed)")
        }
        // Checked before an unknown sender: the accepting side's answer then names a node the
        // dialer did not dial, so the dialer finds the mismatch too.
        if frame.to != nodeID {
            return Refusal(kind: "node_id", message: "the node at \(address) (node \(frame.from) by its meta_peers) takes this node for node \(frame.to); meta_peers lists this node as node \(nodeID)")
        }
        // A joining node has no ID yet: it may call (to learn the settings and register),
        // and is known by its provisional ID until it reconnects with the one it was given.
        if peers[frame.from] == nil && !Self.isProvisional(frame.from) {
            return Refusal(kind: "node_id", message: "the node at \(address) says it is node \(frame.from), which meta_peers does not list")
        }
        return nil
    }
}

/// A hello field past its bound: the node would be refused by every peer, so it does not start.
struct HelloFieldTooLong: Error, CustomStringConvertible {
    let field: String
    let bytes: Int
    let max: Int

    var description: String { "\(field) takes \(bytes) bytes; a hello carries at most \(max)" }
}

/// Warnings about peers, at most one per peer and reason every `intervalMs` (loop thread
/// only): a peer with another secret or cluster name redials every few hundred ms, and each
/// attempt must not become a log line. The metrics still count every refusal.
final class PeerWarnings {
    /// The shortest time between two lines for one peer and reason.
    static let intervalMs: UInt64 = 10_000
    /// Peers and reasons remembered at once. Past it (strangers from many addresses) a new
    /// one is not logged until old ones expire, so a flood grows neither memory nor the log.
    static let keysMax = 1024

    private struct Key: Hashable {
        var peer: String
        var reason: String
    }

    private struct Entry {
        var loggedNs: UInt64
        /// Lines held back since `loggedNs`; the next line says how many.
        var heldBack: Int
    }

    private let logger: Logger
    private var entries: [Key: Entry] = [:]

    init(logger: Logger) { self.logger = logger }

    /// Logs `message` as a warning unless the same `reason` was logged for `peer` (an
    /// address, or a host for connections from ephemeral ports) within `intervalMs`.
    func warn(peer: String, reason: String, _ message: String, metadata: Logger.Metadata = [:], nowNs: UInt64) {
        let key = Key(peer: peer, reason: reason)
        let intervalNs = Self.intervalMs * 1_000_000
        if var entry = entries[key], nowNs - entry.loggedNs < intervalNs {
            entry.heldBack += 1
            entries[key] = entry
            return
        }
        if entries[key] == nil && entries.count >= Self.keysMax {
            entries = entries.filter { nowNs - $0.value.loggedNs < intervalNs }
            guard entries.count < Self.keysMax else { return }
        }
        var metadata = metadata
        metadata["reason"] = "\(reason)"
        if let heldBack = entries[key]?.heldBack, heldBack > 0 { metadata["repeats_not_logged"] = "\(heldBack)" }
        entries[key] = Entry(loggedNs: nowNs, heldBack: 0)
        logger.warning("\(message)", metadata: metadata)
    }
}

/// Notices a node that has heard no authenticated frame from any peer for a whole election
/// timeout: it can neither vote nor be elected, and without a line in its log an operator
/// would find only a pre-candidate that never moves.
struct AuthenticationSilence {
    let silenceNs: UInt64
    /// When a frame from a peer last passed the secret's check (or the transport started).
    private(set) var lastHeardNs: UInt64
    /// Frames that failed the check since then: a hint that the secret differs.
    private(set) var failuresSinceHeard = 0

    init(silenceMs: UInt64, nowNs: UInt64) {
        silenceNs = silenceMs * 1_000_000
        lastHeardNs = nowNs
    }

    mutating func heard(nowNs: UInt64) {
        lastHeardNs = nowNs
        failuresSinceHeard = 0
    }

    mutating func failed() { failuresSinceHeard += 1 }

    /// Whether a node with peers has heard from none of them for a whole silence.
    func isDeaf(nowNs: UInt64, hasPeers: Bool) -> Bool { hasPeers && nowNs - lastHeardNs >= silenceNs }
}
