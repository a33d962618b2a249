import Foundation
import TidemarkCluster
import TidemarkConsensus
import TidemarkCore
import TidemarkNet
import TidemarkStages
import TidemarkStorage
import TidemarkWire

/// A client write on its way from decode through route to append: rows grouped by the
/// request line (or request) they came from, and how to answer.
public struct WriteJob: Sendable {
    /// One all-or-nothing unit of the request (a line-protocol line, a REST request): its
    /// rows in the job's `rows` (one batch for the whole request, not one per line).
    public struct Unit: Sendable {
        public var line: Int
        public var rows: Range<Int>

        public init(line: Int, rows: Range<Int>) {
            self.line = line
            self.rows = rows
        }
    }

    public var rows: RowBatch
    public var units: [Unit]
    /// Problems found while decoding (syntax), by line.
    public var decodeErrors: [LineError]
    /// Called once, from the append stage, with what happened.
    public var finish: @Sendable (WriteOutcome) -> Void
    /// Set on a part a coordinator sent here: the rows go to that group only.
    public var pin: WritePin?
    /// Until when (monotonic ns) a coordinator may route the job to its group's leader, once
    /// it started to (0: not yet): a job sent round again while its group elects keeps it.
    public var routeDeadlineNs: UInt64 = 0

    public init(rows: RowBatch, units: [Unit], decodeErrors: [LineError], finish: @escaping @Sendable (WriteOutcome) -> Void) {
        precondition(units.allSatisfy { $0.rows.upperBound <= rows.rowCount }, "units name rows of the job")
        self.rows = rows
        self.units = units
        self.decodeErrors = decodeErrors
        self.finish = finish
    }

    /// Values in the job.
    public var pointCount: Int { rows.pointCount }

    /// Why `rows` is too large to be one write, if it is; checked on the decode stage before
    /// the schema is looked at.
    static func tooLarge(_ rows: RowBatch, limits: EngineOptions) -> String? {
        if rows.pointCount > limits.writePointsMax {
            return "request has \(rows.pointCount) points; write_points_max is \(limits.writePointsMax)"
        }
        if rows.namesMoreSeries(than: limits.seriesPerWriteMax) {
            return "request names more than series_per_write_max (\(limits.seriesPerWriteMax)) series"
        }
        return nil
    }
}

/// A coordinator's part of a write, received for one region group (`WritePart`).
public struct WritePin: Sendable {
    public var group: GroupID
    public var hops: UInt8
    public var metaIndex: UInt64
}

/// What a write did: units refused (with why) and, if nothing could be written, the error.
public struct WriteOutcome: Sendable {
    public var refused: [LineError]
    public var failure: String?
    /// The HTTP status a failure maps to: 503 when a stage refused the work, else 500.
    public var failureStatus = 500
    /// The stage that refused the work, when one did (named in the 503 body).
    public var stage: String?
    /// The leader's client address, when this node is not the leader (named in the 503 body).
    public var leaderAddress: String?
    /// The leader's node ID, when this node is not the leader (where a coordinator retries).
    public var leaderNode: UInt64?
    /// Set when this node holds no replica of a coordinator's part's group: its route version.
    public var wrongGroupVersion: UInt64?

    public init(refused: [LineError], failure: String? = nil, failureStatus: Int = 500) {
        self.refused = refused
        self.failure = failure
        self.failureStatus = failureStatus
    }

    /// The group did not take the job here (not the leader, busy): nothing of it was applied;
    /// 503, naming the leader when known.
    static func unavailable(_ refusal: LeaderHints.Refusal, refused: [LineError]) -> WriteOutcome {
        var outcome = WriteOutcome(refused: refused, failure: refusal.message, failureStatus: 503)
        outcome.leaderAddress = refusal.leaderAddress
        outcome.leaderNode = refusal.leaderNode
        return outcome
    }

    /// A stage refused the job: nothing of it was applied.
    static func refusedBy(_ stage: String, _ reason: RejectReason) -> WriteOutcome {
        var outcome = WriteOutcome(refused: [], failure: reason == .overloaded ? "stage \(stage) is overloaded; retry later" : "node is shutting down",
                                   failureStatus: 503)
        outcome.stage = stage
        return outcome
    }
}

/// The append stage's work for one region: type-check each job's units against its schema,
/// then propose the good points of a whole batch of jobs as one entry to the region's
/// consensus group — one log append and one fsync for many client requests (group commit).
struct GroupWriter: Sendable {
    let engine: StorageEngine
    let consensus: Consensus
    let group: GroupID
    let hints: LeaderHints

    init(_ region: LocalRegion, hints: LeaderHints) {
        engine = region.engine
        consensus = region.consensus
        group = region.group
        self.hints = hints
    }

    /// Jobs whose good points go in one entry, with the units each job had refused.
    private struct Batch {
        var write = GroupedWrite()
        var members: [(job: WriteJob, refused: [LineError])] = []
    }

    /// The entries to propose for `jobs` (the caller proposes them, with other groups' in one
    /// `write(batch:)`); jobs that cannot go on are answered here.
    func apply(_ jobs: [WriteJob]) -> [GroupWrite] {
        // Only the leader takes writes: a follower would create schema for points it cannot write.
        let leader = consensus.leader(of: group)
        guard leader == consensus.nodeID else {
            let refusal = hints.refusal(.notLeader(group, leaderHint: leader))
            for job in jobs { job.finish(.unavailable(refusal, refused: job.decodeErrors)) }
            return []
        }
        // Checked under one schema lock; proposed after it is released (apply needs it).
        return engine.withSeriesLookup({ lookup in batches(jobs, lookup: &lookup) }).flatMap { propose($0) }
    }

    /// The jobs in batches of at most `writePointsMax` points (a bigger job goes alone), each
    /// unit refused whole when a value does not fit its series' type.
    private func batches(_ jobs: [WriteJob], lookup: inout SeriesLookup) -> [Batch] {
        var batches: [Batch] = []
        var current = Batch()
        for job in jobs {
            let jobPoints = job.pointCount
            if !current.members.isEmpty && current.write.pointCount + jobPoints > engine.options.writePointsMax {
                batches.append(current)
                current = Batch()
            }
            current.members.append((job, check(job, into: &current.write, lookup: &lookup)))
        }
        if !current.members.isEmpty { batches.append(current) }
        return batches
    }

    /// Adds the job's units to `write`; returns the errors of the units it refused.
    private func check(_ job: WriteJob, into write: inout GroupedWrite, lookup: inout SeriesLookup) -> [LineError] {
        var refused = job.decodeErrors
        for (unit, refusal) in write.add(job.rows, units: job.units.map(\.rows), lookup: &lookup) {
            refused.append(LineError(line: job.units[unit].line, column: 1, message: refusal.description))
        }
        return refused.sorted { $0.line < $1.line }
    }

    /// 400 for what the client sent (a path or type the schema refuses, a write too big: sending
    /// it again cannot help), 500 for what went wrong here.
    private static func status(of error: Error) -> Int {
        switch error {
        case EngineError.schema, EngineError.typeMismatch: 400
        case EngineError.tooLarge: 413
        default: 500
        }
    }

    private func propose(_ batch: Batch) -> [GroupWrite] {
        let finish: @Sendable (String?, Int) -> Void = { failure, status in
            for member in batch.members { member.job.finish(WriteOutcome(refused: member.refused, failure: failure, failureStatus: status)) }
        }
        let prepared: PreparedWrite?
        do {
            prepared = try engine.prepareWrite(batch.write)
        } catch EngineError.flushBehind(let sealed) {
            // Nothing of the batch was written; every job gets the same answer.
            finish("\(EngineError.flushBehind(sealed: sealed))", 503)
            return []
        } catch {
            // One job's points (a series limit, a missing series with auto-create off) can
            // sink the batch: write each job on its own so the others still land.
            guard batch.members.count > 1 else {
                finish("\(error)", Self.status(of: error))
                return []
            }
            return batch.members.flatMap { member in
                var alone = Batch()
                alone.members = [(member.job, engine.withSeriesLookup { check(member.job, into: &alone.write, lookup: &$0) })]
                return propose(alone)
            }
        }
        guard let prepared else {
            finish(nil, 500)
            return []
        }
        let hints = hints
        let proposal = Proposal(data: prepared.record, local: prepared, refusalImpossible: prepared.createsNoSeries)
        return [GroupWrite(group: group, proposal: proposal) { result in
            switch result {
            case .success: finish(nil, 500)
            // Not the leader (yet), or busy: 503, the client retries (here or at the leader named).
            case .failure(let error) where error.isRetryable:
                let refusal = hints.refusal(error)
                for member in batch.members { member.job.finish(.unavailable(refusal, refused: member.refused)) }
            case .failure(let error): finish("\(error)", 500)
            }
        }]
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

    static func decode(_ request: HTTPRequest, nowMs: Int64, limits: EngineOptions,
                       finish: @escaping @Sendable (HTTPResponse) -> Void) -> Decoded {
        let query = QueryString(request.target)
        guard let database = query["db"], !database.isEmpty else {
            return .answer(influxError(400, "database is required (add ?db=NAME)"))
        }
        guard let precision = WritePrecision(rawValue: query["precision"] ?? "ns") else {
            return .answer(influxError(400, "precision must be one of ns, us, ms, s"))
        }
        var mappingErrors: [LineError] = []
        var rows = RowBatch()
        var units: [WriteJob.Unit] = []
        var rowCache = LineProtocolMapping.RowCache()
        let parseErrors = LineProtocol.forEachPoint(in: request.body, fieldsPerLineMax: limits.fieldsPerLineMax) { line in
            do {
                try LineProtocolMapping.append(line, database: database, precision: precision, nowMs: nowMs, to: &rows, cache: &rowCache)
                units.append(WriteJob.Unit(line: line.line, rows: (rows.rowCount - 1)..<rows.rowCount))
            } catch let error as LineError {
                mappingErrors.append(error)
            } catch {
                mappingErrors.append(LineError(line: line.line, column: 1, message: "\(error)"))
            }
        }
        let errors = parseErrors + mappingErrors
        if let tooLarge = WriteJob.tooLarge(rows, limits: limits) { return .answer(influxError(413, tooLarge)) }
        return .job(WriteJob(rows: rows, units: units, decodeErrors: errors) { outcome in finish(response(outcome)) })
    }

    /// 204 when every line was written; 400 naming the bad lines otherwise (good lines are kept).
    static func response(_ outcome: WriteOutcome) -> HTTPResponse {
        if let failure = outcome.failure {
            return influxError(outcome.failureStatus, "write failed: \(failure)", stage: outcome.stage, leader: outcome.leaderAddress)
        }
        guard !outcome.refused.isEmpty else { return HTTPResponse(status: 204, route: "/write") }
        let listed = outcome.refused.prefix(errorsReportedMax).map(\.description).joined(separator: "; ")
        let more = outcome.refused.count > errorsReportedMax ? "; and \(outcome.refused.count - errorsReportedMax) more" : ""
        return influxError(400, "partial write: \(outcome.refused.count) line(s) dropped: \(listed)\(more)")
    }

    /// InfluxDB's error body; a 503 also names the stage that refused, or the leader to retry at.
    static func influxError(_ status: Int, _ message: String, stage: String? = nil, leader: String? = nil) -> HTTPResponse {
        .json(status, "{\"error\":\(jsonQuoted(message))\(jsonField("stage", stage))\(jsonField("leader", leader))}", route: "/write")
    }

}
