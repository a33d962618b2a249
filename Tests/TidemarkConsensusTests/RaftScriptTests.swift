import Foundation
import Testing
import TidemarkConsensus

/// etcd-style interaction scripts (`testdata/*.txt`): commands, a `----` line, the output
/// they must print, a blank line. Messages are delivered at once and in order unless a
/// partition drops them; time moves only by `tick`.
///
/// Commands: `nodes N` · `campaign ID` · `tick ID… COUNT` (`tick all COUNT`) · `run ID… COUNT`
/// (ticks, delivering after each) · `stabilize` ·
/// `propose ID TEXT` · `partition IDS | IDS` · `heal` · `transfer FROM TO` · `compact ID INDEX` ·
/// `add-learner ID` · `promote ID` · `remove ID` (at the leader) · `restart ID` · `status` ·
/// `nodes N quiesce` (idle groups sleep) · `peer-down ID PEER` · `read ID [lease]`.
private final class ScriptCluster {
    struct Replica {
        var core: RaftCore
        var hardState = HardState()
        var snapshot: RaftSnapshot?
        var entries: [RaftEntry] = []
        var applied: [RaftEntry] = []
        var bootstrap: RaftMembership
    }

    var replicas: [UInt64: Replica] = [:]
    var queue: [RaftMessage] = []
    var side: [UInt64: Int] = [:]
    var output: [String] = []
    var quiesce = false
    var nextReadID: UInt64 = 1

    func core(_ id: UInt64, bootstrap: RaftMembership, restarts: UInt64 = 0, from replica: Replica? = nil) -> RaftCore {
        var config = RaftConfig(id: id, seed: id &* 7919 &+ restarts)
        config.quiesce = quiesce
        return RaftCore(config: config, membership: bootstrap, hardState: replica?.hardState ?? HardState(),
                        snapshot: replica?.snapshot, entries: replica?.entries ?? [])
    }

    var leader: UInt64? { replicas.keys.sorted().first { replicas[$0]!.core.role == .leader } }

    func handleReadies() -> Bool {
        var any = false
        for id in replicas.keys.sorted() {
            var passes = 0
            while replicas[id]!.core.hasReady {
                passes += 1
                guard passes <= RaftSimulation.readyPassesMax else {
                    Issue.record("replica \(id) still has work after \(passes - 1) readies")
                    break
                }
                any = true
                var replica = replicas[id]!
                let ready = replica.core.ready()
                if let hardState = ready.hardState { replica.hardState = hardState }
                if let snapshot = ready.snapshot {
                    replica.snapshot = snapshot
                    replica.entries = []
                    replica.applied = []
                }
                if let first = ready.entries.first {
                    replica.entries.removeAll { $0.index >= first.index }
                    replica.entries += ready.entries
                }
                queue += ready.messages
                for state in ready.readStates { output.append("\(id): read \(state.requestID) at \(state.index)") }
                replica.applied += ready.committed
                replica.core.advance(ready)
                replicas[id] = replica
            }
        }
        return any
    }

    func stabilize() {
        for _ in 0..<10_000 {
            let readied = handleReadies()
            guard !queue.isEmpty || readied else { return }
            let messages = queue
            queue = []
            for message in messages where side[message.from] == side[message.to] {
                replicas[message.to]?.core.step(message)
            }
        }
        Issue.record("stabilize did not settle")
    }

    func status() {
        for id in replicas.keys.sorted() {
            let core = replicas[id]!.core
            let role = core.role
            let data = replicas[id]!.applied.filter { $0.kind == .normal && !$0.data.isEmpty }.map { String(decoding: $0.data, as: UTF8.self) }
            var line = "\(id): \(role) term \(core.term) lead \(core.leader) commit \(core.commitIndex) applied [\(data.joined(separator: " "))]"
            line += " voters \(core.membership.voters.sorted())"
            if !core.membership.learners.isEmpty { line += " learners \(core.membership.learners.sorted())" }
            if let snapshot = replicas[id]!.snapshot { line += " snapshot \(snapshot.index)" }
            if core.isQuiesced { line += " asleep" }
            output.append(line)
        }
    }

    func run(_ command: String) throws {
        let words = command.split(separator: " ").map(String.init)
        func id(_ at: Int) -> UInt64 { UInt64(words[at])! }
        switch words[0] {
        case "nodes":
            let count = UInt64(words[1])!
            quiesce = words.count > 2 && words[2] == "quiesce"
            let membership = RaftMembership(voters: Set(1...count))
            for node in 1...count {
                replicas[node] = Replica(core: core(node, bootstrap: membership), bootstrap: membership)
                side[node] = 0
            }
        case "campaign": replicas[id(1)]!.core.campaign()
        case "tick":
            let count = Int(words.last!)!
            let targets = words[1] == "all" ? replicas.keys.sorted() : words[1..<(words.count - 1)].map { UInt64($0)! }
            for _ in 0..<count { for target in targets { replicas[target]!.core.tick() } }
        case "run":  // like tick, but messages are delivered after every tick
            let count = Int(words.last!)!
            let targets = words[1] == "all" ? replicas.keys.sorted() : words[1..<(words.count - 1)].map { UInt64($0)! }
            for _ in 0..<count {
                for target in targets { replicas[target]!.core.tick() }
                stabilize()
            }
        case "stabilize": stabilize()
        case "propose":
            do { _ = try replicas[id(1)]!.core.propose(Array(words[2].utf8)) } catch { output.append("propose \(words[1]): \(error)") }
        case "partition":
            let bar = words.firstIndex(of: "|")!
            for word in words[1..<bar] { side[UInt64(word)!] = 1 }
            for word in words[(bar + 1)...] { side[UInt64(word)!] = 2 }
        case "heal": for key in side.keys { side[key] = 0 }
        case "transfer":
            do { try replicas[id(1)]!.core.transferLeadership(to: id(2)) } catch { output.append("transfer: \(error)") }
        case "compact":
            var replica = replicas[id(1)]!
            let index = UInt64(words[2])!
            let term = replica.entries.first { $0.index == index }!.term
            let snapshot = RaftSnapshot(index: index, term: term, membership: replica.core.membership, data: [])
            replica.core.compact(snapshot)
            replica.snapshot = snapshot
            replica.entries.removeAll { $0.index <= index }
            replicas[id(1)] = replica
        case "add-learner", "promote", "remove":
            let kind: RaftConfChange.Kind = words[0] == "add-learner" ? .addLearner : words[0] == "promote" ? .addVoter : .remove
            guard let leader else { output.append("\(words[0]): no leader"); return }
            let change = RaftConfChange(kind, node: id(1))
            do {
                _ = try replicas[leader]!.core.proposeConfChange(change)
                if kind == .addLearner {
                    let bootstrap = replicas[leader]!.core.membership.applying(change)
                    replicas[id(1)] = Replica(core: core(id(1), bootstrap: bootstrap), bootstrap: bootstrap)
                    side[id(1)] = 0
                }
            } catch {
                output.append("\(words[0]) \(words[1]): \(error)")
            }
        case "restart":
            var replica = replicas[id(1)]!
            replica.core = core(id(1), bootstrap: replica.bootstrap, restarts: 1, from: replica)
            replica.applied = []
            replicas[id(1)] = replica
        case "status": status()
        case "peer-down": replicas[id(1)]!.core.peerDown(id(2))
        case "read":
            do {
                try replicas[id(1)]!.core.readIndex(requestID: nextReadID, lease: words.count > 2 && words[2] == "lease")
                nextReadID += 1
            } catch {
                output.append("read \(words[1]): \(error)")
            }
        default: throw CocoaError(.featureUnsupported, userInfo: [NSLocalizedDescriptionKey: "unknown command \(command)"])
        }
    }
}

@Suite struct RaftScriptTests {
    static let scripts = ["campaign", "prevote", "partitioned_leader", "snapshot", "confchange", "quiesce"]

    @Test(arguments: scripts)
    func script(_ name: String) throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("testdata/\(name).txt")
        let lines = try String(contentsOf: url, encoding: .utf8).components(separatedBy: "\n")
        let cluster = ScriptCluster()
        var index = 0
        while index < lines.count {
            let line = lines[index]
            index += 1
            if line.hasPrefix("#") || line.isEmpty { continue }
            if line == "----" {
                var expected: [String] = []
                while index < lines.count && !lines[index].isEmpty {
                    expected.append(lines[index])
                    index += 1
                }
                #expect(cluster.output == expected, "\(name).txt, block ending at line \(index)")
                cluster.output = []
                continue
            }
            try cluster.run(line)
        }
    }
}
