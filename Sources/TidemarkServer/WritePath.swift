import Foundation
import TidemarkConsensus
import TidemarkCore
import TidemarkNet
import TidemarkStages
import TidemarkStorage
import TidemarkWire

/// A client write on its way from decode through route to append: points grouped by the
/// request line (or record) they came from, and how to answer.
public struct WriteJob: Sendable {
    /// One all-or-nothing unit of the request (a line-protocol line, a REST record).
    public struct Unit: Sendable {
        public var line: Int
        public var points: [PointWrite]
    }

    public var units: [Unit]
    /// Problems found while decoding (syntax), by line.
    public var decodeErrors: [LineError]
    /// Called once, from the append stage, with what happened.
    public var finish: @Sendable (WriteOutcome) -> Void
}

/// What a write did: units refused (with why) and, if nothing could be written, the error.
public struct WriteOutcome: Sendable {
    public var refused: [LineError]
    public var failure: String?
    /// The HTTP status a failure maps to: 503 when a stage refused the work, else 500.
    public var failureStatus = 500

    public init(refused: [LineError], failure: String? = nil, failureStatus: Int = 500) {
        self.refused = refused
        self.failure = failure
        self.failureStatus = failureStatus
    }

    /// A stage refused the job: nothing of it was applied.
    static func refusedBy(_ stage: String, _ reason: RejectReason) -> WriteOutcome {
        WriteOutcome(refused: [], failure: reason == .overloaded ? "stage \(stage) is overloaded; retry later" : "node is shutting down",
                     failureStatus: 503)
    }
}

/// The append stage's work: type-check each job's units against the schema, then propose
/// the good points of a whole batch of jobs as one entry to the region's consensus group —
/// one log append and one fsync for many client requests (group commit).
struct WriteApplier: Sendable {
    let engine: StorageEngine
    let consensus: Consensus
    let group: GroupID

    func apply(_ jobs: [WriteJob]) {
        var checked: [(job: WriteJob, points: [PointWrite], refused: [LineError])] = []
        for job in jobs {
            let (points, refused) = typeCheck(job)
            checked.append((job, points, job.decodeErrors + refused))
        }
        // Group jobs so one engine write never exceeds its point limit.
        var start = 0
        while start < checked.count {
            var end = start
            var total = 0
            while end < checked.count && (end == start || total + checked[end].points.count <= engine.options.writePointsMax) {
                total += checked[end].points.count
                end += 1
            }
            write(Array(checked[start..<end]))
            start = end
        }
    }

    private func write(_ batch: [(job: WriteJob, points: [PointWrite], refused: [LineError])]) {
        let finish: @Sendable (String?) -> Void = { failure in
            for entry in batch {
                entry.job.finish(WriteOutcome(refused: entry.refused.sorted { $0.line < $1.line }, failure: failure))
            }
        }
        let prepared: PreparedWrite?
        do {
            prepared = try engine.prepareWrite(batch.flatMap(\.points))
        } catch {
            // One job's points (e.g. two jobs creating one series with two types) can sink the
            // batch: write each job on its own so the others still land.
            guard batch.count > 1 else { return finish("\(error)") }
            for entry in batch { write([entry]) }
            return
        }
        guard let prepared else { return finish(nil) }
        consensus.write(group, Proposal(data: prepared.record, local: prepared)) { result in
            switch result {
            case .success: finish(nil)
            case .failure(let error): finish("\(error)")
            }
        }
    }

    /// The points of units whose every value fits its series' type (existing, or created by
    /// an earlier unit of the job); the other units are refused whole.
    private func typeCheck(_ job: WriteJob) -> ([PointWrite], [LineError]) {
        engine.withSeriesTypes { existing in
            // Types of series this job creates; existing series are looked up first, so the
            // usual point costs one lookup.
            var pending: [String: DataType] = [:]
            var points: [PointWrite] = []
            var refused: [LineError] = []
            units: for unit in job.units {
                var creates = false
                for point in unit.points {
                    let known = existing(point.path)
                    if known == nil { creates = true }
                    if let expected = known ?? pending[point.path], expected != point.value.dataType {
                        refused.append(LineError(line: unit.line, column: 1,
                                                 reason: "\(point.path) is \(expected), got a \(point.value.dataType) value"))
                        continue units
                    }
                }
                if creates {
                    for point in unit.points where existing(point.path) == nil { pending[point.path] = point.value.dataType }
                }
                points += unit.points
            }
            return (points, refused)
        }
    }
}

/// `POST /write?db=…&precision=…`: InfluxDB line protocol (runs on the decode stage).
struct LineProtocolWrite {
    static let errorsReportedMax = 20

    /// The job for the append stage, or the response to send right away.
    enum Decoded {
        case job(WriteJob)
        case answer(HTTPResponse)
    }

    static func decode(_ request: HTTPRequest, nowMs: Int64, writePointsMax: Int,
                       finish: @escaping @Sendable (HTTPResponse) -> Void) -> Decoded {
        let query = QueryString(request.target)
        guard let database = query["db"], !database.isEmpty else {
            return .answer(influxError(400, "database is required (add ?db=NAME)"))
        }
        guard let precision = WritePrecision(rawValue: query["precision"] ?? "ns") else {
            return .answer(influxError(400, "precision must be one of ns, us, ms, s"))
        }
        let parsed = LineProtocol.parse(request.body)
        var errors = parsed.errors
        var units: [WriteJob.Unit] = []
        var points = 0
        for line in parsed.points {
            do {
                let writes = try LineProtocolMapping.points(of: line, database: database, precision: precision, nowMs: nowMs)
                points += writes.count
                units.append(WriteJob.Unit(line: line.line, points: writes))
            } catch let error as LineError {
                errors.append(error)
            } catch {
                errors.append(LineError(line: line.line, column: 1, reason: "\(error)"))
            }
        }
        guard points <= writePointsMax else {
            return .answer(influxError(413, "request has \(points) points; write_points_max is \(writePointsMax)"))
        }
        return .job(WriteJob(units: units, decodeErrors: errors) { outcome in finish(response(outcome)) })
    }

    /// 204 when every line was written; 400 naming the bad lines otherwise (good lines are kept).
    static func response(_ outcome: WriteOutcome) -> HTTPResponse {
        if let failure = outcome.failure { return influxError(outcome.failureStatus, "write failed: \(failure)") }
        guard !outcome.refused.isEmpty else { return HTTPResponse(status: 204, route: "/write") }
        let listed = outcome.refused.prefix(errorsReportedMax).map(\.description).joined(separator: "; ")
        let more = outcome.refused.count > errorsReportedMax ? "; and \(outcome.refused.count - errorsReportedMax) more" : ""
        return influxError(400, "partial write: \(outcome.refused.count) line(s) dropped: \(listed)\(more)")
    }

    static func influxError(_ status: Int, _ message: String) -> HTTPResponse {
        .json(status, "{\"error\":\(jsonQuoted(message))}", route: "/write")
    }
}
