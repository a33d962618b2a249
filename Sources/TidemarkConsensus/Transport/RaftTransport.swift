import Foundation

/// Carries Raft messages to other nodes (best effort: Raft copes with loss). `RaftConsensus`
/// hands over, per destination, the messages of all groups produced in one round.
public protocol RaftTransport: AnyObject, Sendable {
    func send(to node: UInt64, _ messages: [GroupMessage])
    /// Sends, then tells whether the messages left this node (true) or were dropped (false):
    /// a snapshot's pieces go a few at a time, not all into the transport's queue at once.
    func send(to node: UInt64, _ messages: [GroupMessage], whenWritten: @escaping @Sendable (Bool) -> Void)
}

extension RaftTransport {
    public func send(to node: UInt64, _ messages: [GroupMessage], whenWritten: @escaping @Sendable (Bool) -> Void) {
        send(to: node, messages)
        whenWritten(true)
    }
}
