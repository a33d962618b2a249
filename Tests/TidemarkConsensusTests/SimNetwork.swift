/// The network of the simulators: every message may be dropped, duplicated or delayed
/// (so reordered), and only crosses within a partition side.
struct SimNetwork<Message> {
    private struct InFlight {
        var message: Message
        var from: UInt64
        var to: UInt64
        var deliverAt: Int
    }

    var dropPercent: Int
    var duplicatePercent: Int
    var delayRoundsMax: Int
    /// Partition side of each node.
    private var side: [UInt64: Int] = [:]
    private var inFlight: [InFlight] = []

    init(dropPercent: Int, duplicatePercent: Int, delayRoundsMax: Int) {
        self.dropPercent = dropPercent
        self.duplicatePercent = duplicatePercent
        self.delayRoundsMax = delayRoundsMax
    }

    mutating func send(_ message: Message, from: UInt64, to: UInt64, round: Int, random: inout SimRandom) {
        if random.chance(dropPercent) { return }
        let copies = random.chance(duplicatePercent) ? 2 : 1
        for _ in 0..<copies { inFlight.append(InFlight(message: message, from: from, to: to, deliverAt: round + random.below(delayRoundsMax + 1))) }
    }

    /// Messages due by `round` whose sender and receiver are on one side, in sending order.
    mutating func due(round: Int) -> [Message] {
        var due: [Message] = []
        inFlight.removeAll { item in
            guard item.deliverAt <= round else { return false }
            if side[item.from, default: 0] == side[item.to, default: 0] { due.append(item.message) }
            return true
        }
        return due
    }

    /// Splits `nodes` into two random sides.
    mutating func partition(_ nodes: [UInt64], random: inout SimRandom) {
        for node in nodes { side[node] = random.below(2) }
    }

    mutating func heal() { side = [:] }

    /// Whether `a` and `b` are on one side of the partition.
    func connected(_ a: UInt64, _ b: UInt64) -> Bool { side[a, default: 0] == side[b, default: 0] }

    /// Faults stop: nothing is dropped or duplicated any more, partitions heal.
    mutating func calm() {
        heal()
        dropPercent = 0
        duplicatePercent = 0
    }
}
