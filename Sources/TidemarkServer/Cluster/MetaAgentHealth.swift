import Foundation
import Logging
import Synchronization
import TidemarkCluster
import TidemarkCore
import TidemarkIO

/// A node's membership as the meta group records it: registration (again when its address
/// changed), its disk (ReadOnly while full), and, on the leader, the other nodes' links
/// (Unknown after `node_unknown_after_ms` down, Running once back).
extension MetaAgent {
    func registerIfNeeded() {
        guard let client = clientAddress.withLock({ $0 }), !isRegistered else { return }
        guard !registering.exchange(true, ordering: .acquiringAndReleasing) else { return }
        propose(.registerNode(internalAddress: internalAddress, clientAddress: client, cores: cores, requestedID: nodeID)) { [self] result in
            registering.store(false, ordering: .releasing)
            switch result {
            case .success: logger.info("registered with the meta group", metadata: ["node": "\(nodeID)", "client": "\(client)"])
            case .failure(.refused(let error)):
                logger.error("the meta group refused this node's registration", metadata: ["node": "\(nodeID)", "reason": "\(error.message)"])
            case .failure(.unavailable):
                break  // no leader yet: the next tick tries again
            }
        }
    }

    /// A node whose disk is full says so: ReadOnly takes no new regions (and, from the next
    /// issue, no writes routed to it); Running again once the disk has room.
    func reportDisk() {
        guard let health, isRegistered, let known = machine.current.nodes[nodeID] else { return }
        // An episode ends on a write that succeeds, or here: a node no one writes to must come back too.
        health.refresh()
        let full = health.reading.diskFull
        let status: NodeRecord.Status
        switch (known.status, full) {
        case (.running, true): status = .readOnly
        case (.readOnly, false): status = .running
        default: return
        }
        guard !reportingHealth.exchange(true, ordering: .acquiringAndReleasing) else { return }
        propose(.setNodeStatus(nodeID, status)) { [self] result in
            reportingHealth.store(false, ordering: .releasing)
            if case .success = result { logger.notice("this node's status changed", metadata: ["node": "\(nodeID)", "status": "\(status.rawValue)"]) }
        }
    }

    /// The leader marks a node Unknown once it missed heartbeats, or its link has been down,
    /// for `unknownAfterMs`, and Running again once it answers and its link is back.
    func followLinks() {
        guard let transport, !changingStatus.load(ordering: .acquiring) else { return }
        let nowNs = monotonicNowNs()
        for node in machine.current.nodes.values.sorted(by: { $0.id < $1.id }) where node.id != nodeID {
            let silentMs = heartbeats.silentMs(node.id, nowNs: nowNs).flatMap { $0 >= unknownAfterMs ? $0 : nil }
            let downMs = transport.linkDownMs(of: node.id, nowNs: nowNs).map { max($0, silentMs ?? 0) } ?? silentMs
            let status: NodeRecord.Status
            switch (node.status, downMs) {
            case (.running, let down?) where down >= unknownAfterMs, (.readOnly, let down?) where down >= unknownAfterMs: status = .unknown
            case (.unknown, nil): status = .running
            default: continue
            }
            guard !changingStatus.exchange(true, ordering: .acquiringAndReleasing) else { return }
            propose(.setNodeStatus(node.id, status)) { [self] result in
                changingStatus.store(false, ordering: .releasing)
                if case .success = result {
                    logger.notice("node status changed", metadata: ["node": "\(node.id)", "status": "\(status.rawValue)",
                                                                   "link_down_ms": "\(downMs.map { "\($0)" } ?? "-")"])
                }
            }
            return
        }
    }
}
