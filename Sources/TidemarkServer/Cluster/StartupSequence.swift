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
    private let agreement: SettingsAgreement
    private let memberCount: Int
    private let logger: Logger
    private let startedNs = monotonicNowNs()
    private var lastReportNs: UInt64 = 0
    static let reportEveryMs: UInt64 = 5000

    init(meta: MetaAgent, settings: ClusterSettings, peers: [NodeID: String], memberCount: Int, logger: Logger) {
        self.meta = meta
        // A member agrees with itself; a data-only node (every member is a peer) does not count.
        agreement = SettingsAgreement(settings: settings, members: peers, memberCount: memberCount, selfAgrees: peers.count < memberCount) {
            [meta] peer, completion in meta.fetchSettings(of: peer, completion: completion)
        }
        self.memberCount = memberCount
        self.logger = logger
    }

    func advance(nowNs: UInt64 = monotonicNowNs()) -> Decision {
        let settingsAgreed: Bool
        switch agreement.step() {
        case .refuse(let reason): return .refuse(reason)
        case .wait: settingsAgreed = false
        case .agreed: settingsAgreed = true
        }
        if settingsAgreed && meta.isRegistered { return .open }
        if nowNs - max(lastReportNs, startedNs) >= Self.reportEveryMs * 1_000_000 {
            lastReportNs = nowNs
            logger.notice("waiting before opening the client port", metadata: [
                "settings_agreed_by": "\(agreement.agreed) of \(memberCount) meta members", "registered": "\(meta.isRegistered)"])
        }
        return .wait
    }

}

/// Whether this node's fixed settings agree with more than half of the meta group's members
/// (the first step of the seed start-up order), stepped on the loop: asks each member that
/// has not answered, refuses at the first that differs. Used by a starting node
/// (`StartupSequence`) and a joining one (`NodeJoin`). Loop thread only.
final class SettingsAgreement: @unchecked Sendable {
    enum Step: Equatable {
        case wait
        /// A member's settings differ: why, in one line.
        case refuse(String)
        case agreed
    }

    typealias Fetch = (NodeID, @escaping @Sendable (Result<ClusterSettings, PeerCallError>) -> Void) -> Void

    private let settings: ClusterSettings
    /// The members to ask, with their internal addresses (for the refusal's line).
    private let members: [NodeID: String]
    private let memberCount: Int
    private let selfAgrees: Bool
    private let fetch: Fetch
    private var answers: [NodeID: ClusterSettings] = [:]
    private var asking: Set<NodeID> = []

    init(settings: ClusterSettings, members: [NodeID: String], memberCount: Int, selfAgrees: Bool, fetch: @escaping Fetch) {
        self.settings = settings
        self.members = members
        self.memberCount = memberCount
        self.selfAgrees = selfAgrees
        self.fetch = fetch
    }

    /// Members that agree so far (this node among them when it is one).
    var agreed: Int { (selfAgrees ? 1 : 0) + answers.count }

    func step() -> Step {
        for (peer, theirs) in answers.sorted(by: { $0.key < $1.key }) {
            if let refusal = Self.refusal(settings, theirs, peer: peer, address: members[peer] ?? "?") { return .refuse(refusal) }
        }
        if agreed * 2 > memberCount { return .agreed }
        for peer in members.keys.sorted() where answers[peer] == nil && !asking.contains(peer) {
            asking.insert(peer)
            fetch(peer) { [self] result in
                asking.remove(peer)
                if case .success(let theirs) = result { answers[peer] = theirs }
            }
        }
        return .wait
    }

    /// The one line that refuses a start when `mine` differs from member `peer`'s `theirs`.
    static func refusal(_ mine: ClusterSettings, _ theirs: ClusterSettings, peer: NodeID, address: String) -> String? {
        guard let difference = mine.firstDifference(from: theirs) else { return nil }
        return "\(difference.key) is \(difference.local) on this node but \(difference.peer) on node \(peer) (\(address)), "
            + "a member of the meta group; fixed settings must agree across the cluster"
    }
}
