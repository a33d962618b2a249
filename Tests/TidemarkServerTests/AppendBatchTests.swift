import Synchronization
import Testing
import TidemarkCore
import TidemarkConsensus
@testable import TidemarkServer

@Suite struct AppendBatchTests {
    @Test func peerMessagesReachConsensusBeforeATaskThatCameAfterThem() {
        let group = GroupID(kind: .data, number: 0)
        func message(_ from: UInt64, _ kind: RaftMessage.Kind) -> GroupMessage {
            GroupMessage(group: group, message: RaftMessage(kind: kind, from: from, to: 2, term: 3))
        }
        let events = Mutex<[String]>([])
        let write = WriteJob(rows: RowBatch(), units: [], decodeErrors: []) { _ in }
        // The leader's last heartbeat puts the group to sleep; then the transport says the leader is gone.
        let batch: [AppendWork] = [
            .raftMessages([message(1, .append)]), .write(write), .raftMessages([message(1, .quiesce)]),
            .consensus(StageTask { events.withLock { $0.append("peer 1 down") } }),
            .raftMessages([message(3, .heartbeat)]), .raftMessages([message(3, .heartbeatResponse)]), .write(write),
        ]
        AppendWork.handle(batch, receive: { messages in
            events.withLock { $0.append("messages " + messages.map { "\($0.message.from):\($0.message.kind)" }.joined(separator: ",")) }
        }, propose: { jobs in events.withLock { $0.append("\(jobs.count) writes") } })
        #expect(events.withLock { $0 } == [
            "messages 1:append,1:quiesce", "peer 1 down", "messages 3:heartbeat,3:heartbeatResponse", "2 writes",
        ])
    }
}
