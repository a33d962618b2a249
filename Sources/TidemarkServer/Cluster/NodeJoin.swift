import Foundation
import Logging
import Synchronization
import TidemarkCluster
import TidemarkConfig
import TidemarkCore
import TidemarkIO
import TidemarkNet

/// How a data-only node (its `internal.listen` not in `meta_peers`) gets its node ID, before
/// anything else of it starts (DESIGN.md section 3, start-up): from `<data_dir>/node_id` once
/// it has one; the first time, by asking the meta group. It connects to the members under a
/// random provisional ID (`PeerIdentity.isProvisional`), checks that its fixed settings agree
/// with more than half of them, and registers; the ID the meta group gives it is written to
/// the file before the node goes on, so a restart comes back as the same node.
public enum NodeJoin {
    static let fileName = "node_id"

    /// Why a join did not give the node an ID.
    public struct Failure: Error, CustomStringConvertible {
        /// The fixed settings differ from the cluster's: a config mistake (exit status 2).
        public var isConfigMistake: Bool
        public var description: String
    }

    /// The node's ID: kept from an earlier join, or asked for now (waiting at most `timeoutMs`
    /// for the meta group).
    public static func nodeID(config: NodeConfig, logger: Logger, timeoutMs: UInt64 = 60_000) throws -> UInt64 {
        precondition(!config.isMetaMember && !config.metaPeers.isEmpty, "only a data-only node joins")
        let path = config.dataDir + "/" + fileName
        if let bytes = try FileIO.readFile(path) {
            guard let text = String(bytes: bytes, encoding: .utf8), let id = UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines)),
                  id > 0, !PeerIdentity.isProvisional(id) else {
                throw CorruptDataError("\(path) does not hold a node ID (a positive integer); it was damaged or written by hand")
            }
            return id
        }
        guard let secret = config.clusterSecret else { throw Failure(isConfigMistake: true, description: "cluster_secret is required with meta_peers") }
        let id = try ask(config: config, secret: secret, logger: logger, timeoutMs: timeoutMs)
        try FileIO.makeDirectory(config.dataDir)
        try FileIO.writeFileAtomically(Array("\(id)\n".utf8), to: path, directory: config.dataDir)
        logger.notice("joined the cluster", metadata: ["node": "\(id)", "file": "\(path)"])
        return id
    }

    /// Runs a loop on this thread until the meta group gave an ID, refused, or `timeoutMs` passed.
    private static func ask(config: NodeConfig, secret: String, logger: Logger, timeoutMs: UInt64) throws -> UInt64 {
        let loop = try EventLoop()
        let members = Dictionary(uniqueKeysWithValues: config.metaPeers.enumerated().map { (NodeID($0.offset + 1), $0.element) })
        let transport = PeerTransport(loop: loop, nodeID: PeerIdentity.randomProvisionalID(), peers: members, clusterSecret: secret,
                                      clusterName: config.clusterName, logger: logger, deliver: { _ in })
        let agreement = SettingsAgreement(settings: MetaAgent.settings(of: config), members: members.mapValues { "\($0)" },
                                          memberCount: members.count, selfAgrees: false) { peer, completion in
            MetaAgent.fetchSettings(of: peer, over: transport, completion: completion)
        }
        let join = Attempt(agreement: agreement, memberCount: members.count, transport: transport,
                           command: .registerNode(internalAddress: "\(config.internalListen)", clientAddress: "\(config.http.listen)",
                                                  cores: ProcessInfo.processInfo.activeProcessorCount, requestedID: 0))
        let deadlineNs = monotonicNowNs() + timeoutMs * 1_000_000
        var timer: LoopTimer?
        // Listening on an ephemeral loopback port: a joining node takes no connections, it only dials.
        _ = try transport.start(listen: ListenAddress(host: "127.0.0.1", port: 0))
        timer = LoopTimer(loop: loop, delayMs: 0, repeatMs: 200) {
            if join.step() != nil || monotonicNowNs() >= deadlineNs {
                timer?.cancel()
                transport.stop()
                loop.close()
            }
        }
        loop.run()
        switch join.step() {
        case .success(let id)?: return id
        case .failure(let failure)?: throw failure
        case nil:
            throw Failure(isConfigMistake: false,
                          description: "no meta group member at \(config.metaPeers.map { "\($0)" }.joined(separator: ", ")) gave this node an ID within \(timeoutMs) ms")
        }
    }

    /// One join, stepped on the loop: settings from more than half of the members, then a
    /// registration proposed through any member (one that does not lead passes it on).
    private final class Attempt: @unchecked Sendable {
        let agreement: SettingsAgreement
        let memberCount: Int
        let transport: PeerTransport
        let command: MetaCommand
        var registering = false
        var nextMember: NodeID = 1
        var outcome: Result<UInt64, Failure>?

        init(agreement: SettingsAgreement, memberCount: Int, transport: PeerTransport, command: MetaCommand) {
            self.agreement = agreement
            self.memberCount = memberCount
            self.transport = transport
            self.command = command
        }

        func step() -> Result<UInt64, Failure>? {
            if let outcome { return outcome }
            switch agreement.step() {
            case .refuse(let reason):
                outcome = .failure(Failure(isConfigMistake: true, description: reason))
                return outcome
            case .wait: return nil
            case .agreed: break
            }
            guard !registering else { return nil }
            registering = true
            let member = nextMember
            nextMember = member % NodeID(memberCount) + 1
            transport.call(member, method: MetaAgent.proposeMethod, body: command.encoded(), timeoutMs: MetaAgent.callTimeoutMs) { [self] result in
                registering = false
                guard case .success(let bytes) = result else { return }  // the next step asks the next member
                switch MetaAgent.decodeAnswer(bytes).0 {
                case .success(.node(let id)): outcome = .success(id)
                case .failure(.refused(let error)):
                    outcome = .failure(Failure(isConfigMistake: false, description: "the meta group refused this node: \(error.message)"))
                default: break  // no leader yet: asked again
                }
            }
            return nil
        }
    }
}
