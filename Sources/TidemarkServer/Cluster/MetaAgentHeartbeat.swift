import Foundation
import Synchronization
import TidemarkCluster
import TidemarkConsensus
import TidemarkCore
import TidemarkIO

/// What the meta leader heard in its heartbeats (DESIGN.md section 3, membership): per node,
/// when it last answered and the regions it reported. Soft state, rebuilt by a new leader
/// within one interval; what lasts (a group's leader) goes through the meta log.
final class HeartbeatBook: Sendable {
    struct Heard: Sendable, Equatable {
        /// When the node last answered (monotonic ns), or nil when it never has since this
        /// node started asking at `askedSinceNs`.
        var answeredNs: UInt64?
        var askedSinceNs: UInt64
        var regions: [RegionReport]
    }
    private let heard = Mutex<[NodeID: Heard]>([:])

    /// A heartbeat goes to `node` (the first one starts its silence).
    func asked(_ node: NodeID, nowNs: UInt64) {
        heard.withLock { heard in
            if heard[node] == nil { heard[node] = Heard(answeredNs: nil, askedSinceNs: nowNs, regions: []) }
        }
    }

    func answered(_ node: NodeID, regions: [RegionReport], nowNs: UInt64) {
        heard.withLock { $0[node] = Heard(answeredNs: nowNs, askedSinceNs: $0[node]?.askedSinceNs ?? nowNs, regions: regions) }
    }

    /// How long `node` has not answered (nil: never asked).
    func silentMs(_ node: NodeID, nowNs: UInt64) -> UInt64? {
        heard.withLock { $0[node] }.map { heard in
            let since = heard.answeredNs ?? heard.askedSinceNs
            return nowNs >= since ? (nowNs - since) / 1_000_000 : 0
        }
    }

    /// Every node's last reported regions.
    var regions: [NodeID: [RegionReport]] { heard.withLock { $0.mapValues(\.regions) } }

    /// Whether a leader report of `term` for `group` is current: at least the highest term
    /// heard for it, which it becomes.
    func takeLeaderTerm(_ term: UInt64, of group: GroupID) -> Bool {
        leaderTerms.withLock { terms in
            guard term >= terms[group, default: 0] else { return false }
            terms[group] = term
            return true
        }
    }
    private let leaderTerms = Mutex<[GroupID: UInt64]>([:])

    /// Forgets everything (this node stopped leading).
    func reset() {
        heard.withLock { $0 = [:] }
        leaderTerms.withLock { $0 = [:] }
    }
}

/// Heartbeats from the meta leader to every node, once per `heartbeatIntervalMs`, on the
/// link each pair already has for Raft (one call per node pair, however many groups they
/// share). The answer lists the node's regions with their roles and sizes; a reported leader
/// the meta state does not know yet becomes the group's leader hint there (the route map).
extension MetaAgent {
    static let heartbeatMethod: UInt16 = 5
    /// A node asking the meta leader for the regions its heartbeats heard (SHOW REGIONS).
    static let reportsMethod: UInt16 = 6
    static let heartbeatIntervalMs: UInt64 = 1000

    /// This node's regions, as a heartbeat answer lists them.
    var localReports: [RegionReport] { regionReporter.withLock { $0 }?() ?? [] }

    /// On the leader, once per interval: asks every registered node (itself directly).
    func sendHeartbeats(nowNs: UInt64 = monotonicNowNs()) {
        guard nowNs >= lastHeartbeatNs.load(ordering: .relaxed) + Self.heartbeatIntervalMs * 1_000_000 else { return }
        lastHeartbeatNs.store(nowNs, ordering: .relaxed)
        let state = machine.current
        heartbeats.answered(nodeID, regions: localReports, nowNs: nowNs)
        adoptLeaders(heartbeats.regions[nodeID] ?? [], of: nodeID, in: state)
        guard let transport else { return }
        // [leader][meta log index applied]: a node whose copy is older pulls at once.
        var writer = ByteWriter()
        writer.write(varint: nodeID)
        writer.write(varint: machine.appliedIndex)
        for node in state.nodes.keys.sorted() where node != nodeID {
            heartbeats.asked(node, nowNs: nowNs)
            transport.call(node, method: Self.heartbeatMethod, body: writer.bytes, timeoutMs: Self.heartbeatIntervalMs * 2) { [self] result in
                let bytes: [UInt8]
                switch result {
                case .success(let answer): bytes = answer
                // It answered, only not this (a node of an earlier version): alive, nothing reported.
                case .failure(.failed): return heartbeats.answered(node, regions: [], nowNs: monotonicNowNs())
                case .failure: return
                }
                var reader = ByteReader(bytes)
                guard let reports = try? RegionReport.decode(&reader), reader.isAtEnd else {
                    return logger.warning("a heartbeat answer does not decode", metadata: ["node": "\(node)"])
                }
                heartbeats.answered(node, regions: reports, nowNs: monotonicNowNs())
                adoptLeaders(reports, of: node, in: machine.current)
            }
        }
    }

    /// A heartbeat's version, on a node outside the meta group: a meta state newer than this
    /// node's copy (its table, route map, users) makes the copy stale, and it is pulled now
    /// rather than at the next periodic pull (DESIGN.md section 3: a message with a newer
    /// version invalidates).
    func heardVersion(_ body: [UInt8]) {
        guard !isMember else { return }
        var reader = ByteReader(body)
        guard (try? reader.readVarint()) != nil, let index = try? reader.readVarint(), index > machine.appliedIndex else { return }
        stalePulls.add(1, ordering: .relaxed)
        pullState()
    }

    /// A node that reports leading a group it is a replica of, where the meta state names
    /// another leader, becomes the group's leader hint (one change per group in flight); a
    /// report of an older term than the last taken (a deposed leader that has not heard yet)
    /// is not.
    func adoptLeaders(_ reports: [RegionReport], of node: NodeID, in state: MetaState) {
        for report in reports where report.isLeader {
            guard heartbeats.takeLeaderTerm(report.term, of: report.group) else { continue }
            guard let group = state.groups[report.group], group.replicas.contains(node), group.leaderHint != node else { continue }
            guard reportingLeaders.withLock({ $0.insert(report.group).inserted }) else { continue }
            propose(.reportLeader(report.group, node)) { [self] _ in reportingLeaders.withLock { _ = $0.remove(report.group) } }
        }
    }

    /// The regions the meta leader's heartbeats heard, per node: its own book on the leader,
    /// else asked of the leader (nil when it cannot be reached within `timeoutMs`).
    func heardRegions(timeoutMs: UInt64 = 2000) -> [NodeID: [RegionReport]]? {
        let leader = leaderID
        if leader == nodeID { return heartbeats.regions }
        guard let leader, let transport else { return nil }
        let answer = Mutex<[NodeID: [RegionReport]]?>(nil)
        let done = DispatchSemaphore(value: 0)
        transport.call(leader, method: Self.reportsMethod, body: [], timeoutMs: timeoutMs) { result in
            if case .success(let bytes) = result { answer.withLock { $0 = Self.decodeHeard(bytes) } }
            done.signal()
        }
        // The call answers within its timeout, with a failure at worst.
        done.wait()
        return answer.withLock { $0 }
    }

    static func encodeHeard(_ heard: [NodeID: [RegionReport]]) -> [UInt8] {
        var writer = ByteWriter()
        writer.write(varint: UInt64(heard.count))
        for (node, reports) in heard.sorted(by: { $0.key < $1.key }) {
            writer.write(varint: node)
            writer.write(bytes: RegionReport.encode(reports))
        }
        return writer.bytes
    }

    static func decodeHeard(_ bytes: [UInt8]) -> [NodeID: [RegionReport]]? {
        var reader = ByteReader(bytes)
        guard let count = try? reader.readCount(max: min(1 << 16, reader.remaining / 2), what: "nodes") else { return nil }
        var heard: [NodeID: [RegionReport]] = [:]
        for _ in 0..<count {
            guard let node = try? reader.readVarint(), let reports = try? RegionReport.decode(&reader) else { return nil }
            heard[node] = reports
        }
        return reader.isAtEnd ? heard : nil
    }
}
