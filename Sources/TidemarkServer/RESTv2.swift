import Foundation
import TidemarkCore
import TidemarkNet
import TidemarkQuery
import TidemarkStages
import TidemarkStorage
import TidemarkWire

/// IoTDB's REST API v2: `/rest/v2/nonQuery`, `/query`, `/insertTablet`, `/insertRecords`.
/// Decoding runs on the decode stage; inserts go on to route and append, other statements
/// to the query stage. Statement failures are HTTP 200 with IoTDB's `{code, message}`.
enum RESTv2 {
    static let routes = ["/rest/v2/nonQuery", "/rest/v2/query", "/rest/v2/insertTablet", "/rest/v2/insertRecords"]

    /// What the decode stage should do with a REST request.
    enum Plan {
        case answer(HTTPResponse)
        case write(WriteJob)
        /// `weak`: the body asked for `"consistency": "weak"` (any replica may answer).
        case execute(Statement, rowLimit: Int, weak: Bool)
    }

    /// IoTDB's `{code, message}`; a 503 from a full or stopping stage also names the stage,
    /// as the edge's own 503 does, and one from a node that is not the leader names the
    /// leader's client address.
    static func status(_ code: Int, _ message: String, route: String, http: Int = 200, stage: String? = nil,
                       leader: String? = nil) -> HTTPResponse {
        .json(http, "{\"code\":\(code),\"message\":\(jsonQuoted(message))\(jsonField("stage", stage))\(jsonField("leader", leader))}", route: route)
    }

    /// A statement that failed: 503 when sending it again may work (not the leader, busy),
    /// else IoTDB's 200 with the code.
    static func status(_ error: ExecutionError, route: String) -> HTTPResponse {
        status(error.code, error.message, route: route, http: error.isRetryable ? 503 : 200, leader: error.leaderAddress)
    }

    static func success(route: String) -> HTTPResponse { status(200, "SUCCESS_STATUS", route: route) }

    /// The 503 for a stage that refused a request (full, or the node stopping): IoTDB's code
    /// 606 and the stage's name, as the edge's own 503 names `decode`.
    static func refused(by stage: String, _ reason: RejectReason, route: String) -> HTTPResponse {
        status(606, reason == .overloaded ? "stage \(stage) is overloaded; retry later" : "node is shutting down",
               route: route, http: 503, stage: stage)
    }

    static func plan(_ request: HTTPRequest, nowMs: Int64, limits: QueryLimits, respond: @escaping @Sendable (HTTPResponse) -> Void) -> Plan {
        let route = String(request.path)
        guard request.method == "POST" else { return .answer(status(303, "\(route) accepts POST only", route: route, http: 405)) }
        let body: [String: Any]
        do {
            body = try RESTBody.object(request.body)
        } catch {
            return .answer(status(error.code, error.message, route: route, http: 400))
        }
        do {
            switch route {
            case "/rest/v2/nonQuery", "/rest/v2/query":
                guard let sql = body["sql"] as? String else { throw ExecutionError(code: 303, message: "sql is required and must be a string") }
                let rowLimit = try (body["row_limit"]).map { value -> Int in
                    guard let limit = value as? Int, limit > 0 else { throw ExecutionError(code: 303, message: "row_limit must be a positive integer") }
                    return limit
                } ?? limits.rowsDefault
                let statement: Statement
                do { statement = try Parser.parse(sql, nowMs: nowMs, statementBytesMax: limits.statementBytesMax,
                                                       nestingDepthMax: limits.nestingDepthMax) } catch { throw ExecutionError(code: 700, message: "\(error)") }
                if route == "/rest/v2/query" && !statement.isQuery {
                    throw ExecutionError(code: 301, message: "/rest/v2/query runs queries only; use /rest/v2/nonQuery")
                }
                if route == "/rest/v2/nonQuery" && statement.isQuery {
                    throw ExecutionError(code: 301, message: "/rest/v2/nonQuery cannot run a query; use /rest/v2/query")
                }
                let weak: Bool
                switch body["consistency"] {
                case nil: weak = false
                case let text as String where ["strong", "linearizable"].contains(text.lowercased()): weak = false
                case let text as String where text.lowercased() == "weak": weak = true
                default: throw ExecutionError(code: 303, message: "consistency must be \"strong\" (the default) or \"weak\"")
                }
                return .execute(statement, rowLimit: rowLimit, weak: weak)
            case "/rest/v2/insertTablet":
                return .write(job(try RESTBody.tabletRows(body), route: route, respond: respond))
            default:
                return .write(job(try RESTBody.recordRows(body), route: route, respond: respond))
            }
        } catch let error as ExecutionError {
            return .answer(status(error.code, error.message, route: route))
        } catch let error as RESTBodyError {
            return .answer(status(error.code, error.message, route: route))
        } catch {
            return .answer(status(305, "\(error)", route: route))
        }
    }

    /// A write job whose outcome is answered as an `ExecutionStatus`.
    static func job(_ rows: [RowWrite], route: String, respond: @escaping @Sendable (HTTPResponse) -> Void) -> WriteJob {
        WriteJob(rows: RowBatch(rows), units: [WriteJob.Unit(line: 1, rows: 0..<rows.count)], decodeErrors: []) { outcome in
            if let failure = outcome.failure {
                respond(outcome.failureStatus == 503 ? status(606, failure, route: route, http: 503, stage: outcome.stage, leader: outcome.leaderAddress)
                                                     : status(305, failure, route: route))
            } else if let refused = outcome.refused.first {
                respond(status(614, refused.message, route: route))
            } else {
                respond(success(route: route))
            }
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
            case .write(let rows): submitWrite(job(rows, route: route, respond: respond))
            case .rows(let result): respond(.json(200, json(result), route: route))
            }
        } catch {
            respond(status(error, route: route))
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
