import ArgumentParser
import Foundation
import TidemarkCore
import TidemarkQuery
import TidemarkStorage
import TidemarkTestSupport

/// Random statements of the dialect, from a grammar with the literals a hostile client would
/// pick (Int64's ends, NaN, huge LIMITs, times past the end of time) and nesting around the
/// parser's bound, run one after another against one small engine: the statement must be
/// answered or refused, never crash the process or run past the input bound.
struct SQLFuzz: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sql", abstract: "Random statements against a small engine.")
    @OptionGroup var options: FuzzOptions
    @Option(help: "Statements per input (one engine per input).") var statements = 40

    func run() throws {
        try FuzzLoop(name: "sql", options: options).run { seed, describe in try withScratchDirectory("sql") { directory in
            var engineOptions = EngineOptions()
            engineOptions.memtableBytesMax = 64 << 10
            engineOptions.partitionInterval = 1 << 40
            let engine = try StorageEngine(directory: directory, options: engineOptions)
            defer { engine.close() }
            let executor = StatementExecutor(engine: engine, rowsMax: 2_000, memoryBytesMax: 8 << 20)
            var grammar = SQLGrammar(random: Seeded(state: seed))
            for _ in 0..<statements {
                let sql = grammar.statement()
                describe(sql)
                guard let statement = try? Parser.parse(sql, nowMs: 1_700_000_000_000, nestingDepthMax: 256) else { continue }
                switch try? executor.execute(statement) {
                case .write(let rows)?: _ = try? engine.write(rows.flatMap(\.points))
                default: break
                }
            }
        } }
    }
}

/// The statement grammar, with a generator's bias toward edges.
struct SQLGrammar {
    var random: Seeded

    private static let devices = ["root.fz.d0", "root.fz.d1", "root.fz.g.d2", "root.fz.`odd.dev`", "root.fz.`d0`", "root.fy.d0"]
    private static let prefixes = devices + ["root.fz.*", "root.fz.**", "root.**", "root.fz.g.*", "root.*.d0"]
    private static let measurements = ["s0", "s1", "s2", "s3", "`s.x`", "`s0`"]
    private static let times = ["0", "1", "-1", "2", "100", "9223372036854775807", "-9223372036854775807", "-9223372036854775808",
                                "99999999999999999999", "9223372036854775806", "now()", "now() - 1h", "now() + 9999999999y",
                                "2017-11-01T00:00:00", "1e3", "1.5", "-0"]
    private static let numbers = ["0", "-0", "1", "-1", "1.5", "1e308", "-1e308", "1e999", "9223372036854775807", "-9223372036854775808",
                                  "18446744073709551616", "2147483648", "-2147483649", "3", "0.1", "NaN", "1e-320"]
    private static let aggregates = ["count", "sum", "avg", "min_value", "max_value", "first_value", "last_value", "min_time", "max_time",
                                     "top_k", "cast"]
    private static let counts = ["0", "1", "2", "3", "10", "1000", "2147483647", "2147483648", "9223372036854775807", "99999999999999999999"]
    private static let durations = ["1ms", "3ms", "1s", "1h", "1d", "1mo", "1y", "9999999999y", "0ms", "4611686018427387904ms",
                                    "9223372036854775807ms", "1ns", "1us"]

    mutating func statement() -> String {
        switch random.int(0...99) {
        case 0..<30: return insert()
        case 30..<70: return select()
        case 70..<76: return "select last \(measurementList()) from \(random.pick(Self.prefixes))\(random.chance(50) ? " where " + condition(depth: 2) : "")"
        case 76..<80: return "delete from \(random.pick(Self.devices)).\(random.pick(Self.measurements + ["*"])) where time \(random.pick(["<", "<=", ">", ">=", "="])) \(random.pick(Self.times))"
        case 80..<83: return "delete timeseries \(random.pick(Self.devices)).\(random.pick(Self.measurements + ["*"]))"
        case 83..<87: return "create timeseries \(random.pick(Self.devices)).\(random.pick(Self.measurements)) with datatype=\(random.pick(["INT32", "INT64", "FLOAT", "DOUBLE", "BOOLEAN", "TEXT"]))"
        case 87..<90: return "flush"
        case 90..<95: return random.pick(["show timeseries", "count timeseries", "show devices", "show databases"]) + " " + random.pick(Self.prefixes)
            + (random.chance(50) ? " limit \(random.pick(Self.counts)) offset \(random.pick(Self.counts))" : "")
        case 95..<97: return "create database \(random.pick(["root.fz", "root.fy", "root.fz.g", "root." + String(repeating: "x", count: random.int(100...300))]))"
        case 97: return "drop database \(random.pick(["root.fz", "root.fy"]))"
        default: return deep()
        }
    }

    private mutating func insert() -> String {
        let device = random.pick(Self.devices)
        let columns = (0..<random.int(1...3)).map { _ in random.pick(Self.measurements) }
        let rows = (0..<random.int(1...6)).map { _ in
            "(" + ([random.pick(Self.times + [String(random.int(0...50))])] + columns.map { _ in value() }).joined(separator: ", ") + ")"
        }
        return "insert into \(device)(time, \(columns.joined(separator: ", "))) values \(rows.joined(separator: ", "))"
    }

    private mutating func value() -> String {
        switch random.int(0...9) {
        case 0: return random.pick(["true", "false"])
        case 1: return "'" + random.pick(["", "a", "it''s", String(repeating: "z", count: 300)]) + "'"
        case 2: return "null"
        case 3...5: return String(random.int(-5...50))
        default: return random.pick(Self.numbers)
        }
    }

    private mutating func measurementList() -> String {
        (0..<random.int(1...3)).map { _ in random.pick(Self.measurements + ["*", "**"]) }.joined(separator: ", ")
    }

    private mutating func select() -> String {
        let aggregate = random.chance(40)
        var items: [String] = []
        for _ in 0..<random.int(1...3) {
            items.append(aggregate ? "\(random.pick(Self.aggregates))(\(random.pick(Self.measurements + ["*"])))" : expression(depth: 3))
        }
        var sql = "select \(items.joined(separator: ", ")) from \(random.pick(Self.prefixes))"
        if random.chance(20) { sql += ", \(random.pick(Self.prefixes))" }
        if random.chance(60) { sql += " where " + condition(depth: 3) }
        if aggregate && random.chance(50) {
            sql += " group by ([\(random.pick(Self.times)), \(random.pick(Self.times))), \(random.pick(Self.durations))"
            if random.chance(30) { sql += ", \(random.pick(Self.durations))" }
            sql += ")"
            if random.chance(20) { sql += ", level = \(random.pick(["0", "1", "2", "9", "2147483648"]))" }
        } else if aggregate && random.chance(20) {
            sql += " group by level = \(random.pick(["0", "1", "2", "99"]))"
        }
        if random.chance(15) { sql += " fill(\(random.pick(["previous", "linear", "1", "'x'", "true", "1e999"])))" }
        if random.chance(20) { sql += " order by time \(random.pick(["asc", "desc"]))" }
        for clause in ["limit", "offset", "slimit", "soffset"] where random.chance(25) { sql += " \(clause) \(random.pick(Self.counts))" }
        if random.chance(10) { sql += " align by device" }
        return sql
    }

    private mutating func expression(depth: Int) -> String {
        guard depth > 0, random.chance(45) else {
            return random.chance(70) ? random.pick(Self.measurements + ["*", "time"]) : random.pick(Self.numbers)
        }
        switch random.int(0...4) {
        case 0: return "(\(expression(depth: depth - 1)))"
        case 1: return "-\(expression(depth: depth - 1))"
        case 2: return "\(random.pick(Self.aggregates))(\(expression(depth: depth - 1)))"
        default: return "\(expression(depth: depth - 1)) \(random.pick(["+", "-", "*", "/", "%"])) \(expression(depth: depth - 1))"
        }
    }

    private mutating func condition(depth: Int) -> String {
        guard depth > 0, random.chance(50) else {
            if random.chance(50) { return "time \(random.pick(["<", "<=", ">", ">=", "=", "!="])) \(random.pick(Self.times))" }
            return "\(expression(depth: 1)) \(random.pick(["<", "<=", ">", ">=", "=", "!=", "<>"])) \(random.chance(20) ? "'a'" : expression(depth: 1))"
        }
        switch random.int(0...3) {
        case 0: return "not \(condition(depth: depth - 1))"
        case 1: return "(\(condition(depth: depth - 1)))"
        default: return "\(condition(depth: depth - 1)) \(random.pick(["and", "or"])) \(condition(depth: depth - 1))"
        }
    }

    /// Nesting just under, at and over the bound, in each form that nests.
    private mutating func deep() -> String {
        let n = random.pick([100, 250, 255, 256, 257, 300, 5_000])
        switch random.int(0...5) {
        case 0: return "select " + String(repeating: "(", count: n) + "s0" + String(repeating: ")", count: n) + " from root.fz.d0"
        case 1: return "select s0" + String(repeating: " + s0", count: n) + " from root.fz.d0"
        case 2: return "select s0 from root.fz.d0 where " + String(repeating: "not ", count: n) + "s0 > 1"
        case 3: return "select " + String(repeating: "count(", count: n) + "s0" + String(repeating: ")", count: n) + " from root.fz.d0"
        case 4: return "select s0 from root.fz.d0 where " + String(repeating: "(", count: n) + "s0 > 1" + String(repeating: ")", count: n)
        default: return "select s0 from root.fz.d0 where s0 > 0" + String(repeating: " and s1 < 9", count: n)
        }
    }
}
