import Testing

private func write(_ key: String, _ value: String, _ call: Int, _ returned: Int = .max) -> RegisterOperation {
    RegisterOperation(key: key, kind: .write, value: value, call: call, returned: returned)
}

private func read(_ key: String, _ value: String?, _ call: Int, _ returned: Int) -> RegisterOperation {
    RegisterOperation(key: key, kind: .read, value: value, call: call, returned: returned)
}

@Suite struct LinearizabilityTests {
    @Test func concurrentOperationsMayTakeEitherOrder() {
        // The read overlaps both writes: seeing either value, or none before the first, is fine.
        for seen in [nil, "1", "2"] as [String?] {
            #expect(Linearizability.isLinearizable([write("k", "1", 1, 4), write("k", "2", 2, 5), read("k", seen, 3, 6)]))
        }
        // A write that never returned may have happened…
        #expect(Linearizability.isLinearizable([write("k", "1", 1, 2), write("k", "2", 3), read("k", "2", 4, 5)]))
        // …or not.
        #expect(Linearizability.isLinearizable([write("k", "1", 1, 2), write("k", "2", 3), read("k", "1", 4, 5)]))
    }

    @Test func staleAndInventedReadsAreCaught() {
        // Write 2 returned before the read was called: reading 1 is stale.
        #expect(!Linearizability.isLinearizable([write("k", "1", 1, 2), write("k", "2", 3, 4), read("k", "1", 5, 6)]))
        // A value nobody wrote.
        #expect(!Linearizability.isLinearizable([write("k", "1", 1, 2), read("k", "9", 3, 4)]))
        // Two reads in sequence cannot see the writes in opposite orders.
        #expect(!Linearizability.isLinearizable([write("k", "1", 1, 10), write("k", "2", 2, 10),
                                                 read("k", "2", 3, 4), read("k", "1", 5, 6), read("k", "2", 7, 8)]))
        // Keys are checked on their own: the violation names its key.
        #expect(Linearizability.violation(in: [write("a", "1", 1, 2), read("a", "1", 3, 4),
                                               write("b", "1", 1, 2), read("b", nil, 3, 4)]) == "b")
    }
}
