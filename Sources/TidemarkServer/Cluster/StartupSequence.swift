import Logging
import Synchronization
import TidemarkCluster
import TidemarkCore

/// The last steps of the seed start-up order (DESIGN.md section 3), driven from the loop
/// until the node may open its client port: its fixed settings agree with more than half
/// of the meta group's members (itself counted), and the meta group holds it as registered
/// (which needs the group to have a leader). A member whose settings differ stops the start
/// with a line naming the setting and both values. Loop thread only.
final class StartupSequence: @unchecked Sendable {
    /// What the node does next.
    enum Decision: Equatable {
        case wait
        /// Refuse to start: why, in one line.
        case refuse(String)
        /// Open the client port: the node is ready.
        case open
    }

    private let meta: MetaAgent
    private let settings: ClusterSettings
    /// The other members of the meta group, with their internal addresses.
    private let peers: [NodeID: String]
    private let memberCount: Int
    private let logger: Logger
    private var answers: [NodeID: ClusterSettings] = [:]
    private var asking: Set<NodeID> = []
    private let startedNs = monotonicNowNs()
    private var lastReportNs: UInt64 = 0
    static let reportEveryMs: UInt64 = 5000

    init(meta: MetaAgent, settings: ClusterSettings, peers: [NodeID: String], memberCount: Int, logger: Logger) {
        self.meta = meta
        self.settings = settings
        self.peers = peers
        self.memberCount = memberCount
        self.logger = logger
    }

    func advance(nowNs: UInt64 = monotonicNowNs()) -> Decision {
        for (peer, settings) in answers.sorted(by: { $0.key < $1.key }) {
            if let refusal = Self.refusal(self.settings, settings, peer: peer, address: peers[peer] ?? "?") { return .refuse(refusal) }
        }
        // A member agrees with itself; a data-only node (every member is a peer) does not count.
        let agreed = (peers.count < memberCount ? 1 : 0) + answers.count
        let settingsAgreed = agreed * 2 > memberCount
        if !settingsAgreed { askPeers() }
        if settingsAgreed && meta.isRegistered { return .open }
        if nowNs - max(lastReportNs, startedNs) >= Self.reportEveryMs * 1_000_000 {
            lastReportNs = nowNs
            logger.notice("waiting before opening the client port", metadata: [
                "settings_agreed_by": "\(agreed) of \(memberCount) meta members", "registered": "\(meta.isRegistered)"])
        }
        return .wait
    }

    /// The one line that refuses a start when `mine` differs from member `peer`'s `theirs`.
    static func refusal(_ mine: ClusterSettings, _ theirs: ClusterSettings, peer: NodeID, address: String) -> String? {
        guard let difference = mine.firstDifference(from: theirs) else { return nil }
        return "\(difference.key) is \(difference.local) on this node but \(difference.peer) on node \(peer) (\(address)), "
            + "a member of the meta group; fixed settings must agree across the cluster"
    }

    private func askPeers() {
        for peer in peers.keys.sorted() where answers[peer] == nil && !asking.contains(peer) {
            asking.insert(peer)
            meta.fetchSettings(of: peer) { [self] result in
                asking.remove(peer)
                if case .success(let settings) = result { answers[peer] = settings }
            }
        }
    }
}
