import Testing
import TidemarkConsensus

/// The Raft paper's Figure 8: a leader must not commit an entry of an older term by counting
/// replicas, or a later leader may overwrite it. Built directly from persisted states.
@Suite struct RaftFigure8Tests {
    private static let voters = RaftMembership(voters: [1, 2, 3, 4, 5])

    private static func entries(_ terms: [UInt64]) -> [RaftEntry] {
        terms.enumerated().map { RaftEntry(index: UInt64($0.offset + 1), term: $0.element) }
    }

    private static func core(_ id: UInt64, term: UInt64, log terms: [UInt64]) -> RaftCore {
        var config = RaftConfig(id: id, seed: id)
        config.messageBytesMax = 1  // one entry per append, so entries 2 and 3 travel apart
        return RaftCore(config: config, membership: voters, hardState: HardState(term: term, vote: 0, commit: 1), entries: entries(terms))
    }

    @Test func anOldTermEntryOnAMajorityIsNotCommittedUntilTheLeadersOwnEntryIs() {
        // (c) of Figure 8: S1 (log 1:1 2:2) restarts in term 3; S5 (log 1:1 2:3) is down,
        // S2 to S4 hold only entry 1.
        var nodes: [UInt64: RaftCore] = [
            1: Self.core(1, term: 3, log: [1, 2]), 2: Self.core(2, term: 3, log: [1]),
            3: Self.core(3, term: 3, log: [1]), 4: Self.core(4, term: 3, log: [1]),
        ]
        /// Delivers until quiet; messages `allow` refuses are lost.
        func settle(_ allow: (RaftMessage) -> Bool) {
            for _ in 0..<200 {
                var sent: [RaftMessage] = []
                for id in nodes.keys.sorted() where nodes[id]!.hasReady {
                    let ready = nodes[id]!.ready()
                    sent += ready.messages
                    nodes[id]!.advance(ready)
                }
                guard !sent.isEmpty else { return }
                for message in sent where nodes[message.to] != nil && allow(message) { nodes[message.to]!.step(message) }
            }
        }
        // S1 wins term 4 with S2 and S3 (its log is newer) and appends its no-op at 3. Entry 2
        // (term 2) reaches S2 and S3; entry 3 reaches nobody (S1 crashes before): an append
        // carrying it is lost unless the follower would refuse it anyway.
        nodes[1]!.campaign()
        settle { message in
            guard message.to != 4 && message.from != 4 else { return false }
            let carriesEntry3 = message.entries.contains { $0.index >= 3 }
            return !carriesEntry3 || nodes[message.to]!.lastIndex < message.index
        }
        #expect(nodes[1]!.role == .leader && nodes[1]!.term == 4)
        #expect(nodes[3]!.lastIndex == 2 && nodes[2]!.lastIndex == 2)
        // Entry 2 is on S1, S2 and S3, a majority, but it is of an older term: committing it
        // now would let S5 (log 1:1 2:3) win with S3 and S4 and overwrite it.
        #expect(nodes[1]!.commitIndex == 1, "an entry of an older term was committed by counting replicas")
        // Once the leader's own entry reaches a quorum (its heartbeats find the gaps), both commit.
        for _ in 0..<3 {
            nodes[1]!.tick()
            settle { _ in true }
        }
        #expect(nodes[1]!.commitIndex == 3)
    }
}
