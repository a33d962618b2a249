import Foundation
import Logging
import Synchronization
import TidemarkCluster
import TidemarkCore
import TidemarkIO

/// How nodes outside the meta group keep their copy of its state (DESIGN.md section 3,
/// partition cache and route map): they pull it from a member when newer, the leader pushes
/// it to them once the route map changed, and every node learns the internal addresses of the
/// registered nodes from it.
extension MetaAgent {
    /// Hands the transport the internal addresses of the registered nodes, so links to nodes
    /// outside `meta_peers` come up (and their hellos are accepted).
    func learnAddresses() {
        guard let transport else { return }
        let state = machine.current
        guard learnedRouteVersion.exchange(state.routeVersion, ordering: .relaxed) != state.routeVersion else { return }
        var addresses: [UInt64: ListenAddress] = [:]
        for node in state.nodes.values where node.id != nodeID {
            if case .success(let address) = ListenAddress.parse(node.internalAddress) { addresses[node.id] = address }
        }
        transport.learnAddresses(addresses)
    }

    /// A data-only node's copy of the meta state: pulled from a member when newer.
    func pullState() {
        guard !isMember, let transport, !pulling.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let member = leaderID ?? nextMember.load(ordering: .relaxed)
        var writer = ByteWriter()
        writer.write(varint: machine.appliedIndex)
        transport.call(member, method: Self.stateMethod, body: writer.bytes, timeoutMs: Self.callTimeoutMs) { [self] result in
            defer { pulling.store(false, ordering: .releasing) }
            guard case .success(let bytes) = result else {
                // The next member is asked at the next tick.
                nextMember.store(member % NodeID(memberCount) + 1, ordering: .relaxed)
                mirroredLeader.store(0, ordering: .relaxed)
                pullDueNs.store(0, ordering: .relaxed)
                return
            }
            installState(bytes, from: member)
        }
    }

    /// A member's answer or push, `[leader][state image, when newer]`: the state is installed
    /// only when newer than this node's copy.
    func installState(_ bytes: [UInt8], from member: NodeID) {
        var reader = ByteReader(bytes)
        guard let leader = try? reader.readVarint(), leader <= NodeID(memberCount) else { return }
        mirroredLeader.store(leader, ordering: .relaxed)
        guard !reader.isAtEnd else { return }
        do {
            try machine.install(image: Array(bytes[reader.offset...]))
        } catch {
            logger.error("the meta state from a member does not install", metadata: ["member": "\(member)", "error": "\(error)"])
        }
    }

    /// On the leader: once the route map changed, the state goes to every data-only node
    /// that is up (best effort: each also pulls now and then).
    func pushRouteMap() {
        guard let transport else { return }
        let state = machine.current
        let version = state.routeVersion
        guard pushedRouteVersion.load(ordering: .relaxed) != version else { return }
        pushedRouteVersion.store(version, ordering: .relaxed)
        let targets = state.nodes.values.filter { $0.id > NodeID(memberCount) && $0.status != .unknown }.map(\.id)
        guard !targets.isEmpty else { return }
        var writer = ByteWriter()
        writer.write(varint: nodeID)
        writer.write(bytes: machine.image().bytes)
        for node in targets.sorted() {
            transport.call(node, method: Self.pushMethod, body: writer.bytes, timeoutMs: Self.callTimeoutMs) { _ in }
        }
    }
}
