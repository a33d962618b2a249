import Testing
import TidemarkCore
import TidemarkStorage
import TidemarkTestSupport
@testable import TidemarkQuery

private func run(_ executor: StatementExecutor, _ sql: String) throws -> ExecutionResult {
    try executor.execute(try Parser.parse(sql, nowMs: 1_000_000))
}

private func rows(_ executor: StatementExecutor, _ sql: String) throws -> QueryResult {
    guard case .rows(let result) = try run(executor, sql) else { throw ExecutionError(code: 0, message: "no rows") }
    return result
}

private func insert(_ executor: StatementExecutor, _ sql: String) throws {
    guard case .write(let points) = try run(executor, sql) else { throw ExecutionError(code: 0, message: "not an insert") }
    try (executor.engine as! StorageEngine).write(points.flatMap(\.points))
}

@Suite struct ParserTests {
    @Test func parsesTheReferenceStatements() throws {
        #expect(try Parser.parse("CREATE DATABASE root.ln") == .createDatabase("root.ln"))
        #expect(try Parser.parse("CREATE DATABASE root.db WITH SCHEMA_REPLICATION_FACTOR=1, DATA_REPLICATION_FACTOR=3, SCHEMA_REGION_GROUP_NUM=1, DATA_REGION_GROUP_NUM=2")
                == .createDatabase("root.db", DatabaseOptions(schemaReplicationFactor: 1, dataReplicationFactor: 3, schemaRegionGroups: 1, dataRegionGroups: 2)))
        #expect(throws: SQLError.self) { try Parser.parse("CREATE DATABASE root.db WITH DATA_REPLICATION_FACTOR=0") }
        #expect(throws: SQLError.self) { try Parser.parse("CREATE DATABASE root.db WITH TIME_PARTITION_INTERVAL=5") }
        #expect(try Parser.parse("SHOW REGIONS") == .showRegions)
        #expect(try Parser.parse("show databases details") == .showDatabasesDetails)
        #expect(try Parser.parse("REMOVE DATANODE 4") == .removeDataNode(4))
        #expect(throws: SQLError.self) { try Parser.parse("REMOVE DATANODE 0") }
        #expect(try Parser.parse("create timeseries root.ln.wf01.wt01.temperature with datatype=FLOAT;")
            == .createTimeseries(path: "root.ln.wf01.wt01.temperature", type: .float, encoding: nil, compressor: nil))
        #expect(try Parser.parse("create timeseries root.ln.wf02.wt02.status WITH DATATYPE=BOOLEAN, ENCODING=TS_2DIFF, COMPRESSOR=ZSTD")
            == .createTimeseries(path: "root.ln.wf02.wt02.status", type: .boolean, encoding: "TS_2DIFF", compressor: "ZSTD"))
        #expect(try Parser.parse("show timeseries root.ln.** limit 10 offset 10") == .showTimeseries("root.ln.**", limit: 10, offset: 10))
        #expect(try Parser.parse("insert into root.ln.wf02.wt02(timestamp, status, hardware) VALUES (3, false, 'v3'),(4, true, 'v4')")
            == .insert(device: "root.ln.wf02.wt02", measurements: ["status", "hardware"],
                       rows: [(3, [.boolean(false), .string("v3")]), (4, [.boolean(true), .string("v4")])]))
        #expect(try Parser.parse("delete from root.ln.wf02.wt02.status where time <= 2017-11-01T16:26:00")
            == .deleteData(paths: ["root.ln.wf02.wt02.status"], range: Int64.min...1_509_553_560_000))
        guard case .select(let select) = try Parser.parse("select status, temperature from root.ln.wf01.wt01 where time > 2017-11-01T00:05:00.000 and time < 2017-11-01T00:12:00.000 order by time desc limit 10") else {
            Issue.record("not a select"); return
        }
        #expect(select.items == [.path(["status"]), .path(["temperature"])])
        #expect(select.orderByTimeDescending && select.limit == 10)
        #expect(TimeRange.of(select.condition!)?.range == 1_509_494_700_001...1_509_495_119_999)
        #expect(try Parser.parse("select last s1 from root.sg.d where time >= now() - 1h") != .showDatabases(nil))
        #expect(try Parser.parse("GRANT READ_DATA, write_data ON root.ln.** TO USER alice") == .grant(user: "alice", privileges: ["READ_DATA", "WRITE_DATA"], patterns: ["root.ln.**"]))
        #expect(try Parser.parse("create user alice 'pw'") == .createUser(name: "alice", password: "pw"))
        #expect(try Parser.parse("LIST USER") == .listUsers)
    }

    @Test func errorsSayWhereAndWhatWasExpected() {
        func error(_ sql: String) -> SQLError? {
            do { _ = try Parser.parse(sql); return nil } catch { return error }
        }
        #expect(error("SELEC s1 FROM root.sg")?.description == "line 1, column 1: expected a statement (CREATE, DROP, DELETE, SHOW, COUNT, INSERT, SELECT, FLUSH, GRANT, REVOKE, LIST or ALTER), found 'SELEC'")
        #expect(error("select s1\nfrom sg.d")?.description == "line 2, column 6: a path starts with root, got sg.d")
        #expect(error("create timeseries root.a.b with datatype=DECIMAL")?.message == "unknown data type DECIMAL")
        #expect(error("insert into root.a.b(time, s1, s2) values (1, 2)")?.message.contains("2 values after the time") == true)
        #expect(error("select s1 from root.a where")?.message == "expected an expression, found the end of the statement")
        #expect(error("select 'oops from root.a")?.message == "unterminated string")
        #expect(error("delete from root.a.b where s1 > 3")?.message.contains("time only") == true)
    }
}

@Suite struct ExecutorTests {
    private func executor() throws -> StatementExecutor {
        StatementExecutor(engine: try StorageEngine(directory: try temporaryDirectory("sql")), rowsMax: 100)
    }

    @Test func schemaStatementsAndTheirErrorCodes() throws {
        let executor = try executor()
        _ = try run(executor, "CREATE DATABASE root.ln")
        #expect(throws: ExecutionError(code: 501, message: "root.ln: database already exists or overlaps one")) { try run(executor, "CREATE DATABASE root.ln") }
        _ = try run(executor, "create timeseries root.ln.wf01.wt01.temperature with datatype=FLOAT, encoding=GORILLA")
        #expect((try? run(executor, "create timeseries root.ln.wf01.wt01.temperature with datatype=FLOAT")) == nil)
        _ = try run(executor, "create timeseries root.ln.wf01.wt02.status with datatype=BOOLEAN")
        #expect(try rows(executor, "show databases").values == [[.text("root.ln")]])
        #expect(try rows(executor, "count timeseries root.ln.**").values == [[.integer(2)]])
        let series = try rows(executor, "show timeseries root.ln.wf01.*.temperature")
        #expect(series.values[0] == [.text("root.ln.wf01.wt01.temperature")])
        #expect(series.values[3] == [.text("FLOAT")])
        #expect(try rows(executor, "show devices").values[0] == [.text("root.ln.wf01.wt01"), .text("root.ln.wf01.wt02")])
        _ = try run(executor, "drop database root.ln")
        #expect(try rows(executor, "show databases").values == [[]])
        #expect((try? run(executor, "drop database root.ln")) == nil)
    }

    @Test func insertSelectFilterArithmeticAndLimits() throws {
        let executor = try executor()
        try insert(executor, "insert into root.sg27(timestamp, s3, s4) values (1635232143960, 11, false), (1635232153960, null, true)")
        try insert(executor, "insert into root.sg27(time, s3) values (1635232163960, 13)")
        let result = try rows(executor, "select s3, s4, s3 + 1 from root.sg27 limit 2")
        #expect(result.expressions == ["root.sg27.s3", "root.sg27.s4", "root.sg27.s3 + 1"])
        #expect(result.timestamps == [1_635_232_143_960, 1_635_232_153_960])
        #expect(result.values == [[.integer(11), .null], [.boolean(false), .boolean(true)], [.double(12), .null]])
        #expect(try rows(executor, "select s3 from root.sg27 where s3 > 11").timestamps == [1_635_232_163_960])
        #expect(try rows(executor, "select * from root.sg27 where time >= 1635232153960 order by time desc").timestamps == [1_635_232_163_960, 1_635_232_153_960])
        #expect(try rows(executor, "select s3 from root.sg27 where s3 = 11 or s4 = true").timestamps == [1_635_232_143_960, 1_635_232_153_960])
        #expect(try rows(executor, "select s3 from root.sg27 limit 1 offset 1").timestamps == [1_635_232_163_960])
        #expect(throws: ExecutionError.self) { try insert(executor, "insert into root.sg27(time, s3) values (5, 'text')") }
    }

    @Test func aggregatesAndLast() throws {
        let executor = try executor()
        try insert(executor, "insert into root.sg.d(time, v, t) values (1, 1.5, 'a'), (2, 2.5, 'b'), (3, -1.0, 'c')")
        let result = try rows(executor, "select count(v), sum(v), avg(v), min_value(v), max_value(v), first_value(t), last_value(v), min_time(v), max_time(v) from root.sg.d")
        #expect(result.timestamps == nil)
        #expect(result.expressions?.first == "count(root.sg.d.v)")
        #expect(result.values == [[.integer(3)], [.double(3)], [.double(1)], [.double(-1)], [.double(2.5)], [.text("a")], [.double(-1)], [.integer(1)], [.integer(3)]])
        #expect(try rows(executor, "select count(v) from root.sg.d where time > 1").values == [[.integer(2)]])
        #expect(try rows(executor, "select count(v) from root.sg.d where v > 0").values == [[.integer(2)]])
        let last = try rows(executor, "select last v, t from root.sg.d")
        #expect(last.columnNames == ["timeseries", "value", "dataType"])
        #expect(last.timestamps == [3, 3])
        #expect(last.values == [[.text("root.sg.d.v"), .text("root.sg.d.t")], [.text("-1.0"), .text("c")], [.text("DOUBLE"), .text("TEXT")]])
    }

    @Test func groupByTimeWindowsAndFill() throws {
        let executor = try executor()
        try insert(executor, "insert into root.sg.d(time, v) values (1, 1), (2, 3), (3, 5), (7, 10), (10, 20)")
        let windows = try rows(executor, "select count(v), avg(v) from root.sg.d group by ([1, 11), 3ms)")
        #expect(windows.timestamps == [1, 4, 7, 10])
        #expect(windows.values == [[.integer(3), .integer(0), .integer(1), .integer(1)], [.double(3), .null, .double(10), .double(20)]])
        let sliding = try rows(executor, "select sum(v) from root.sg.d where time >= 2 group by ([1, 11), 4ms, 2ms)")
        #expect(sliding.timestamps == [1, 3, 5, 7, 9])
        #expect(sliding.values == [[.double(8), .double(5), .double(10), .double(30), .double(20)]])
        let previous = try rows(executor, "select avg(v) from root.sg.d group by ([1, 11), 3ms) fill(previous)")
        #expect(previous.values == [[.double(3), .double(3), .double(10), .double(20)]])
        let linear = try rows(executor, "select avg(v) from root.sg.d group by ([1, 11), 3ms) fill(linear)")
        #expect(linear.values == [[.double(3), .double(6.5), .double(10), .double(20)]])
        let constant = try rows(executor, "select avg(v) from root.sg.d group by ([1, 11), 3ms) fill(0)")
        #expect(constant.values == [[.double(3), .double(0), .double(10), .double(20)]])
        #expect(throws: ExecutionError.self) { try rows(executor, "select v from root.sg.d group by ([1, 11), 3ms)") }
        #expect(throws: ExecutionError.self) { try rows(executor, "select count(v) from root.sg.d group by ([0, 1000000), 1ms)") }
    }

    @Test func groupByLevelMergesSeries() throws {
        let executor = try executor()
        try insert(executor, "insert into root.ln.wf01.wt01(time, status, t) values (1, 1, 5), (2, 2, 6)")
        try insert(executor, "insert into root.ln.wf02.wt02(time, status) values (3, 4)")
        let byLevel = try rows(executor, "select count(status), max_value(status), last_value(status) from root.** group by level = 1")
        #expect(byLevel.expressions == ["count(root.ln.*.*.status)", "max_value(root.ln.*.*.status)", "last_value(root.ln.*.*.status)"])
        #expect(byLevel.values == [[.integer(3)], [.double(4)], [.integer(4)]])
        let byDevice = try rows(executor, "select count(status) from root.** group by level = 2")
        #expect(byDevice.expressions == ["count(root.ln.wf01.*.status)", "count(root.ln.wf02.*.status)"])
        #expect(throws: ExecutionError.self) { try rows(executor, "select status from root.** group by level = 1") }
        let windows = try rows(executor, "select count(status), sum(status) from root.** group by ([1, 5), 2ms), level = 1")
        #expect(windows.expressions == ["count(root.ln.*.*.status)", "sum(root.ln.*.*.status)"])
        #expect(windows.timestamps == [1, 3])
        #expect(windows.values == [[.integer(2), .integer(1)], [.double(3), .double(4)]])
    }

    @Test func alignByDeviceWithAggregates() throws {
        let executor = try executor()
        try insert(executor, "insert into root.sg.d1(time, s1, s2) values (1, 1, 'a'), (2, 2, 'b')")
        try insert(executor, "insert into root.sg.d2(time, s1) values (1, 10)")
        let totals = try rows(executor, "select count(s1), max_value(s1), count(s2) from root.sg.* align by device")
        #expect(totals.columnNames == ["Device", "count(s1)", "max_value(s1)", "count(s2)"])
        #expect(totals.timestamps == nil)
        #expect(totals.values == [[.text("root.sg.d1"), .text("root.sg.d2")], [.integer(2), .integer(1)],
                                  [.double(2), .double(10)], [.integer(2), .null]])
        let windows = try rows(executor, "select count(s1), last_value(s1) from root.sg.* group by ([1, 3), 1ms) fill(previous) align by device")
        #expect(windows.timestamps == [1, 2, 1, 2])
        #expect(windows.values == [[.text("root.sg.d1"), .text("root.sg.d1"), .text("root.sg.d2"), .text("root.sg.d2")],
                                   [.integer(1), .integer(1), .integer(1), .integer(0)],
                                   [.integer(1), .integer(2), .integer(10), .integer(10)]])
        #expect(throws: ExecutionError.self) { try rows(executor, "select count(s1) from root.sg.* group by level = 1 align by device") }
    }

    /// Found by tidemark-fuzz sql: windows that stretch past the end of time, by device, with
    /// nothing in range, must be answered (or refused), never trap.
    @Test func alignByDeviceWithHugeWindowsAndAnEmptyRange() throws {
        let executor = try executor()
        try insert(executor, "insert into root.fy.d0(time, s0, s1) values (1, 1, 2)")
        let result = try rows(executor, "select sum(*), last_value(*), sum(s0) from root.fy.d0 where time > 9223372036854775807 "
                                      + "group by ([100, 1700000000000), 4611686018427387904ms, 4611686018427387904ms) align by device")
        #expect(result.columnNames == ["Device", "sum(s0)", "sum(s1)", "last_value(s0)", "last_value(s1)", "sum(s0)"])
        #expect(result.values.allSatisfy { $0.count == 1 } && result.values.dropFirst().allSatisfy { $0 == [.null] })
        // Named twice, an aggregate is two columns of one series each, not one of the series twice.
        let twice = try rows(executor, "select sum(*), sum(s0) from root.fy.d0 group by ([0, 10), 10ms) align by device")
        #expect(twice.values == [[.text("root.fy.d0")], [.double(1)], [.double(2)], [.double(1)]])
        let plain = try rows(executor, "select sum(*), sum(s0) from root.fy.d0 align by device")
        #expect(plain.values == [[.text("root.fy.d0")], [.double(1)], [.double(2)], [.double(1)]])
    }

    @Test func aQueryPastItsMemoryBoundFailsWith708() throws {
        // Room for one series' scan buffer and about 40 rows of one cell.
        var options = EngineOptions()
        options.scanBatchPoints = 64
        let engine = try StorageEngine(directory: try temporaryDirectory("sql"), options: options)
        let executor = StatementExecutor(engine: engine, rowsMax: 10_000, memoryBytesMax: 64 * 16 + 1000)
        try engine.write((0..<100).map { PointWrite(path: "root.sg.d.v", timestamp: Int64($0), value: .int64(Int64($0))) })
        #expect(try rows(executor, "select v from root.sg.d limit 30").timestamps?.count == 30)
        #expect(try rows(executor, "select count(v) from root.sg.d").values == [[.integer(100)]])
        #expect(throws: ExecutionError(code: 708, message: "query needs more than 2024 bytes of memory (query.memory_bytes_max) for result rows; narrow the time range, select fewer series or add a LIMIT")) {
            try rows(executor, "select v from root.sg.d")
        }
        try engine.write([PointWrite(path: "root.sg.e.v", timestamp: 1, value: .int64(1))])
        #expect(throws: ExecutionError.self) { try rows(executor, "select v from root.sg.*") }  // two scan buffers do not fit
    }

    @Test func alignByDevice() throws {
        let executor = try executor()
        try insert(executor, "insert into root.sg.d1(time, s1, s2) values (1, 1, 'a'), (2, 2, 'b')")
        try insert(executor, "insert into root.sg.d2(time, s1) values (1, 10)")
        let result = try rows(executor, "select * from root.sg.* align by device")
        #expect(result.columnNames == ["Device", "s1", "s2"])
        #expect(result.timestamps == [1, 2, 1])
        #expect(result.values == [[.text("root.sg.d1"), .text("root.sg.d1"), .text("root.sg.d2")],
                                  [.integer(1), .integer(2), .integer(10)], [.text("a"), .text("b"), .null]])
        #expect(try rows(executor, "select s1 from root.sg.* where time = 1 limit 1 offset 1 align by device").values
            == [[.text("root.sg.d2")], [.integer(10)]])
    }

    @Test func theRowLimitRefusesAResultOfThatSize() throws {
        let executor = try executor()
        try (executor.engine as! StorageEngine).write((0..<100).map { PointWrite(path: "root.sg.d.v", timestamp: Int64($0), value: .int64(Int64($0))) })
        #expect(throws: ExecutionError(code: 708, message: "Dataset row size exceeded the given max row size (100)")) {
            try rows(executor, "select v from root.sg.d")
        }
        #expect(try rows(executor, "select v from root.sg.d limit 99").timestamps?.count == 99)
        _ = try run(executor, "delete from root.sg.d.v where time < 50")
        #expect(try rows(executor, "select v from root.sg.d").timestamps?.first == 50)
    }
}
