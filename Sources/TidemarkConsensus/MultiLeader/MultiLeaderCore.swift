/// A message between the replicas of a multi-leader group.
public struct MultiLeaderMessage: Sendable, Equatable {
    public enum Kind: UInt8, Sendable {
        /// `entries` of `source`'s log, the first at `sequence`.
        case replicate
        /// The receiver has applied `source`'s entries before `sequence`.
        case acknowledge
        // Joining (the host's business, not the core's: `MultiLeaderConsensus` does it).
        /// A replica joining the group asks the receiver for an image to start from.
        case imageRequest
        /// One piece of such an image: `source` names the image, `sequence` is the piece's
        /// number; `entries` are the piece and the image's `MultiLeaderImageHeader`.
        case imagePiece
        /// A joining replica asks a member whether it added it (keeps entries for it).
        case joinProbe
        /// The member did: the joining replica asks for its image once every member said so.
        case joinAccepted
    }

    public var kind: Kind
    public var from: UInt64
    public var to: UInt64
    public var source: UInt64
    public var sequence: UInt64
    public var entries: [[UInt8]] = []

    public init(kind: Kind, from: UInt64, to: UInt64, source: UInt64, sequence: UInt64, entries: [[UInt8]] = []) {
        self.kind = kind
        self.from = from
        self.to = to
        self.source = source
        self.sequence = sequence
        self.entries = entries
    }
}

/// What a multi-leader replica keeps on disk.
public struct MultiLeaderDiskState: Sendable, Equatable {
    /// This replica's own log: entries from `firstSequence` on (earlier ones every peer has).
    public var firstSequence: UInt64 = 1
    public var entries: [[UInt8]] = []
    /// Per peer, the first sequence of this replica's log it has not acknowledged.
    public var shipped: [UInt64: UInt64] = [:]
    /// Per source, the next of its sequences to apply here.
    public var applied: [UInt64: UInt64] = [:]
    /// Peers removed from the group: nothing is shipped to them or taken from them.
    public var removed: Set<UInt64> = []

    public init() {}
}

/// An entry to apply: `source`'s write number `sequence`.
public struct MultiLeaderEntry: Sendable, Equatable {
    public var source: UInt64
    public var sequence: UInt64
    public var data: [UInt8]
}

/// What the host must do: persist `state` (if set), send `messages`, apply `apply` in order,
/// then call `advance`.
public struct MultiLeaderReady: Sendable {
    public var state: MultiLeaderDiskState?
    public var messages: [MultiLeaderMessage] = []
    public var apply: [MultiLeaderEntry] = []
}

/// Why a multi-leader write was refused.
public enum MultiLeaderError: Error, Sendable, Equatable {
    /// A peer is too far behind: the log would grow without bound.
    case peerLagging(peer: UInt64, entries: Int)
    /// The node is in the group already, or was removed from it (node IDs are not reused:
    /// entries of its earlier life are in the log).
    case peerRefused(peer: UInt64, why: String)
}

/// One replica of a multi-leader group (IoTDB's IoTConsensus idea) as a pure state machine:
/// a write is applied here and acknowledged at once, then shipped to every peer in order by
/// a dispatcher per peer; receivers apply each source's writes in its order exactly once.
/// Entries stay in the log until every peer has them; writes are refused while a peer lags
/// past `lagEntriesMax`. No clock, thread or I/O inside: `tick()` drives resends.
public struct MultiLeaderCore: Sendable {
    public let id: UInt64
    public private(set) var peers: [UInt64]
    let lagEntriesMax: Int
    let batchEntriesMax: Int
    /// Ticks before unacknowledged entries are sent again.
    let resendTicks: Int
    private var state: MultiLeaderDiskState
    private var dirty = false
    private var messages: [MultiLeaderMessage] = []
    private var toApply: [MultiLeaderEntry] = []
    /// Per peer: the first sequence sent but not acknowledged, and ticks since it was sent.
    private var inFlight: [UInt64: (next: UInt64, sentTicksAgo: Int)] = [:]

    public init(id: UInt64, peers: [UInt64], state: MultiLeaderDiskState = MultiLeaderDiskState(),
                lagEntriesMax: Int = 100_000, batchEntriesMax: Int = 256, resendTicks: Int = 3) {
        precondition(!peers.contains(id), "peers are the other replicas")
        self.id = id
        // Peers added since the configuration was written are in the persisted progress.
        self.peers = Set(peers).union(state.shipped.keys).subtracting(state.removed).subtracting([id]).sorted()
        self.state = state
        self.lagEntriesMax = lagEntriesMax
        self.batchEntriesMax = batchEntriesMax
        self.resendTicks = resendTicks
        for peer in self.peers where self.state.shipped[peer] == nil { self.state.shipped[peer] = self.state.firstSequence }
        self.state.applied[id] = self.state.applied[id] ?? nextSequence
    }

    /// The sequence the next local write gets.
    public var nextSequence: UInt64 { state.firstSequence + UInt64(state.entries.count) }

    /// Entries kept because some peer lacks them.
    public var retainedEntries: Int { state.entries.count }

    /// What the replica would persist now (the host logs its progress from it).
    public var diskState: MultiLeaderDiskState { state }

    /// A local write: applied here (through `ready`) and shipped to every peer.
    public mutating func propose(_ data: [UInt8]) throws(MultiLeaderError) -> UInt64 {
        for peer in peers {
            let lag = Int(nextSequence - state.shipped[peer]!)
            guard lag < lagEntriesMax else { throw .peerLagging(peer: peer, entries: lag) }
        }
        let sequence = nextSequence
        state.entries.append(data)
        state.applied[id] = sequence + 1
        dirty = true
        toApply.append(MultiLeaderEntry(source: id, sequence: sequence, data: data))
        for peer in peers where inFlight[peer] == nil { ship(to: peer) }
        return sequence
    }

    /// Brings `peer` into the group: from now on every own entry this replica still keeps
    /// stays until `peer` has it, and `peer`'s writes are applied here from its first. The new
    /// replica starts from an image of another replica taken after every replica added it:
    /// whatever this one released, that image's replica had acknowledged, so held (each
    /// source's part of an image covers at least what its source released). Persisted with
    /// the next ready.
    public mutating func addPeer(_ peer: UInt64) throws(MultiLeaderError) {
        guard peer != id, !peers.contains(peer) else { throw .peerRefused(peer: peer, why: "it is a replica of the group already") }
        guard !state.removed.contains(peer) else { throw .peerRefused(peer: peer, why: "it was removed from the group, and node IDs are not reused") }
        peers.append(peer)
        peers.sort()
        state.shipped[peer] = state.firstSequence
        dirty = true
        ship(to: peer)
    }

    /// Takes `peer` out of the group: nothing more is shipped to it or applied from it, and
    /// entries kept only for it go. Persisted with the next ready (`state.removed`).
    public mutating func removePeer(_ peer: UInt64) {
        precondition(peer != id, "a replica removes others; its own group is deleted instead")
        guard peers.contains(peer) else { return }
        peers.removeAll { $0 == peer }
        state.shipped[peer] = nil
        state.removed.insert(peer)
        inFlight[peer] = nil
        dirty = true
        releaseEntries()
    }

    public mutating func tick() {
        for peer in peers {
            if var flight = inFlight[peer] {
                flight.sentTicksAgo += 1
                inFlight[peer] = flight
                // No answer: the batch or its acknowledgement was lost; send again from what was acknowledged.
                if flight.sentTicksAgo >= resendTicks {
                    inFlight[peer] = nil
                    ship(to: peer)
                }
            } else if state.shipped[peer]! < nextSequence {
                ship(to: peer)
            }
        }
    }

    public mutating func step(_ message: MultiLeaderMessage) {
        guard message.to == id, message.from != id else { return }
        switch message.kind {
        case .replicate:
            // Only the source ships its own log: apply in its order, each entry once.
            guard message.source == message.from, peers.contains(message.source) else { return }
            let next = state.applied[message.source] ?? 1
            if message.sequence <= next {
                let skip = Int(next - message.sequence)
                for (offset, data) in message.entries.enumerated().dropFirst(skip) {
                    toApply.append(MultiLeaderEntry(source: message.source, sequence: message.sequence + UInt64(offset), data: data))
                }
                if message.sequence + UInt64(message.entries.count) > next {
                    state.applied[message.source] = message.sequence + UInt64(message.entries.count)
                    dirty = true
                }
            }
            // Acknowledge what is applied (a gap makes the source resend from there).
            messages.append(MultiLeaderMessage(kind: .acknowledge, from: id, to: message.from, source: message.source,
                                               sequence: state.applied[message.source] ?? 1))
        case .acknowledge:
            guard message.source == id, let shipped = state.shipped[message.from] else { return }
            let acknowledged = min(message.sequence, nextSequence)
            // An answer that moves nothing (a duplicate, or an echo of a resent batch) ships
            // nothing: each would start another stream of batches. `tick` resends what is lost.
            guard acknowledged > shipped else { return }
            state.shipped[message.from] = acknowledged
            dirty = true
            releaseEntries()
            inFlight[message.from] = nil
            if acknowledged < nextSequence { ship(to: message.from) }
        case .imageRequest, .imagePiece, .joinProbe, .joinAccepted:
            return
        }
    }

    public var hasReady: Bool { dirty || !messages.isEmpty || !toApply.isEmpty }

    public mutating func ready() -> MultiLeaderReady {
        MultiLeaderReady(state: dirty ? state : nil, messages: messages, apply: toApply)
    }

    public mutating func advance(_ ready: MultiLeaderReady) {
        if ready.state != nil { dirty = false }
        messages.removeFirst(min(ready.messages.count, messages.count))
        toApply.removeFirst(min(ready.apply.count, toApply.count))
    }

    /// The host could not persist `ready` (its disk was full) and wrote none of it. Its
    /// messages go, as a network may lose them: acknowledgements must not leave before what
    /// they acknowledge is logged, and batches that went unsent `tick` ships again. Its
    /// entries and state stay: the next `ready()` hands them out again, so the log gets each
    /// once, in order.
    public mutating func abandon(_ ready: MultiLeaderReady) {
        messages.removeFirst(min(ready.messages.count, messages.count))
    }

    /// Sends `peer` the next batch of this replica's log it has not acknowledged.
    private mutating func ship(to peer: UInt64) {
        let from = state.shipped[peer]!
        guard from < nextSequence else { return }
        let offset = Int(from - state.firstSequence)
        let batch = Array(state.entries[offset..<min(state.entries.count, offset + batchEntriesMax)])
        messages.append(MultiLeaderMessage(kind: .replicate, from: id, to: peer, source: id, sequence: from, entries: batch))
        inFlight[peer] = (from, 0)
    }

    /// Drops the entries every peer has acknowledged.
    private mutating func releaseEntries() {
        let everyone = peers.map { state.shipped[$0]! }.min() ?? nextSequence
        guard everyone > state.firstSequence else { return }
        state.entries.removeFirst(Int(everyone - state.firstSequence))
        state.firstSequence = everyone
    }
}
