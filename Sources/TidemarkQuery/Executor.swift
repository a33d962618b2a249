import Foundation
import TidemarkCore
import TidemarkStorage

/// One cell of a result.
public enum ResultValue: Sendable, Equatable {
    case null
    case boolean(Bool)
    case integer(Int64)
    case double(Double)
    case text(String)

    init(_ value: Value?) {
        switch value {
        case nil: self = .null
        case .boolean(let v): self = .boolean(v)
        case .int32(let v): self = .integer(Int64(v))
        case .int64(let v): self = .integer(v)
        case .float(let v): self = .double(Double(v))
        case .double(let v): self = .double(v)
        case .text(let v): self = .text(v)
        }
    }

    var number: Double? {
        switch self {
        case .integer(let v): Double(v)
        case .double(let v): v
        default: nil
        }
    }
}

/// A result table in IoTDB's REST shape: column-major `values`.
public struct QueryResult: Sendable, Equatable {
    public var expressions: [String]?
    public var columnNames: [String]?
    public var dataTypes: [String]
    public var timestamps: [Int64]?
    public var values: [[ResultValue]]

    public init(expressions: [String]?, columnNames: [String]?, dataTypes: [String], timestamps: [Int64]?, values: [[ResultValue]]) {
        self.expressions = expressions
        self.columnNames = columnNames
        self.dataTypes = dataTypes
        self.timestamps = timestamps
        self.values = values
    }
}

/// What running a statement produced.
public enum ExecutionResult: Sendable {
    case done
    case rows(QueryResult)
    /// An INSERT: the points, for the caller to hand to the append stage.
    case write([RowWrite])
}

/// A statement that could not run, with IoTDB's status code.
public struct ExecutionError: Error, Sendable, Equatable, CustomStringConvertible {
    public let code: Int
    public let message: String
    /// The client address of the leader to retry at, when this node is not it.
    public var leaderAddress: String?

    public init(code: Int, message: String, leaderAddress: String? = nil) {
        self.code = code
        self.message = message
        self.leaderAddress = leaderAddress
    }

    /// Whether the statement may succeed if sent again (here later, or at the leader): HTTP 503.
    public var isRetryable: Bool { code == Self.rejectedCode }

    /// IoTDB's WRITE_PROCESS_REJECT: not the leader, or too busy; nothing was applied.
    public static let rejectedCode = 606

    public var description: String { "\(code): \(message)" }

    static func semantic(_ message: String) -> ExecutionError { ExecutionError(code: 701, message: message) }
}

/// Runs parsed statements against a node's regions (`RegionStore`). Scans stream in the engines'
/// batches; a query stops as soon as it has `rowsMax` rows more than it may return.
public struct StatementExecutor: Sendable {
    public let engine: any RegionStore
    /// Past this many result rows a query fails with code 708 (IoTDB's row limit).
    public var rowsMax: Int
    /// What one query may hold in memory (result rows, scan buffers); past it, code 708.
    public var memoryBytesMax: Int

    public init(engine: any RegionStore, rowsMax: Int = 10_000, memoryBytesMax: Int = 64 << 20) {
        self.engine = engine
        self.rowsMax = rowsMax
        self.memoryBytesMax = memoryBytesMax
    }

    public func execute(_ statement: Statement) throws(ExecutionError) -> ExecutionResult {
        do {
            return try run(statement)
        } catch let error as ExecutionError {
            throw error
        } catch let error as EngineError {
            throw Self.translate(error)
        } catch {
            throw ExecutionError(code: 305, message: "\(error)")
        }
    }

    public static func translate(_ error: EngineError) -> ExecutionError {
        switch error {
        case .schema(let schema):
            let code = switch schema.kind {
            case .databaseExists: 501
            case .seriesExists: 503
            case .noSuchDatabase: 500
            case .noSuchSeries: 508
            case .invalidPath: 509
            case .other: 507
            }
            return ExecutionError(code: code, message: schema.description)
        case .typeMismatch: return ExecutionError(code: 614, message: error.description)
        case .tooLarge: return ExecutionError(code: 413, message: error.description)
        case .flushBehind: return ExecutionError(code: ExecutionError.rejectedCode, message: error.description)
        case .unavailable(let reason, let leader): return ExecutionError(code: ExecutionError.rejectedCode, message: reason, leaderAddress: leader)
        case .io, .corrupt: return ExecutionError(code: 305, message: error.description)
        }
    }

    private func pattern(_ text: String?) throws -> PathPattern {
        guard let text else { return try PathPattern(parsing: "root.**") }
        do { return try PathPattern(parsing: text) } catch { throw ExecutionError(code: 509, message: "\(error)") }
    }

    private func run(_ statement: Statement) throws -> ExecutionResult {
        switch statement {
        case .createDatabase(let name, _):
            try engine.createDatabase(name)
            return .done
        case .dropDatabase(let names):
            for name in names { try engine.dropDatabase(name) }
            return .done
        case .showDatabases(let text):
            let filter = try pattern(text)
            let names = try engine.databases().filter { text == nil || filter.matches($0) }
            return .rows(QueryResult(expressions: nil, columnNames: ["database"], dataTypes: ["TEXT"], timestamps: nil,
                                     values: [names.map { .text($0) }]))
        case .createTimeseries(let path, let type, let encoding, let compressor):
            try engine.createSeries(SeriesSchema(path: path, dataType: type, encoding: encoding, compression: compressor ?? "ZSTD"))
            return .done
        case .showTimeseries(let text, let limit, let offset):
            var series = try engine.series(matching: try pattern(text)).dropFirst(offset)
            if let limit { series = series.prefix(limit) }
            let databases = try engine.databases()
            let columns: [(String, (SeriesSchema) -> ResultValue)] = [
                ("timeseries", { .text($0.path) }), ("alias", { _ in .null }),
                ("database", { schema in .text(databases.first { schema.path.hasPrefix($0 + ".") } ?? "") }),
                ("dataType", { .text($0.dataType.description) }), ("encoding", { .text($0.encoding) }),
                ("compression", { .text($0.compression) }), ("tags", { _ in .null }), ("attributes", { _ in .null }),
            ]
            return .rows(QueryResult(expressions: nil, columnNames: columns.map(\.0), dataTypes: columns.map { _ in "TEXT" },
                                     timestamps: nil, values: columns.map { column in series.map(column.1) }))
        case .countTimeseries(let text):
            return .rows(QueryResult(expressions: nil, columnNames: ["count"], dataTypes: ["INT64"], timestamps: nil,
                                     values: [[.integer(Int64(try engine.series(matching: try pattern(text)).count))]]))
        case .showDevices(let text):
            let devices = try engine.devices(matching: try pattern(text))
            return .rows(QueryResult(expressions: nil, columnNames: ["devices", "isAligned"], dataTypes: ["TEXT", "TEXT"],
                                     timestamps: nil, values: [devices.map { .text($0) }, devices.map { _ in .text("false") }]))
        case .deleteTimeseries(let texts):
            for text in texts { try engine.deleteSeries(matching: try pattern(text)) }
            return .done
        case .insert(let device, let measurements, let rows):
            var written: [RowWrite] = []
            for (timestamp, values) in rows {
                var row = RowWrite(device: device, timestamp: timestamp, measurements: [], values: [])
                for (measurement, expression) in zip(measurements, values) {
                    guard let value = try literal(expression, for: device + "." + measurement) else { continue }  // null: no point
                    row.measurements.append(measurement)
                    row.values.append(value)
                }
                if !row.values.isEmpty { written.append(row) }
            }
            return .write(written)
        case .deleteData(let paths, let range):
            for path in paths { try engine.delete(matching: try pattern(path), range: range) }
            return .done
        case .select(let select):
            return .rows(try Query(select: select, engine: engine, rowsMax: rowsMax, budget: MemoryBudget(bytesMax: memoryBytesMax)).run())
        case .flush:
            try engine.flush()
            return .done
        case .createUser, .dropUser, .alterPassword, .grant, .revoke, .listUsers:
            throw ExecutionError.semantic("user statements are run by the node's user store")
        case .showCluster, .showDataNodes, .showRegions, .showDatabasesDetails, .removeDataNode:
            throw ExecutionError.semantic("cluster statements are answered by the node from the meta group")
        }
    }

    /// An INSERT value as the series' type (existing series), or inferred (new series).
    private func literal(_ expression: Expression, for path: String) throws -> Value? {
        let existing = try engine.series(path)?.dataType
        func mismatch(_ got: String) -> ExecutionError {
            ExecutionError(code: 614, message: "\(path) is \(existing!.description), got \(got)")
        }
        switch expression {
        case .null: return nil
        case .boolean(let flag):
            guard existing == nil || existing == .boolean else { throw mismatch("a BOOLEAN") }
            return .boolean(flag)
        case .string(let text):
            guard existing == nil || existing == .text else { throw mismatch("a TEXT") }
            return .text(text)
        case .number, .negate:
            guard let number = Query.constant(expression) else { throw ExecutionError.semantic("values must be literals, got \(expression)") }
            let text = expression.description
            let isInteger = !text.contains(".") && !text.lowercased().contains("e") && number.rounded() == number
            switch existing {
            case .int32?: guard let v = Int32(exactly: number) else { throw mismatch(text) }; return .int32(v)
            case .int64?: guard let v = Int64(exactly: number) else { throw mismatch(text) }; return .int64(v)
            case .float?: return .float(Float(number))
            case .double?: return .double(number)
            case .boolean?, .text?: throw mismatch("a number")
            case nil: return isInteger && abs(number) < 9e18 ? .int64(Int64(number)) : .double(number)
            }
        default:
            throw ExecutionError.semantic("values must be literals, got \(expression)")
        }
    }
}
