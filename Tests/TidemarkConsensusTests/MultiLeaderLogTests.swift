import Testing
import TidemarkConsensus

@Suite struct MultiLeaderLogTests {
    /// Entries and membership are synced before anything ships; an acknowledgement that only
    /// moves a dispatcher's progress is logged and rides on the next sync.
    @Test func onlyProgressFromAcknowledgementsMayWaitForTheNextSync() throws {
        var core = MultiLeaderCore(id: 1, peers: [2, 3])
        var persisted: [UInt64: UInt64] = [:]
        func nextAppend() -> MultiLeaderLog.Append {
            let ready = core.ready()
            let append = MultiLeaderLog.append(for: ready, persistedShipped: &persisted)
            core.advance(ready)
            return append
        }

        _ = try core.propose(Array("a=1".utf8))
        let write = nextAppend()
        #expect(write.records.count == 2)  // the entry, and the first progress (peers 2 and 3)
        #expect(write.syncFirst)

        core.step(MultiLeaderMessage(kind: .acknowledge, from: 2, to: 1, source: 1, sequence: 2))
        let acknowledged = nextAppend()
        #expect(acknowledged.records == [MultiLeaderRecord(shipped: [2: 2, 3: 1], applied: [1: 2], removed: [])])
        #expect(!acknowledged.syncFirst)
        #expect(persisted == [2: 2, 3: 1])

        try core.addPeer(4)
        let added = nextAppend()
        #expect(added.records.count == 1)
        #expect(added.syncFirst)

        core.removePeer(3)
        let removed = nextAppend()
        #expect(removed.records.count == 1)
        #expect(removed.syncFirst)

        // A peer's entries arriving here are applied, so synced before the acknowledgement goes.
        core.step(MultiLeaderMessage(kind: .replicate, from: 2, to: 1, source: 2, sequence: 1, entries: [Array("b=1".utf8)]))
        let received = nextAppend()
        #expect(received.records.first == MultiLeaderRecord(source: 2, sequence: 1, data: Array("b=1".utf8)))
        #expect(received.syncFirst)
    }
}
