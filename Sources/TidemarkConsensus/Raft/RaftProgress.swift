/// What a leader knows of one follower's log (etcd's Progress).
struct RaftProgress: Sendable {
    enum State: Sendable {
        /// One append at a time until the follower's match is found.
        case probe
        /// Appends stream ahead, up to the in-flight limit.
        case replicate
        /// A snapshot is on its way; appends wait for it.
        case snapshot(index: UInt64)
    }

    var match: UInt64 = 0
    var next: UInt64
    var state = State.probe
    /// Probe: an append was sent and no answer came yet (reset by a heartbeat response).
    var probeSent = false
    /// Replicate: last indexes of the appends in flight, oldest first.
    var inflight: [UInt64] = []
    /// Snapshot: heartbeat answers since it was sent (it may be lost, or still installing).
    var heartbeatsSinceSnapshot = 0
    /// Heard from since the last quorum check (CheckQuorum).
    var recentActive = false
    var isLearner: Bool

    init(next: UInt64, isLearner: Bool) {
        self.next = next
        self.isLearner = isLearner
    }

    /// Whether the leader should hold appends back.
    func isPaused(inflightMax: Int) -> Bool {
        switch state {
        case .probe: probeSent
        case .replicate: inflight.count >= inflightMax
        case .snapshot: true
        }
    }

    /// An append answered with `index` matched: true if it moved anything.
    mutating func acknowledge(_ index: UInt64) -> Bool {
        guard index > match else {
            return false
        }
        match = index
        next = max(next, index + 1)
        probeSent = false
        inflight.removeAll { $0 <= index }
        return true
    }

    /// A rejected append: back `next` up (to just after the follower's last index at most).
    /// Returns false for a stale rejection.
    mutating func backUp(rejected: UInt64, followerLast: UInt64) -> Bool {
        if case .replicate = state {
            guard rejected > match else { return false }
            next = match + 1
            becomeProbe()
            return true
        }
        guard next - 1 == rejected else { return false }  // an answer to an older probe
        next = max(min(rejected, followerLast + 1), 1)
        next = max(next, match + 1)
        probeSent = false
        return true
    }

    mutating func becomeProbe() {
        if case .snapshot(let index) = state {
            next = max(match + 1, index + 1)
        } else {
            next = match + 1
        }
        state = .probe
        probeSent = false
        inflight = []
    }

    mutating func becomeReplicate() {
        state = .replicate
        next = match + 1
        probeSent = false
        inflight = []
    }

    mutating func becomeSnapshot(_ index: UInt64) {
        state = .snapshot(index: index)
        heartbeatsSinceSnapshot = 0
        probeSent = false
        inflight = []
    }

    /// Records an append sent whose last entry is `last`.
    mutating func sent(last: UInt64, entries: Int) {
        switch state {
        case .replicate:
            if entries > 0 {
                next = last + 1
                inflight.append(last)
            }
        case .probe:
            probeSent = true
        case .snapshot:
            preconditionFailure("no appends while a snapshot is in flight")
        }
    }
}
