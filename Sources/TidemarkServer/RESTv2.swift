import Foundation
import TidemarkCore
import TidemarkNet
import TidemarkQuery
import TidemarkStorage
import TidemarkWire

/// IoTDB's REST API v2: `/rest/v2/nonQuery`, `/query`, `/insertTablet`, `/insertRecords`.
/// Decoding runs on the decode stage; inserts go on to route and append, other statements
/// to the query stage. Statement failures are HTTP 200 with IoTDB's `{code, message}`.
enum RESTv2 {
    static let routes = ["/rest/v2/nonQuery", "/rest/v2/query", "/rest/v2/insertTablet", "/rest/v2/insertRecords"]
    static let rowLimitDefault = 10_000

    /// What the decode stage should do with a REST request.
    enum Plan {
        case answer(HTTPResponse)
        case write(WriteJob)
        case execute(Statement, rowLimit: Int)
    }

    static func status(_ code: Int, _ message: String, route: String, http: Int = 200) -> HTTPResponse {
        .json(http, "{\"code\":\(code),\"message\":\(jsonQuoted(message))}", route: route)
    }

    static func success(route: String) -> HTTPResponse { status(200, "SUCCESS_STATUS", route: route) }

    static func plan(_ request: HTTPRequest, nowMs: Int64, respond: @escaping @Sendable (HTTPResponse) -> Void) -> Plan {
        let route = String(request.path)
        guard request.method == "POST" else { return .answer(status(303, "\(route) accepts POST only", route: route, http: 405)) }
        let body: [String: Any]
        do {
            guard let object = try JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any] else {
                return .answer(status(303, "the request body must be a JSON object", route: route, http: 400))
            }
            body = object
        } catch {
            return .answer(status(303, "malformed JSON: \(error.localizedDescription)", route: route, http: 400))
        }
        do {
            switch route {
            case "/rest/v2/nonQuery", "/rest/v2/query":
                guard let sql = body["sql"] as? String else { throw ExecutionError(code: 303, message: "sql is required and must be a string") }
                let rowLimit = try (body["row_limit"]).map { value -> Int in
                    guard let limit = value as? Int, limit > 0 else { throw ExecutionError(code: 303, message: "row_limit must be a positive integer") }
                    return limit
                } ?? rowLimitDefault
                let statement: Statement
                do { statement = try Parser.parse(sql, nowMs: nowMs) } catch { throw ExecutionError(code: 700, message: "\(error)") }
                if route == "/rest/v2/query" && !statement.isQuery {
                    throw ExecutionError(code: 301, message: "/rest/v2/query runs queries only; use /rest/v2/nonQuery")
                }
                if route == "/rest/v2/nonQuery" && statement.isQuery {
                    throw ExecutionError(code: 301, message: "/rest/v2/nonQuery cannot run a query; use /rest/v2/query")
                }
                return .execute(statement, rowLimit: rowLimit)
            case "/rest/v2/insertTablet":
                return .write(job(try tabletPoints(body), route: route, respond: respond))
            default:
                return .write(job(try recordPoints(body), route: route, respond: respond))
            }
        } catch let error as ExecutionError {
            return .answer(status(error.code, error.message, route: route))
        } catch {
            return .answer(status(305, "\(error)", route: route))
        }
    }

    /// A write job whose outcome is answered as an `ExecutionStatus`.
    static func job(_ points: [PointWrite], route: String, respond: @escaping @Sendable (HTTPResponse) -> Void) -> WriteJob {
        WriteJob(units: [WriteJob.Unit(line: 1, points: points)], decodeErrors: []) { outcome in
            if let failure = outcome.failure {
                respond(outcome.failureStatus == 503 ? status(606, failure, route: route, http: 503) : status(305, failure, route: route))
            } else if let refused = outcome.refused.first {
                respond(status(614, refused.reason, route: route))
            } else {
                respond(success(route: route))
            }
        }
    }

    // MARK: - Insert bodies

    private static func tabletPoints(_ body: [String: Any]) throws -> [PointWrite] {
        guard let device = body["device"] as? String, let timestamps = body["timestamps"] as? [Any],
              let measurements = body["measurements"] as? [String], let types = body["data_types"] as? [String],
              let columns = body["values"] as? [[Any]] else {
            throw ExecutionError(code: 303, message: "insertTablet needs device, timestamps, measurements, data_types and values")
        }
        guard measurements.count == types.count, columns.count == measurements.count else {
            throw ExecutionError(code: 303, message: "measurements, data_types and values must have the same length")
        }
        let times = try timestamps.map(timestamp)
        var points: [PointWrite] = []
        for (column, (measurement, typeName)) in zip(columns, zip(measurements, types)) {
            guard column.count == times.count else {
                throw ExecutionError(code: 303, message: "values of \(measurement) has \(column.count) entries for \(times.count) timestamps")
            }
            let type = try dataType(typeName)
            for (time, raw) in zip(times, column) {
                guard let value = try value(raw, type, measurement) else { continue }
                points.append(PointWrite(path: device + "." + measurement, timestamp: time, value: value))
            }
        }
        return points
    }

    private static func recordPoints(_ body: [String: Any]) throws -> [PointWrite] {
        guard let devices = body["devices"] as? [String], let timestamps = body["timestamps"] as? [Any],
              let measurementsList = body["measurements_list"] as? [[String]], let typesList = body["data_types_list"] as? [[String]],
              let valuesList = body["values_list"] as? [[Any]] else {
            throw ExecutionError(code: 303, message: "insertRecords needs devices, timestamps, measurements_list, data_types_list and values_list")
        }
        guard [timestamps.count, measurementsList.count, typesList.count, valuesList.count].allSatisfy({ $0 == devices.count }) else {
            throw ExecutionError(code: 303, message: "devices, timestamps, measurements_list, data_types_list and values_list must have the same length")
        }
        var points: [PointWrite] = []
        for index in devices.indices {
            let time = try timestamp(timestamps[index])
            guard measurementsList[index].count == typesList[index].count, valuesList[index].count == typesList[index].count else {
                throw ExecutionError(code: 303, message: "record \(index) has mismatched measurements, types and values")
            }
            for (measurement, (typeName, raw)) in zip(measurementsList[index], zip(typesList[index], valuesList[index])) {
                guard let value = try value(raw, try dataType(typeName), measurement) else { continue }
                points.append(PointWrite(path: devices[index] + "." + measurement, timestamp: time, value: value))
            }
        }
        return points
    }

    /// A JSON scalar as JSONSerialization hands it over (booleans are NSNumbers of type "c").
    private enum JSONScalar {
        case boolean(Bool)
        case integer(Int64)
        case double(Double)
        case other
    }

    private static func scalar(_ raw: Any) -> JSONScalar {
        guard let number = raw as? NSNumber else { return .other }
        switch String(cString: number.objCType) {
        case "c", "B": return .boolean(number.boolValue)
        case "d", "f": return .double(number.doubleValue)
        default: return .integer(number.int64Value)
        }
    }

    private static func timestamp(_ raw: Any) throws -> Int64 {
        switch scalar(raw) {
        case .integer(let time): return time
        case .double(let value) where Int64(exactly: value) != nil: return Int64(value)
        default: throw ExecutionError(code: 303, message: "timestamps must be integers, got \(raw)")
        }
    }

    private static func dataType(_ name: String) throws -> DataType {
        guard let type = DataType(name: name) else { throw ExecutionError(code: 303, message: "unknown data type \(name)") }
        return type
    }

    /// A JSON value as `type`; nil for JSON null.
    private static func value(_ raw: Any, _ type: DataType, _ measurement: String) throws -> Value? {
        if raw is NSNull { return nil }
        let mismatch = ExecutionError(code: 614, message: "\(measurement): \(raw) is not a \(type)")
        switch (type, scalar(raw)) {
        case (.boolean, .boolean(let flag)): return .boolean(flag)
        case (.text, _):
            guard let text = raw as? String else { throw mismatch }
            return .text(text)
        case (.int32, .integer(let v)): guard let narrow = Int32(exactly: v) else { throw mismatch }; return .int32(narrow)
        case (.int64, .integer(let v)): return .int64(v)
        case (.float, .integer(let v)): return .float(Float(v))
        case (.float, .double(let v)): return .float(Float(v))
        case (.double, .integer(let v)): return .double(Double(v))
        case (.double, .double(let v)): return .double(v)
        default: throw mismatch
        }
    }

    // MARK: - Results

    /// Runs a statement on the query stage and answers in IoTDB's shapes.
    static func execute(_ statement: Statement, rowLimit: Int, executor: StatementExecutor, route: String,
                        submitWrite: (WriteJob) -> Void, respond: @escaping @Sendable (HTTPResponse) -> Void) {
        var executor = executor
        executor.rowsMax = rowLimit
        do {
            switch try executor.execute(statement) {
            case .done: respond(success(route: route))
            case .write(let points): submitWrite(job(points, route: route, respond: respond))
            case .rows(let result): respond(.json(200, json(result), route: route))
            }
        } catch {
            respond(status(error.code, error.message, route: route))
        }
    }

    static func json(_ result: QueryResult) -> String {
        func strings(_ list: [String]?) -> String { list.map { "[" + $0.map(jsonQuoted).joined(separator: ",") + "]" } ?? "null" }
        func cell(_ value: ResultValue) -> String {
            switch value {
            case .null: "null"
            case .boolean(let v): v ? "true" : "false"
            case .integer(let v): String(v)
            case .double(let v): v.isFinite ? "\(v)" : "null"
            case .text(let v): jsonQuoted(v)
            }
        }
        let timestamps = result.timestamps.map { "[" + $0.map(String.init).joined(separator: ",") + "]" } ?? "null"
        let values = "[" + result.values.map { "[" + $0.map(cell).joined(separator: ",") + "]" }.joined(separator: ",") + "]"
        return "{\"expressions\":\(strings(result.expressions)),\"column_names\":\(strings(result.columnNames)),"
            + "\"data_types\":\(strings(result.dataTypes)),\"timestamps\":\(timestamps),\"values\":\(values)}"
    }
}
