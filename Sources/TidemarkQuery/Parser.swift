import Foundation
import TidemarkCore

/// A recursive-descent parser for the tree-model dialect; every error names the line and
/// column of the token where it stopped and what it expected there.
public struct Parser {
    private let tokens: [Token]
    private var position = 0
    private let nowMs: Int64
    /// How deep the tree being built is at the cursor, and how deep it may get.
    private var depth = 0
    private let depthMax: Int
    /// Per token: whether the `(` there opens a condition rather than arithmetic.
    private let opensCondition: [Bool]

    /// Parses one statement (a trailing `;` is allowed).
    public static func parse(_ sql: String, nowMs: Int64 = Int64(Date().timeIntervalSince1970 * 1000),
                             statementBytesMax: Int = QueryLimits().statementBytesMax,
                             nestingDepthMax: Int = QueryLimits().nestingDepthMax) throws(SQLError) -> Statement {
        var parser = Parser(tokens: try Lexer.tokens(sql, statementBytesMax: statementBytesMax), nowMs: nowMs, depthMax: nestingDepthMax)
        let statement = try parser.statement()
        if parser.peekSymbol(";") { parser.position += 1 }
        guard case .end = parser.current.kind else { throw parser.expected("end of statement") }
        return statement
    }

    private init(tokens: [Token], nowMs: Int64, depthMax: Int) {
        precondition(depthMax > 0)
        self.tokens = tokens
        self.nowMs = nowMs
        self.depthMax = depthMax
        opensCondition = Self.conditionParentheses(tokens)
    }

    /// Enters one level of nesting, refusing past `depthMax` where the token at the cursor is.
    private mutating func deeper(_ levels: Int = 1) throws(SQLError) {
        depth += levels
        guard depth <= depthMax else {
            throw SQLError(line: current.line, column: current.column,
                           message: "statement nests deeper than \(depthMax) levels (parentheses, NOT, calls, signs or chained operators)")
        }
    }

    // MARK: - Statements

    private mutating func statement() throws(SQLError) -> Statement {
        if accept("LIST") {
            guard accept("USER") else { throw expected("USER") }
            return .listUsers
        }
        if accept("ALTER") {
            guard accept("USER") else { throw expected("USER") }
            let name = try word("a user name")
            guard accept("SET"), accept("PASSWORD") else { throw expected("SET PASSWORD") }
            return .alterPassword(user: name, password: try stringLiteral("a password in quotes"))
        }
        if accept("GRANT") || accept("REVOKE") {
            let isGrant = { if case .identifier(let w) = tokens[position - 1].kind { return w.uppercased() == "GRANT" }; return false }()
            var privileges: [String] = []
            repeat { privileges.append(try word("a privilege").uppercased()) } while acceptSymbol(",")
            guard accept("ON") else { throw expected("ON") }
            let patterns = try pathList()
            guard accept(isGrant ? "TO" : "FROM"), accept("USER") else { throw expected(isGrant ? "TO USER" : "FROM USER") }
            let user = try word("a user name")
            return isGrant ? .grant(user: user, privileges: privileges, patterns: patterns) : .revoke(user: user, privileges: privileges, patterns: patterns)
        }
        if accept("CREATE") {
            if accept("USER") {
                let name = try word("a user name")
                return .createUser(name: name, password: try stringLiteral("a password in quotes"))
            }
            if accept("DATABASE") || accept("STORAGE") && accept("GROUP") { return try createDatabase() }
            if accept("TIMESERIES") { return try createTimeseries() }
            throw expected("DATABASE or TIMESERIES")
        }
        if accept("DROP") || accept("DELETE") {
            if accept("USER") { return .dropUser(try word("a user name")) }
            if accept("DATABASE") || accept("STORAGE") && accept("GROUP") { return .dropDatabase(try pathList()) }
            if accept("TIMESERIES") { return .deleteTimeseries(try pathList()) }
            if accept("FROM") { return try deleteData() }
            throw expected("DATABASE, TIMESERIES or FROM")
        }
        if accept("SHOW") {
            if accept("DATABASES") || accept("STORAGE") && accept("GROUP") {
                if accept("DETAILS") { return .showDatabasesDetails }
                return .showDatabases(try optionalPath())
            }
            if accept("TIMESERIES") {
                let pattern = try optionalPath()
                let (limit, offset) = try limitOffset()
                return .showTimeseries(pattern, limit: limit, offset: offset)
            }
            if accept("DEVICES") { return .showDevices(try optionalPath()) }
            if accept("CLUSTER") { return .showCluster(details: accept("DETAILS")) }
            if accept("DATANODES") { return .showDataNodes }
            if accept("REGIONS") { return .showRegions }
            throw expected("DATABASES, TIMESERIES, DEVICES, CLUSTER, DATANODES or REGIONS")
        }
        if accept("REMOVE") {
            guard accept("DATANODE") else { throw expected("DATANODE") }
            let token = current
            guard case let id = try integer(), id > 0 else {
                throw SQLError(line: token.line, column: token.column, message: "a node ID is a positive integer")
            }
            return .removeDataNode(UInt64(id))
        }
        if accept("COUNT") {
            guard accept("TIMESERIES") else { throw expected("TIMESERIES") }
            return .countTimeseries(try optionalPath())
        }
        if accept("FLUSH") {
            if optionalPathStarts { _ = try pathList() }
            _ = accept("TRUE") || accept("FALSE")
            return .flush
        }
        if accept("INSERT") { return try insert() }
        if accept("SELECT") { return .select(try select()) }
        throw expected("a statement (CREATE, DROP, DELETE, SHOW, COUNT, INSERT, SELECT, FLUSH, GRANT, REVOKE, LIST or ALTER)")
    }

    /// `CREATE DATABASE path [WITH key=value, …]`, IoTDB's keys; a factor or count is 1…1000.
    private mutating func createDatabase() throws(SQLError) -> Statement {
        let name = try path()
        var options = DatabaseOptions()
        guard accept("WITH") else { return .createDatabase(name, options) }
        repeat {
            let keyToken = current
            let key = try word("SCHEMA_REPLICATION_FACTOR, DATA_REPLICATION_FACTOR, SCHEMA_REGION_GROUP_NUM or DATA_REGION_GROUP_NUM").uppercased()
            guard acceptSymbol("=") else { throw expected("=") }
            let valueToken = current
            guard case let value = try integer(), (1...1000).contains(value) else {
                throw SQLError(line: valueToken.line, column: valueToken.column, message: "\(key) is a whole number from 1 to 1000")
            }
            switch key {
            case "SCHEMA_REPLICATION_FACTOR": options.schemaReplicationFactor = value
            case "DATA_REPLICATION_FACTOR": options.dataReplicationFactor = value
            case "SCHEMA_REGION_GROUP_NUM": options.schemaRegionGroups = value
            case "DATA_REGION_GROUP_NUM": options.dataRegionGroups = value
            case "TIME_PARTITION_INTERVAL":
                throw SQLError(line: keyToken.line, column: keyToken.column,
                               message: "TIME_PARTITION_INTERVAL is fixed for the whole cluster (time_partition_interval_ms)")
            default: throw SQLError(line: keyToken.line, column: keyToken.column, message: "unknown database attribute \(key)")
            }
        } while acceptSymbol(",")
        return .createDatabase(name, options)
    }

    private mutating func createTimeseries() throws(SQLError) -> Statement {
        let seriesPath = try path()
        _ = accept("WITH")
        var type: DataType?, encoding: String?, compressor: String?
        repeat {
            let key = try word("DATATYPE, ENCODING or COMPRESSOR").uppercased()
            guard acceptSymbol("=") else { throw expected("=") }
            let valueToken = current
            let value = try word("a value").uppercased()
            switch key {
            case "DATATYPE":
                guard let parsed = DataType(name: value) else {
                    throw SQLError(line: valueToken.line, column: valueToken.column, message: "unknown data type \(value)")
                }
                type = parsed
            case "ENCODING": encoding = value
            case "COMPRESSOR", "COMPRESSION": compressor = value
            default: throw SQLError(line: valueToken.line, column: valueToken.column, message: "unknown attribute \(key)")
            }
        } while acceptSymbol(",")
        guard let type else { throw expected("DATATYPE=…") }
        return .createTimeseries(path: seriesPath, type: type, encoding: encoding, compressor: compressor)
    }

    private mutating func insert() throws(SQLError) -> Statement {
        guard accept("INTO") else { throw expected("INTO") }
        let device = try path()
        guard acceptSymbol("(") else { throw expected("(") }
        let first = try word("TIMESTAMP or TIME")
        guard ["TIMESTAMP", "TIME"].contains(first.uppercased()) else { throw expected("TIMESTAMP or TIME as the first column") }
        var measurements: [String] = []
        while acceptSymbol(",") { measurements.append(try level()) }
        guard acceptSymbol(")") else { throw expected(", or )") }
        _ = accept("ALIGNED")
        guard accept("VALUES") else { throw expected("VALUES") }
        var rows: [(Int64, [Expression])] = []
        repeat {
            guard acceptSymbol("(") else { throw expected("(") }
            let timestamp = try timeValue()
            var values: [Expression] = []
            while acceptSymbol(",") { values.append(try unary()) }
            guard acceptSymbol(")") else { throw expected(", or )") }
            guard values.count == measurements.count else {
                throw expected("\(measurements.count) values after the time, got \(values.count)")
            }
            rows.append((timestamp, values))
        } while acceptSymbol(",")
        return .insert(device: device, measurements: measurements, rows: rows)
    }

    private mutating func deleteData() throws(SQLError) -> Statement {
        let paths = try pathList()
        var range = Int64.min...Int64.max
        if accept("WHERE") {
            let condition = try orCondition()
            guard let timeRange = TimeRange.of(condition), timeRange.isOnlyTime, let timeRange = timeRange.range else {
                throw expected("a WHERE clause on time only (e.g. time <= 2017-11-01T16:26:00) that matches some time")
            }
            range = timeRange
        }
        return .deleteData(paths: paths, range: range)
    }

    private mutating func select() throws(SQLError) -> SelectStatement {
        var statement = SelectStatement()
        statement.last = accept("LAST")
        repeat {
            statement.items.append(try expression())
        } while acceptSymbol(",")
        guard accept("FROM") else { throw expected("FROM") }
        statement.from = [try pathLevels()]
        while acceptSymbol(",") { statement.from.append(try pathLevels()) }
        if accept("WHERE") { statement.condition = try orCondition() }
        if accept("GROUP") {
            guard accept("BY") else { throw expected("BY") }
            if acceptSymbol("(") {
                guard acceptSymbol("[") || acceptSymbol("(") else { throw expected("[ to open the time range") }
                let start = try timeValue()
                guard acceptSymbol(",") else { throw expected(",") }
                let end = try timeValue()
                guard acceptSymbol(")") || acceptSymbol("]") else { throw expected(") to close the time range") }
                guard acceptSymbol(",") else { throw expected(", and an interval") }
                let interval = try durationMs()
                var step = interval
                if acceptSymbol(",") { step = try durationMs() }
                guard acceptSymbol(")") else { throw expected(")") }
                guard start < end, interval > 0, step > 0 else { throw expected("a non-empty range and positive interval and step") }
                statement.groupByTime = TimeWindows(start: start, end: end, intervalMs: interval, stepMs: step)
                // IoTDB: GROUP BY ([start, end), interval), LEVEL = n
                if acceptSymbol(",") {
                    guard accept("LEVEL"), acceptSymbol("=") else { throw expected("LEVEL = n") }
                    statement.groupByLevel = try integer()
                }
            } else {
                guard accept("LEVEL"), acceptSymbol("=") else { throw expected("( or LEVEL = n") }
                statement.groupByLevel = try integer()
            }
        }
        if accept("FILL") {
            guard acceptSymbol("(") else { throw expected("(") }
            if accept("PREVIOUS") { statement.fill = .previous }
            else if accept("LINEAR") { statement.fill = .linear }
            else { statement.fill = .constant(try unary()) }
            guard acceptSymbol(")") else { throw expected(")") }
        }
        if accept("ORDER") {
            guard accept("BY"), accept("TIME") else { throw expected("BY TIME") }
            statement.orderByTimeDescending = accept("DESC")
            if !statement.orderByTimeDescending { _ = accept("ASC") }
        }
        while true {
            if accept("LIMIT") { statement.limit = try integer() }
            else if accept("OFFSET") { statement.offset = try integer() }
            else if accept("SLIMIT") { statement.seriesLimit = try integer() }
            else if accept("SOFFSET") { statement.seriesOffset = try integer() }
            else if accept("ALIGN") {
                guard accept("BY"), accept("DEVICE") else { throw expected("BY DEVICE") }
                statement.alignByDevice = true
            }
            else { break }
        }
        return statement
    }

    private mutating func limitOffset() throws(SQLError) -> (Int?, Int) {
        var limit: Int?, offset = 0
        while true {
            if accept("LIMIT") { limit = try integer() } else if accept("OFFSET") { offset = try integer() } else { break }
        }
        return (limit, offset)
    }

    // MARK: - Conditions and expressions

    // A chain `a OR b OR c` builds a tree one level deeper per operator, so each operator
    // counts as a level, as a parenthesis does.

    private mutating func orCondition() throws(SQLError) -> Condition {
        let entry = depth
        defer { depth = entry }
        var condition = try andCondition()
        while accept("OR") || acceptSymbol("||") {
            try deeper()
            condition = .or(condition, try andCondition())
        }
        return condition
    }

    private mutating func andCondition() throws(SQLError) -> Condition {
        let entry = depth
        defer { depth = entry }
        var condition = try notCondition()
        while accept("AND") || acceptSymbol("&&") {
            try deeper()
            condition = .and(condition, try notCondition())
        }
        return condition
    }

    private mutating func notCondition() throws(SQLError) -> Condition {
        let entry = depth
        defer { depth = entry }
        if accept("NOT") || acceptSymbol("!") {
            try deeper()
            return .not(try notCondition())
        }
        if peekSymbol("(") && opensCondition[position] {
            try deeper()
            position += 1
            let inner = try orCondition()
            guard acceptSymbol(")") else { throw expected(")") }
            return inner
        }
        let lhs = try expression()
        for op in ["<=", ">=", "!=", "<>", "=", "<", ">"] where acceptSymbol(op) {
            let isTime: Bool = { if case .path(let levels) = lhs { return levels.count == 1 && ["TIME", "TIMESTAMP"].contains(levels[0].uppercased()) }; return false }()
            let rhs = isTime ? Expression.number(Double(try timeValue()), text: "") : try expression()
            return .compare(lhs, op == "<>" ? "!=" : op, rhs)
        }
        throw expected("a comparison (=, !=, <, <=, >, >=)")
    }

    /// For each token, whether it is a `(` that opens a condition rather than an arithmetic
    /// expression: a comparison, AND, OR or NOT directly inside it, or a condition in
    /// parentheses (`((v > 1))`). One pass over the tokens, so deep or long statements cost
    /// no more than their length.
    private static func conditionParentheses(_ tokens: [Token]) -> [Bool] {
        var opens = [Bool](repeating: false, count: tokens.count)
        var open: [Int] = []  // indices of the `(`s enclosing the current token
        for (index, token) in tokens.enumerated() {
            switch token.kind {
            case .symbol("("): open.append(index)
            case .symbol(")"):
                // Arithmetic cannot hold a condition: what holds one is a condition too.
                if let closed = open.popLast(), opens[closed], let parent = open.last { opens[parent] = true }
            case .symbol("="), .symbol("!="), .symbol("<>"), .symbol("<"), .symbol("<="), .symbol(">"), .symbol(">="):
                if let innermost = open.last { opens[innermost] = true }
            case .identifier(let word) where word.count <= 3:
                if let innermost = open.last, ["AND", "OR", "NOT"].contains(word.uppercased()) { opens[innermost] = true }
            default: break
            }
        }
        return opens
    }

    private mutating func expression() throws(SQLError) -> Expression {
        let entry = depth
        defer { depth = entry }
        var lhs = try term()
        while true {
            if acceptSymbol("+") { try deeper(); lhs = .binary("+", lhs, try term()) }
            else if acceptSymbol("-") { try deeper(); lhs = .binary("-", lhs, try term()) }
            else { return lhs }
        }
    }

    private mutating func term() throws(SQLError) -> Expression {
        let entry = depth
        defer { depth = entry }
        var lhs = try unary()
        while true {
            if acceptSymbol("*") { try deeper(); lhs = .binary("*", lhs, try unary()) }
            else if acceptSymbol("/") { try deeper(); lhs = .binary("/", lhs, try unary()) }
            else if acceptSymbol("%") { try deeper(); lhs = .binary("%", lhs, try unary()) }
            else { return lhs }
        }
    }

    private mutating func unary() throws(SQLError) -> Expression {
        let entry = depth
        defer { depth = entry }
        try deeper()
        if acceptSymbol("-") { return .negate(try unary()) }
        if acceptSymbol("+") { return try unary() }
        let token = current
        switch token.kind {
        case .number(let text):
            position += 1
            guard let value = Double(text) else { throw SQLError(line: token.line, column: token.column, message: "invalid number \(text)") }
            return .number(value, text: text)
        case .string(let text):
            position += 1
            return .string(text)
        case .symbol("("):
            position += 1
            let inner = try expression()
            guard acceptSymbol(")") else { throw expected(")") }
            return inner
        case .symbol("*"), .symbol("**"):
            return .path(try relativePath())
        case .identifier(let word):
            if word.uppercased() == "TRUE" { position += 1; return .boolean(true) }
            if word.uppercased() == "FALSE" { position += 1; return .boolean(false) }
            if word.uppercased() == "NULL" { position += 1; return .null }
            if case .symbol("(") = tokens[position + 1].kind {
                position += 2
                var arguments: [Expression] = []
                if !peekSymbol(")") {
                    repeat { arguments.append(try expression()) } while acceptSymbol(",")
                }
                guard acceptSymbol(")") else { throw expected(")") }
                return .call(word.lowercased(), arguments)
            }
            return .path(try relativePath())
        case .quoted, .duration:
            return .path(try relativePath())
        default:
            throw expected("an expression")
        }
    }

    // MARK: - Paths and values

    private mutating func path() throws(SQLError) -> String { try pathLevels().joined(separator: ".") }

    /// A path from root, as its levels.
    private mutating func pathLevels() throws(SQLError) -> [String] {
        let token = current
        let levels = try relativePath()
        guard levels.first == "root" else {
            throw SQLError(line: token.line, column: token.column, message: "a path starts with root, got \(levels.joined(separator: "."))")
        }
        return levels
    }

    private mutating func optionalPath() throws(SQLError) -> String? {
        optionalPathStarts ? try path() : nil
    }

    private var optionalPathStarts: Bool {
        if case .identifier(let word) = current.kind, word == "root" { return true }
        return false
    }

    private mutating func pathList() throws(SQLError) -> [String] {
        var paths = [try path()]
        while acceptSymbol(",") { paths.append(try path()) }
        return paths
    }

    private mutating func relativePath() throws(SQLError) -> [String] {
        var levels = [try level()]
        while acceptSymbol(".") { levels.append(try level()) }
        return levels
    }

    private mutating func level() throws(SQLError) -> String {
        let token = current
        switch token.kind {
        case .identifier(let word), .number(let word), .duration(let word):
            position += 1
            return word
        case .quoted(let word):
            position += 1
            return PathLevel.canonical(word)
        case .symbol("*"), .symbol("**"):
            position += 1
            if case .symbol(let symbol) = token.kind { return symbol }
            return "*"
        default:
            throw expected("a path level")
        }
    }


    /// A time: integer milliseconds, an ISO-8601 date-time, or now() ± durations.
    private mutating func timeValue() throws(SQLError) -> Int64 {
        var sign: Int64 = 1
        if acceptSymbol("-") { sign = -1 }
        let token = current
        switch token.kind {
        case .number(let text):
            position += 1
            guard let value = Int64(text) else { throw SQLError(line: token.line, column: token.column, message: "time must be an integer, got \(text)") }
            return sign * value
        case .identifier(let word) where word.lowercased() == "now":
            position += 1
            guard acceptSymbol("("), acceptSymbol(")") else { throw expected("now()") }
            return try plusDurations(nowMs)
        case .identifier(let word):
            position += 1
            guard let ms = Self.dateTimeMs(word) else {
                throw SQLError(line: token.line, column: token.column, message: "expected a time (integer, ISO-8601 or now()), got \(word)")
            }
            return try plusDurations(ms)
        default:
            throw expected("a time (integer, ISO-8601 or now())")
        }
    }

    /// `time ± duration ± …`, refusing a result outside Int64.
    private mutating func plusDurations(_ start: Int64) throws(SQLError) -> Int64 {
        var value = start
        while peekSymbol("+") || peekSymbol("-") {
            let token = current
            let minus = acceptSymbol("-")
            if !minus { position += 1 }
            let duration = try durationMs()
            let (sum, overflow) = minus ? value.subtractingReportingOverflow(duration) : value.addingReportingOverflow(duration)
            guard !overflow else { throw SQLError(line: token.line, column: token.column, message: "time out of range") }
            value = sum
        }
        return value
    }

    private mutating func durationMs() throws(SQLError) -> Int64 {
        let token = current
        guard case .duration(let text) = token.kind, let ms = Self.durationMs(text) else { throw expected("a duration such as 1h or 30s") }
        position += 1
        return ms
    }

    /// `1d2h30m`, units y mo w d h m s ms us ns, in milliseconds.
    static func durationMs(_ text: String) -> Int64? {
        let units: [(String, Double)] = [("mo", 30 * 86_400_000), ("ms", 1), ("us", 0.001), ("ns", 0.000001), ("y", 365 * 86_400_000),
                                         ("w", 7 * 86_400_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)]
        var rest = Substring(text.lowercased())
        var total = 0.0
        while !rest.isEmpty {
            let digits = rest.prefix { $0.isNumber }
            guard let amount = Double(digits), !digits.isEmpty else { return nil }
            rest = rest.dropFirst(digits.count)
            guard let unit = units.first(where: { rest.hasPrefix($0.0) }) else { return nil }
            rest = rest.dropFirst(unit.0.count)
            total += amount * unit.1
        }
        return total.isFinite && abs(total) < 9.2e18 ? Int64(total) : nil
    }

    /// ISO-8601 date or date-time, UTC unless a zone is given, in milliseconds.
    static func dateTimeMs(_ text: String) -> Int64? {
        var value = text.replacingOccurrences(of: "/", with: "-")
        if value.count == 10 { value += "T00:00:00" }
        let hasZone = value.hasSuffix("Z") || value.dropFirst(19).contains("+") || value.dropFirst(19).contains("-")
        if !hasZone { value += "Z" }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = value.contains(".") ? [.withInternetDateTime, .withFractionalSeconds] : [.withInternetDateTime]
        guard let date = formatter.date(from: value) else { return nil }
        return Int64((date.timeIntervalSince1970 * 1000).rounded())
    }

    private mutating func stringLiteral(_ what: String) throws(SQLError) -> String {
        guard case .string(let text) = current.kind else { throw expected(what) }
        position += 1
        return text
    }

    private mutating func integer() throws(SQLError) -> Int {
        let token = current
        guard case .number(let text) = token.kind, let value = Int(text), value >= 0 else { throw expected("a non-negative integer") }
        position += 1
        return value
    }

    // MARK: - Tokens

    private var current: Token { tokens[position] }

    private mutating func accept(_ keyword: String) -> Bool {
        if case .identifier(let word) = current.kind, word.uppercased() == keyword {
            position += 1
            return true
        }
        return false
    }

    private mutating func word(_ what: String) throws(SQLError) -> String {
        if case .identifier(let word) = current.kind {
            position += 1
            return word
        }
        throw expected(what)
    }

    private func peekSymbol(_ symbol: String) -> Bool {
        if case .symbol(let found) = current.kind { return found == symbol }
        return false
    }

    private mutating func acceptSymbol(_ symbol: String) -> Bool {
        guard peekSymbol(symbol) else { return false }
        position += 1
        return true
    }

    private func expected(_ what: String) -> SQLError {
        let found: String
        switch current.kind {
        case .identifier(let w), .number(let w), .duration(let w), .quoted(let w), .symbol(let w): found = "'\(w)'"
        case .string(let s): found = "'\(s)'"
        case .end: found = "the end of the statement"
        }
        return SQLError(line: current.line, column: current.column, message: "expected \(what), found \(found)")
    }
}

/// The time range a condition implies, and whether it says anything beyond time.
struct TimeRange {
    /// nil when the condition can match no time at all.
    var range: ClosedRange<Int64>?
    var isOnlyTime: Bool

    static let all = TimeRange(range: Int64.min...Int64.max, isOnlyTime: false)

    static func of(_ condition: Condition) -> TimeRange? {
        switch condition {
        case .and(let a, let b):
            guard let left = of(a), let right = of(b) else { return nil }
            let onlyTime = left.isOnlyTime && right.isOnlyTime
            guard let l = left.range, let r = right.range else { return TimeRange(range: nil, isOnlyTime: onlyTime) }
            let low = max(l.lowerBound, r.lowerBound), high = min(l.upperBound, r.upperBound)
            return TimeRange(range: low <= high ? low...high : nil, isOnlyTime: onlyTime)
        case .compare(.path(let levels), let op, .number(let value, _)) where levels.count == 1 && ["TIME", "TIMESTAMP"].contains(levels[0].uppercased()):
            // Times beyond Int64 clamp to its ends (a bound past every timestamp).
            let v = value >= 9.2e18 ? Int64.max : value <= -9.2e18 ? Int64.min : Int64(value.isNaN ? 0 : value)
            switch op {
            case "<": return TimeRange(range: v == Int64.min ? nil : Int64.min...(v - 1), isOnlyTime: true)
            case "<=": return TimeRange(range: Int64.min...v, isOnlyTime: true)
            case ">": return TimeRange(range: v == Int64.max ? nil : (v + 1)...Int64.max, isOnlyTime: true)
            case ">=": return TimeRange(range: v...Int64.max, isOnlyTime: true)
            case "=": return TimeRange(range: v...v, isOnlyTime: true)
            default: return .all
            }
        default:
            // Anything else (OR, NOT, value filters) does not narrow the scan; it is checked per row.
            return .all
        }
    }
}
