/// What one query may hold in memory (`query.memory_bytes_max`): result rows and scan
/// buffers are charged as they are taken; past the bound the query fails with code 708
/// instead of growing the node.
final class MemoryBudget {
    let bytesMax: Int
    private(set) var bytes = 0

    init(bytesMax: Int) {
        precondition(bytesMax > 0)
        self.bytesMax = bytesMax
    }

    func charge(_ count: Int, for what: @autoclosure () -> String) throws(ExecutionError) {
        precondition(count >= 0)
        bytes += count
        guard bytes <= bytesMax else {
            throw ExecutionError(code: 708, message: "query needs more than \(bytesMax) bytes of memory (query.memory_bytes_max) for \(what()); "
                                 + "narrow the time range, select fewer series or add a LIMIT")
        }
    }

    func release(_ count: Int) {
        precondition(count >= 0 && count <= bytes)
        bytes -= count
    }

    /// Bytes a result row takes: its timestamp and its cells.
    static func rowBytes(_ cells: [ResultValue]) -> Int {
        cells.reduce(8) { total, cell in
            if case .text(let text) = cell { return total + 16 + text.utf8.count }
            return total + 16
        }
    }
}
