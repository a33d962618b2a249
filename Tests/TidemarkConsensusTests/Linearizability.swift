/// One client operation on a register, as seen from outside: when it was called, when it
/// returned (`Int.max`: never, so it may take effect at any time after its call or not at
/// all) and what it wrote or read (nil: the register was never written).
struct RegisterOperation: Sendable {
    enum Kind: Sendable { case write, read }

    var key: String
    var kind: Kind
    var value: String?
    var call: Int
    var returned: Int
}

/// A Wing–Gong linearizability checker (the search Porcupine does), for registers,
/// partitioned by key: each key's history must have an order that respects real time
/// (an operation that returned before another was called comes first) in which every read
/// sees the latest write.
enum Linearizability {
    /// The first key whose history has no linearization, or nil when all have one.
    static func violation(in history: [RegisterOperation]) -> String? {
        let byKey = Dictionary(grouping: history, by: \.key)
        for key in byKey.keys.sorted() where !isLinearizable(byKey[key]!) { return key }
        return nil
    }

    static func isLinearizable(_ operations: [RegisterOperation]) -> Bool {
        let ops = operations.sorted { $0.call < $1.call }
        var search = Search(ops: ops)
        return search.run(done: Bitset(count: ops.count), value: nil)
    }

    private struct Bitset: Hashable {
        var words: [UInt64]
        init(count: Int) { words = Array(repeating: 0, count: (count + 63) / 64) }
        func contains(_ index: Int) -> Bool { words[index / 64] & (1 << UInt64(index % 64)) != 0 }
        mutating func insert(_ index: Int) { words[index / 64] |= 1 << UInt64(index % 64) }
    }

    private struct State: Hashable {
        var done: Bitset
        var value: String?
    }

    private struct Search {
        let ops: [RegisterOperation]
        var failed = Set<State>()

        mutating func run(done: Bitset, value: String?) -> Bool {
            let remaining = ops.indices.filter { !done.contains($0) }
            if remaining.isEmpty { return true }
            let state = State(done: done, value: value)
            if failed.contains(state) { return false }
            // Only an operation called before every remaining one returned can go next.
            let firstReturn = remaining.map { ops[$0].returned }.min()!
            for index in remaining where ops[index].call < firstReturn {
                let op = ops[index]
                if op.kind == .read && op.value != value { continue }
                var next = done
                next.insert(index)
                if run(done: next, value: op.kind == .write ? op.value : value) { return true }
            }
            failed.insert(state)
            return false
        }
    }
}
