import Testing
import TidemarkCore
import TidemarkStorage
import TidemarkTestSupport
@testable import TidemarkQuery

/// Statements built to crash or hang a node: every one must be refused with an error that
/// says where, or run to an answer, within the parser's nesting bound.
@Suite struct HostileStatementTests {
    private func parseError(_ sql: String) -> SQLError? {
        do { _ = try Parser.parse(sql, nowMs: 0); return nil } catch { return error }
    }

    private func repeated(_ text: String, _ count: Int) -> String { String(repeating: text, count: count) }

    @Test func deepNestingIsRefusedWhereItGoesTooDeep() throws {
        let deep = [
            "select " + repeated("(", 30_000) + "1" + repeated(")", 30_000) + " from root.x",
            "select v" + repeated("+v", 30_000) + " from root.x",
            "select v" + repeated("*v", 30_000) + " from root.x",
            "select " + repeated("- ", 30_000) + "1 from root.x",
            "select v from root.x where " + repeated("not ", 100_000) + "v > 1",
            "select " + repeated("count(", 50_000) + "v" + repeated(")", 50_000) + " from root.x",
            "select v from root.x where " + repeated("(", 40_000) + "v > 1" + repeated(")", 40_000),
            "select v from root.x where v > 1" + repeated(" and v > 1", 30_000),
            "select v from root.x where v > 1" + repeated(" or v > 1", 30_000),
        ]
        for sql in deep {
            let error = parseError(sql)
            #expect(error?.message.contains("nests deeper than 256 levels") == true, "\(sql.prefix(40))…: \(String(describing: error))")
            #expect(error?.line == 1 && (error?.column ?? 0) > 1)
        }
    }

    @Test func nestingWithinTheBoundParses() throws {
        let depth = 100
        let nested = "select " + repeated("(", depth) + "v + 1" + repeated(")", depth) + " from root.x where "
            + repeated("(", depth) + "v > 1" + repeated(")", depth) + " and not not v < 3"
        guard case .select(let select) = try Parser.parse(nested, nowMs: 0) else { Issue.record("not a select"); return }
        #expect(select.items == [.binary("+", .path(["v"]), .number(1, text: "1"))])
        // The bound is the configured one: the same statement is refused under a smaller one.
        #expect(throws: SQLError.self) { try Parser.parse(nested, nowMs: 0, nestingDepthMax: 50) }
        // Parentheses that only group arithmetic inside a condition stay arithmetic.
        guard case .select(let grouped) = try Parser.parse("select v from root.x where (v + 1) * 2 > 3 and (v > 0)", nowMs: 0) else { return }
        #expect(grouped.condition == .and(.compare(.binary("*", .binary("+", .path(["v"]), .number(1, text: "1")), .number(2, text: "2")), ">",
                                                   .number(3, text: "3")),
                                          .compare(.path(["v"]), ">", .number(0, text: "0"))))
    }

    @Test func numbersAtTheirEndsNeitherTrapNorHang() throws {
        let executor = StatementExecutor(engine: try StorageEngine(directory: try temporaryDirectory("hostile")), rowsMax: 100)
        guard case .write(let inserted) = try executor.execute(try Parser.parse(
            "insert into root.a.b(time, v) values (-9223372036854775807, 1), (0, 2), (9223372036854775807, 3)", nowMs: 0)) else {
            Issue.record("not an insert"); return
        }
        try (executor.engine as! StorageEngine).write(inserted.flatMap(\.points))
        func rows(_ sql: String) throws -> QueryResult {
            guard case .rows(let result) = try executor.execute(try Parser.parse(sql, nowMs: 0)) else { throw ExecutionError(code: 0, message: "no rows") }
            return result
        }
        let huge = "9223372036854775807"
        #expect(try rows("select 1 from root.a.b limit \(huge) offset 1").timestamps == [])
        #expect(try rows("select v from root.a.b limit \(huge) offset 1").timestamps == [0, Int64.max])
        #expect(try rows("select v from root.a.b order by time desc limit \(huge) offset \(huge)").timestamps == [])
        #expect(try rows("select v from root.a.b order by time desc limit 1 offset 1").timestamps == [0])
        #expect(try rows("select v from root.a.b slimit \(huge) soffset \(huge)").expressions == [])
        #expect(try rows("select v from root.a.b where time >= \(huge)").timestamps == [Int64.max])
        #expect(try rows("select count(v) from root.a.b where time > \(huge)").values == [[.integer(0)]])
        #expect(try rows("select max_time(v) from root.a.b").values == [[.integer(Int64.max)]])
        #expect(try rows("select last v from root.a.b").timestamps == [Int64.max])
        let windows = try rows("select count(v) from root.a.b group by ([0, \(huge)), 4611686018427387904ms) limit \(huge) offset 1")
        #expect(windows.timestamps == [4_611_686_018_427_387_904])
        #expect(try rows("select count(v) from root.a.b group by ([0, 10), 3ms) limit \(huge) offset \(huge)").timestamps == [])
        #expect(try rows("select count(v) from root.a.b align by device limit \(huge) offset \(huge)").values.first == [])
        #expect(try rows("show timeseries root.** limit \(huge) offset \(huge)").values.first == [])
        // Durations past Int64 are refused, not wrapped.
        #expect(throws: SQLError.self) { try Parser.parse("select v from root.a.b where time > now() - 9999999999999999y", nowMs: 0) }
    }
}
