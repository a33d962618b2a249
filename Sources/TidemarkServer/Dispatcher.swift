import TidemarkCore
import Foundation
import Logging
import TidemarkNet
import TidemarkQuery
import TidemarkStages
import TidemarkStorage

/// The decode stage's handler: decodes each request by route and sends it on — admin
/// routes answered here, writes to route → append, statements to the query stage.
struct Dispatcher: Sendable {
    let admin: AdminRoutes
    let executor: StatementExecutor
    /// Runs weak reads (`"consistency": "weak"`): any replica answers. Nil: the executor
    /// (a one-node cluster holds every region's only replica).
    var weakExecutor: StatementExecutor?
    let writeLimits: EngineOptions
    let queryLimits: QueryLimits
    let stages: StagesBox
    let users: UserStore
    /// Answers the statements about the cluster (from the meta group); nil for others.
    let clusterAnswer: @Sendable (Statement, _ route: String) -> HTTPResponse?
    /// Runs its argument once every acknowledged write is readable here (a standalone group
    /// acknowledges a write once logged and applies it after); by default at once.
    var afterAcknowledgedWrites: @Sendable (@escaping @Sendable () -> Void) -> Void = { $0() }
    /// What follows a statement the engine ran (the meta group's part of a `DROP DATABASE`),
    /// given the engine's answer; returns the answer to send. By default the answer itself.
    var afterEngine: @Sendable (Statement, HTTPResponse) -> HTTPResponse = { $1 }
    let logger: Logger

    func handle(_ exchange: HTTPExchange) {
        let responder = exchange.responder
        handle(exchange.request) { responder.respond($0) }
    }

    /// Decodes and sends on one request; `respond` gets its one answer, from any thread.
    func handle(_ request: HTTPRequest, respond: @escaping @Sendable (HTTPResponse) -> Void) {
        let nowMs = Int64(Date().timeIntervalSince1970 * 1000)
        let path = String(request.path)
        if Access.openRoutes.contains(path) { return respond(admin.respond(to: request)) }

        // Checked at the edge from the head (Authenticator), hashes on the auth stage. A
        // request without a caller is a bug there: checking it here would hash on this thread,
        // the decode stage's, and make every request wait behind a guesser again.
        guard let user = request.admittedAs else {
            logger.error("a request reached the decode stage without being admitted at the edge",
                         metadata: ["method": "\(request.method)", "route": "\(AdminRoutes.label(for: request))"])
            return respond(.error(500, "internal error: the request's credentials were not checked", route: AdminRoutes.label(for: request)))
        }
        if path == "/write" {
            guard request.method == "POST" else { return respond(LineProtocolWrite.influxError(405, "/write accepts POST only")) }
            switch LineProtocolWrite.decode(request, nowMs: nowMs, limits: writeLimits, finish: respond) {
            case .answer(let response): respond(response)
            case .job(let job):
                if let lack = Access.missingForWrite(user, job, in: users) {
                    return respond(LineProtocolWrite.influxError(403, Access.message(lack)))
                }
                stages.submitWrite(job)
            }
        } else if RESTv2.routes.contains(path) {
            switch RESTv2.plan(request, nowMs: nowMs, limits: queryLimits, respond: respond) {
            case .answer(let response): respond(response)
            case .write(let job):
                if let tooLarge = WriteJob.tooLarge(job.rows, limits: writeLimits) {
                    return respond(RESTv2.status(413, tooLarge, route: path, http: 413))
                }
                if let lack = Access.missingForWrite(user, job, in: users) {
                    return respond(RESTv2.status(803, Access.message(lack), route: path, http: 403))
                }
                stages.submitWrite(job)
            case .execute(let statement, let rowLimit, let weak):
                execute(statement, rowLimit: rowLimit, weak: weak, user: user, route: path, respond: respond)
            }
        } else if path == "/flush" {
            // For operators and benchmarks: the REST form of IoTDB's FLUSH statement.
            guard request.method == "POST" else { return respond(RESTv2.status(700, "/flush accepts POST only", route: path, http: 405)) }
            execute(.flush, rowLimit: 0, user: user, route: path, respond: respond)
        } else {
            respond(admin.respond(to: request))
        }
    }

    /// Checks the user's privileges, then runs the statement on the query stage.
    private func execute(_ statement: Statement, rowLimit: Int, weak: Bool = false, user: String, route: String,
                         respond: @escaping @Sendable (HTTPResponse) -> Void) {
        if let lack = Access.missing(user, Access.needs(statement, user: user), in: users) {
            return respond(RESTv2.status(803, Access.message(lack), route: route, http: 403))
        }
        let executor = weak && statement.isQuery ? weakExecutor ?? executor : executor, stages = stages, users = users, clusterAnswer = clusterAnswer, afterEngine = afterEngine
        let task = StageTask {
            if let answer = Access.runUserStatement(statement, users: users, route: route) { return respond(answer) }
            if let answer = clusterAnswer(statement, route) { return respond(answer) }
            RESTv2.execute(statement, rowLimit: rowLimit, executor: executor, route: route,
                           submitWrite: { stages.submitWrite($0) }, respond: { respond(afterEngine(statement, $0)) })
        }
        let submit: @Sendable () -> Void = {
            if case .rejected(let reason) = stages.submitQuery(task) { respond(RESTv2.refused(by: "query", reason, route: route)) }
        }
        // A statement that reads the data waits for the writes acknowledged before it; changes
        // are entries of the same log, after them.
        if statement.isQuery && !statement.isAboutCluster && !statement.isUserStatement { afterAcknowledgedWrites(submit) } else { submit() }
    }
}
