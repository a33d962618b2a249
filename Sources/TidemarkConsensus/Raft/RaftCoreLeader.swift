/// The leader's side of a Raft replica: answers to appends and heartbeats, commit, and
/// what it sends each follower.
extension RaftCore {
    mutating func stepLeader(_ message: RaftMessage) {
        guard var peer = progress[message.from] else { return }
        peer.recentActive = true
        switch message.kind {
        case .appendResponse:
            if message.reject {
                if peer.backUp(rejected: message.index, followerLast: message.rejectHint) {
                    progress[message.from] = peer
                    sendAppend(to: message.from)
                } else {
                    progress[message.from] = peer
                }
                return
            }
            let wasPaused = peer.isPaused(inflightMax: config.inflightMax)
            guard peer.acknowledge(message.index) else {
                progress[message.from] = peer
                return
            }
            switch peer.state {
            case .probe: peer.becomeReplicate()
            case .snapshot(let index) where peer.match >= index: peer.becomeProbe()
            default: break
            }
            progress[message.from] = peer
            if maybeCommit() {
                broadcastAppend()
            } else if wasPaused {
                sendAppend(to: message.from)
            }
            while sendAppend(to: message.from, evenIfEmpty: false) {}
            if message.from == leadTransferee && progress[message.from]!.match == log.lastIndex {
                send(RaftMessage(kind: .timeoutNow, from: id, to: message.from, term: term))
            }
        case .heartbeatResponse:
            peer.probeSent = false
            switch peer.state {
            case .snapshot:
                // The snapshot may be lost: probe again, but only after a while. A follower
                // answers heartbeats while it installs, and every resend is a whole image.
                peer.heartbeatsSinceSnapshot += 1
                if peer.heartbeatsSinceSnapshot >= config.snapshotRetryHeartbeats { peer.becomeProbe() }
            case .replicate where peer.inflight.count >= config.inflightMax:
                peer.inflight.removeFirst()  // appends may be lost: let one more out, a gap makes the follower say so
            default: break
            }
            progress[message.from] = peer
            if peer.match < log.lastIndex { sendAppend(to: message.from) }
            if message.context != 0 { acknowledgeRead(message.context, from: message.from) }
        default:
            progress[message.from] = peer
        }
    }

    /// Commits the highest index a quorum of voters has, if it is of the current term.
    mutating func maybeCommit() -> Bool {
        let matched = membership.voters.map { $0 == id ? log.stable : progress[$0]?.match ?? 0 }.sorted(by: >)
        let candidate = matched[membership.quorum - 1]
        guard candidate > log.committed, log.term(at: candidate) == term else { return false }
        let before = log.committed
        log.commit(to: candidate)
        let released = log.bytes(from: before + 1, through: candidate)
        uncommittedBytes = max(0, uncommittedBytes - released)
        return true
    }

    func quorumRecentlyActive() -> Bool {
        let active = membership.voters.filter { $0 == id || progress[$0]?.recentActive == true }.count
        return active >= membership.quorum
    }

    mutating func broadcastAppend() {
        for peer in progress.keys.sorted() { sendAppend(to: peer) }
    }

    mutating func broadcastHeartbeat(context: UInt64, kind: RaftMessage.Kind = .heartbeat) {
        for peer in progress.keys.sorted() {
            var heartbeat = RaftMessage(kind: kind, from: id, to: peer, term: term)
            heartbeat.commit = min(progress[peer]!.match, log.committed)
            heartbeat.context = context
            send(heartbeat)
        }
    }

    /// Sends the next append (or the snapshot) to `peer`; returns whether it sent anything.
    @discardableResult
    mutating func sendAppend(to peerID: UInt64, evenIfEmpty: Bool = true) -> Bool {
        guard var peer = progress[peerID], !peer.isPaused(inflightMax: config.inflightMax) else { return false }
        let previous = peer.next - 1
        guard peer.next > log.snapshotIndex, let previousTerm = log.term(at: previous) else {
            // The entries it needs are compacted: send the snapshot.
            guard let snapshot = latestSnapshot else { return false }
            var message = RaftMessage(kind: .snapshot, from: id, to: peerID, term: term)
            message.snapshot = snapshot
            peer.becomeSnapshot(snapshot.index)
            progress[peerID] = peer
            send(message)
            return true
        }
        let entries = log.slice(from: peer.next, through: log.lastIndex, bytesMax: config.messageBytesMax)
        if entries.isEmpty && !evenIfEmpty { return false }
        var message = RaftMessage(kind: .append, from: id, to: peerID, term: term)
        message.index = previous
        message.logTerm = previousTerm
        message.entries = entries
        message.commit = log.committed
        peer.sent(last: entries.last?.index ?? previous, entries: entries.count)
        progress[peerID] = peer
        send(message)
        return true
    }

    private mutating func acknowledgeRead(_ requestID: UInt64, from peer: UInt64) {
        guard let at = pendingReads.firstIndex(where: { $0.requestID == requestID }) else { return }
        if membership.voters.contains(peer) { pendingReads[at].acks.insert(peer) }
        guard pendingReads[at].acks.count >= membership.quorum else { return }
        // Confirming this read confirms every read queued before it too.
        for read in pendingReads[...at] { readStates.append(ReadState(requestID: read.requestID, index: read.index)) }
        pendingReads.removeFirst(at + 1)
    }
}
