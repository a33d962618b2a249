import TidemarkIO
import Foundation
import Logging
import Synchronization
import Testing
import TidemarkCore
import TidemarkNet
import TidemarkQuery
import TidemarkStages
import TidemarkStorage
import TidemarkTestSupport
@testable import TidemarkServer

private func basic(_ user: String, _ password: String) -> String {
    "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
}

private func request(_ target: String, authorization: String?, body: String? = nil) -> String {
    var text = "\(body == nil ? "GET" : "POST") \(target) HTTP/1.1\r\nHost: t\r\n"
    if let authorization { text += "Authorization: \(authorization)\r\n" }
    if let body { text += "Content-Length: \(body.utf8.count)\r\n" }
    return text + "\r\n" + (body ?? "")
}

/// A stand-in for the decode stage: it answers every request with the caller the edge
/// admitted it as, on its own thread, as the real decode stage would.
private struct AnswerWithCaller: HTTPRequestHandler {
    let authenticator: Authenticator
    let decode: Stage<HTTPExchange>

    func admit(_ head: HTTPRequest, client: String, decision: HTTPAdmissionDecision) -> Admission {
        authenticator.admit(head, client: client, decision: decision)
    }

    func handle(_ request: HTTPRequest, responder: HTTPResponder, whenSpace: @escaping @Sendable () -> Void) -> HandOff {
        _ = decode.submit(HTTPExchange(request: request, responder: responder), whenSpace: whenSpace)
        return .accepted
    }
}

/// Time for the limiter, moved by the test.
private final class TestClock: Sendable {
    private let ms = Mutex<UInt64>(1_000)
    var nowMs: UInt64 { ms.withLock { $0 } }
    func advance(_ delta: UInt64) { ms.withLock { $0 += delta } }
}

/// The real edge and authenticator, with a one-thread decode stage and the auth stage's
/// worker held at `gate` before each check.
private final class AuthEdge {
    let users: UserStore
    let authenticator: Authenticator
    let harness: EdgeHarness
    let decode: Stage<HTTPExchange>
    let clock = TestClock()

    init(settings: AuthSettings, gate: Gate? = nil, http: HTTPSettings = HTTPSettings()) throws {
        users = try UserStore(directory: try temporaryDirectory("users"), logger: Logger(label: "test"))
        let stage = Authenticator.makeStage(settings, before: { gate?.pass() })
        let clock = clock
        authenticator = Authenticator(users: users, settings: settings, stage: stage, nowMs: { clock.nowMs })
        decode = Stage(name: "decode", settings: StageSettings(threads: 1, queueCapacity: 64, batchSize: 8, overflow: .block, inline: false)) { batch in
            for exchange in batch {
                exchange.responder.respond(.json(200, jsonQuoted(exchange.request.admittedAs ?? "-"), route: "/t"))
            }
        }
        harness = try EdgeHarness(settings: http, requestHandler: AnswerWithCaller(authenticator: authenticator, decode: decode))
    }

    var hashes: UInt64 { users.hashesComputed.load(ordering: .relaxed) }

    func stop() -> Bool {
        let stopped = harness.stop()
        _ = authenticator.stage.drain(deadlineNs: monotonicNowNs() + 10_000_000_000)
        _ = decode.drain(deadlineNs: monotonicNowNs() + 10_000_000_000)
        users.close()
        return stopped
    }
}

@Suite(.serialized) struct AuthAttackTests {
    /// Issue 27, item 6: wrong passwords used to be hashed on the decode thread, so /ping and
    /// everyone's requests waited behind them. Here the auth stage's worker is held before
    /// its first hash while wrong-password requests queue up; /ping and a caller whose
    /// credentials are remembered are answered all the same, and no hash has run yet.
    @Test func pingAndRememberedCallersAreServedWhileWrongPasswordsWaitForTheAuthStage() throws {
        var settings = AuthSettings()
        settings.failedLoginsPerClientMax = 1000
        settings.failedLoginsPerUserMax = 1000
        let gate = Gate()
        let edge = try AuthEdge(settings: settings, gate: gate)
        #expect(edge.users.verify(header: TestHTTPClient.rootAuthorization, name: "root", password: "root"))
        let hashesBefore = edge.hashes

        let attackers = try (0..<4).map { _ in try edge.harness.client() }
        for (index, attacker) in attackers.enumerated() {
            try attacker.send((0..<8).map { request("/stages", authorization: basic("root", "wrong-\(index)-\($0)")) }.joined())
        }
        #expect(gate.awaitEntry())  // the auth worker holds the first check; the others wait in its queue

        let other = try edge.harness.client()
        #expect(try other.request("GET", "/ping", headers: ["Authorization": ""]).status == 200)
        let root = try other.request("GET", "/stages")
        #expect(root.status == 200 && root.text == "\"root\"")
        #expect(edge.hashes == hashesBefore)  // both answered while no attacker's hash had run

        gate.release(32)
        for attacker in attackers {
            for _ in 0..<8 {
                let answer = try attacker.readResponse()
                #expect(answer.status == 401 && answer.text == #"{"code":801,"message":"WRONG_LOGIN_PASSWORD"}"#)
            }
        }
        #expect(edge.hashes == hashesBefore + 32)
        #expect(edge.stop())
    }

    /// Item 6: past the limit a client's logins get 429 without a hash; the window's end lets it try again.
    @Test func failedLoginsPastTheLimitGet429WithoutAHash() throws {
        var settings = AuthSettings()
        settings.failedLoginsPerClientMax = 3
        settings.failedLoginWindowMs = 60_000
        let edge = try AuthEdge(settings: settings)
        let client = try edge.harness.client()
        let before = edge.hashes
        for attempt in 0..<3 {
            #expect(try client.request("GET", "/stages", headers: ["Authorization": basic("root", "guess\(attempt)")]).status == 401)
        }
        let limited = try client.request("GET", "/stages", headers: ["Authorization": basic("alice", "guess")])
        #expect(limited.status == 429)
        #expect(limited.headers["retry-after"] == "60")
        #expect(limited.text.contains("too many failed logins"))
        #expect(edge.hashes == before + 3)
        // Remembered credentials are not logins: they still work from the limited address.
        #expect(edge.users.verify(header: TestHTTPClient.rootAuthorization, name: "root", password: "root"))
        #expect(try client.request("GET", "/stages").text == "\"root\"")
        edge.clock.advance(60_000)
        #expect(try client.request("GET", "/stages", headers: ["Authorization": basic("root", "again")]).status == 401)
        #expect(edge.authenticator.stats.limited.load(ordering: .relaxed) == 1)
        #expect(edge.stop())
    }

    /// A name no user can have (too long, or with other characters than letters, digits and
    /// underscores) used to go into the limiter as it came, up to a header's 16 KiB per entry,
    /// and cost a hash. It gets 401 at once, with neither.
    @Test func impossibleNamesGet401WithoutAHashOrALimiterEntry() throws {
        var settings = AuthSettings()
        settings.failedLoginsPerClientMax = 1
        let edge = try AuthEdge(settings: settings)
        let client = try edge.harness.client()
        let before = edge.hashes
        for name in [String(repeating: "n", count: 9 * 1024), String(repeating: "a", count: 65), "bad name", "9lives", ""] {
            let answer = try client.request("GET", "/stages", headers: ["Authorization": basic(name, "guess")])
            #expect(answer.status == 401 && answer.text == #"{"code":801,"message":"WRONG_LOGIN_PASSWORD"}"#)
        }
        #expect(edge.hashes == before)
        #expect(edge.authenticator.limiterEntries == 0)
        // A possible name is still a login: hashed, and counted against the client.
        #expect(try client.request("GET", "/stages", headers: ["Authorization": basic("nobody", "guess")]).status == 401)
        #expect(edge.hashes == before + 1)
        #expect(edge.authenticator.limiterEntries == 2)
        #expect(try client.request("GET", "/stages", headers: ["Authorization": basic("nobody", "again")]).status == 429)
        #expect(edge.stop())
    }

    /// The decode stage used to check credentials itself, with a hash on its own thread,
    /// when a request came without the caller the edge admitted it as. No path does that
    /// today; if one ever did, it gets 500 and no hash, so PBKDF2 cannot come back to the
    /// decode thread unnoticed.
    @Test func aRequestTheEdgeDidNotAdmitGets500WithoutAHash() throws {
        let directory = try temporaryDirectory("dispatch")
        let users = try UserStore(directory: directory + "/users", logger: Logger(label: "test"))
        defer { users.close() }
        let storage = StorageHealth(logger: Logger(label: "test"))
        let engine = try StorageEngine(directory: directory + "/engine")
        defer { engine.close() }
        let routes = AdminRoutes(stages: { [] }, storage: { engine.stats }, health: { NodeHealth.read(dataDir: directory, storage: storage, listingQuarantine: $0) },
                                 http: HTTPMetrics(), cluster: { nil }, meta: { "\"meta\":null" }, startedNs: 0, startTimeSeconds: 0)
        let dispatcher = Dispatcher(admin: routes, executor: StatementExecutor(engine: engine), writeLimits: EngineOptions(),
                                    queryLimits: QueryLimits(), stages: StagesBox(), users: users, clusterAnswer: { _, _ in nil }, logger: Logger(label: "test"))
        let answers = Mutex<[HTTPResponse]>([])
        func dispatch(_ request: HTTPRequest) -> HTTPResponse? {
            dispatcher.handle(request) { answer in answers.withLock { $0.append(answer) } }
            return answers.withLock { $0.popLast() }  // these routes answer on the calling thread
        }
        let before = users.hashesComputed.load(ordering: .relaxed)

        let unadmitted = HTTPRequest(method: "GET", target: "/stages", headers: [("authorization", basic("root", "root"))])
        let refused = try #require(dispatch(unadmitted))
        #expect(refused.status == 500)
        #expect(users.hashesComputed.load(ordering: .relaxed) == before)

        var admitted = unadmitted
        admitted.admittedAs = "root"
        #expect(try #require(dispatch(admitted)).status == 200)
        #expect(try #require(dispatch(HTTPRequest(method: "GET", target: "/ping"))).status == 200)  // open routes need no caller
        #expect(users.hashesComputed.load(ordering: .relaxed) == before)
    }

    /// Item 7: a name that does not exist costs the same hash as a wrong password of one that
    /// does, so the answer takes as long and does not tell which names exist.
    @Test func unknownUsersCostTheSameHashAsKnownOnes() throws {
        let users = try UserStore(directory: try temporaryDirectory("users"), logger: Logger(label: "test"))
        defer { users.close() }
        // Counting hashes alone would pass with a dummy of one round: count the rounds too.
        func work() -> (hashes: UInt64, rounds: UInt64) {
            (users.hashesComputed.load(ordering: .relaxed), users.hashRoundsComputed.load(ordering: .relaxed))
        }
        let start = work()
        guard case .wrongPassword = users.authenticate(basic("root", "wrong")) else { Issue.record("root:wrong was accepted"); return }
        let afterKnown = work()
        guard case .wrongPassword = users.authenticate(basic("nobody", "wrong")) else { Issue.record("nobody was accepted"); return }
        let afterUnknown = work()
        #expect(afterKnown.hashes - start.hashes == 1 && afterUnknown.hashes - afterKnown.hashes == 1)
        let knownRounds = afterKnown.rounds - start.rounds, unknownRounds = afterUnknown.rounds - afterKnown.rounds
        #expect(knownRounds == UInt64(UserStore.rounds) && unknownRounds == knownRounds)
        guard case .user("root") = users.authenticate(basic("root", "root")) else { Issue.record("root:root was refused"); return }
    }

    /// Item 9: credentials are checked from the head, so a refused request's body is never
    /// read or buffered: the answer comes without it, the connection closes, and the node's
    /// body budget never moves.
    @Test func refusedRequestsAreAnsweredBeforeTheirBodyAndClosed() throws {
        let gate = Gate()
        let edge = try AuthEdge(settings: AuthSettings(), gate: gate)
        let metrics = edge.harness.server.metrics
        let head = "POST /rest/v2/query HTTP/1.1\r\nHost: t\r\nContent-Length: 33554431\r\n"

        let anonymous = try edge.harness.client()
        try anonymous.send(head + "\r\n" + String(repeating: "x", count: 1000))
        let missing = try anonymous.readResponse()
        #expect(missing.status == 401 && missing.headers["connection"] == "close")
        #expect(try anonymous.readsEndOfStream())

        let guesser = try edge.harness.client()
        try guesser.send(head + "Authorization: \(basic("root", "wrong"))\r\n\r\n" + String(repeating: "x", count: 1000))
        #expect(gate.awaitEntry())
        #expect(metrics.bodyBytesInFlight.load(ordering: .relaxed) == 0)  // nothing reserved while the check runs
        gate.release()
        let wrong = try guesser.readResponse()
        #expect(wrong.status == 401 && wrong.headers["connection"] == "close")
        #expect(try guesser.readsEndOfStream())
        #expect(metrics.bodyBytesInFlight.load(ordering: .relaxed) == 0)

        // Without a body there is nothing to skip: the connection stays.
        let keeper = try edge.harness.client()
        let refused = try keeper.request("GET", "/stages", headers: ["Authorization": ""])
        #expect(refused.status == 401 && refused.headers["connection"] == nil)
        #expect(try keeper.request("GET", "/ping", headers: ["Authorization": ""]).status == 200)
        #expect(edge.stop())
    }

    /// Open routes need no credentials, so they take no body: a POST /ping declaring 32 MiB
    /// used to be admitted and reserve all of it from the node's body budget. Now it is
    /// answered from its head, its body unread, and the connection closes.
    @Test func openRoutesRefuseBodiesFromTheHeadWithoutTakingBudget() throws {
        let edge = try AuthEdge(settings: AuthSettings())
        let metrics = edge.harness.server.metrics

        let poster = try edge.harness.client()
        try poster.send("POST /ping HTTP/1.1\r\nHost: t\r\nContent-Length: 33554431\r\n\r\n" + String(repeating: "x", count: 1000))
        let notAllowed = try poster.readResponse()
        #expect(notAllowed.status == 405 && notAllowed.headers["connection"] == "close")
        #expect(notAllowed.headers["allow"] == "GET, HEAD")
        #expect(try poster.readsEndOfStream())
        #expect(metrics.bodyBytesInFlight.load(ordering: .relaxed) == 0)

        let chunked = try edge.harness.client()
        try chunked.send("GET /metrics HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n" + String(repeating: "y", count: 16) + "\r\n")
        let tooLarge = try chunked.readResponse()
        #expect(tooLarge.status == 413 && tooLarge.headers["connection"] == "close")
        #expect(try chunked.readsEndOfStream())
        #expect(metrics.bodyBytesInFlight.load(ordering: .relaxed) == 0)

        // Without a body an open route is served as before, with no credentials.
        let prober = try edge.harness.client()
        #expect(try prober.request("GET", "/ping", headers: ["Authorization": ""]).text == "\"-\"")
        #expect(try prober.request("POST", "/ping", headers: ["Authorization": "", "Content-Length": "0"]).text == "\"-\"")
        #expect(edge.stop())
    }
}

@Suite struct LoginLimiterTests {
    @Test func limitsPerClientAndPerUserCountingChecksInFlight() {
        var limiter = LoginLimiter(perClientMax: 3, perUserMax: 2, windowMs: 1000, entriesMax: 100)
        // Two checks in flight for root fill its per-user room before either has failed.
        #expect(limiter.begin(client: "a", user: "root", nowMs: 0) == nil)
        #expect(limiter.begin(client: "b", user: "root", nowMs: 0) == nil)
        #expect(limiter.begin(client: "c", user: "root", nowMs: 0) == 1000)
        limiter.end(client: "a", user: "root", failed: true, nowMs: 10)
        limiter.end(client: "b", user: "root", failed: true, nowMs: 20)
        #expect(limiter.begin(client: "c", user: "root", nowMs: 30) == 980)  // root's window ends at 1010
        #expect(limiter.begin(client: "c", user: "alice", nowMs: 30) == nil)  // other names are not held
        limiter.end(client: "c", user: "alice", failed: false, nowMs: 30)
        // Client a: one failure so far; two more fill its room whatever the names.
        for name in ["x", "y"] {
            #expect(limiter.begin(client: "a", user: name, nowMs: 40) == nil)
            limiter.end(client: "a", user: name, failed: true, nowMs: 40)
        }
        #expect(limiter.begin(client: "a", user: "z", nowMs: 50) != nil)
        #expect(limiter.begin(client: "a", user: "z", nowMs: 1010) == nil)  // a's window has ended
        limiter.cancel(client: "a", user: "z", nowMs: 1010)
        #expect(limiter.begin(client: "c", user: "root", nowMs: 1010) == nil)
    }

    @Test func theTableStaysBoundedAndForgetsEndedWindows() {
        var limiter = LoginLimiter(perClientMax: 5, perUserMax: 5, windowMs: 1000, entriesMax: 4)
        for index in 0..<2 {
            #expect(limiter.begin(client: "c\(index)", user: "u\(index)", nowMs: 0) == nil)
            limiter.end(client: "c\(index)", user: "u\(index)", failed: true, nowMs: 0)
        }
        #expect(limiter.entries.count == 4)
        #expect(limiter.begin(client: "c9", user: "u9", nowMs: 500) == 500)  // full of live entries; the first window ends at 1000
        #expect(limiter.begin(client: "c9", user: "u9", nowMs: 1000) == nil)  // ended windows are dropped
        limiter.end(client: "c9", user: "u9", failed: false, nowMs: 1000)
        #expect(limiter.entries.isEmpty)
    }

    /// Issue 27 review: a full table used to be scanned whole (65,536 entries by default) on
    /// every login while it stayed full. Now ended windows are dropped from the front of a
    /// queue in the order they end, each looked at once, and a full table of live entries
    /// refuses at once.
    @Test func aFullTableForgetsWindowsInTheOrderTheyEndLookingAtEachOnce() {
        var limiter = LoginLimiter(perClientMax: 3, perUserMax: 3, windowMs: 1000, entriesMax: 1000)
        for index in 0..<500 {
            let now = UInt64(index)
            #expect(limiter.begin(client: "c\(index)", user: "u\(index)", nowMs: now) == nil)
            limiter.end(client: "c\(index)", user: "u\(index)", failed: true, nowMs: now)
        }
        #expect(limiter.entries.count == 1000 && limiter.openWindows == 1000)

        // Full of live entries: new keys are refused until the first window ends, at 1000,
        // and no refusal looks at the table.
        for attempt in 0..<10_000 {
            #expect(limiter.begin(client: "new\(attempt)", user: "x", nowMs: 600) == 400)
        }
        #expect(limiter.windowsExamined == 0)
        // Keys already in the table still count: c1 and u1 have room for two more failures.
        for _ in 0..<2 {
            #expect(limiter.begin(client: "c1", user: "u1", nowMs: 600) == nil)
            limiter.end(client: "c1", user: "u1", failed: true, nowMs: 600)
        }
        #expect(limiter.begin(client: "c1", user: "u1", nowMs: 600) == 401)  // their window ends at 1001

        // At 1001 the windows of c0/u0 and c1/u1 have ended: four entries are free again.
        #expect(limiter.begin(client: "late", user: "late", nowMs: 1001) == nil)
        limiter.end(client: "late", user: "late", failed: true, nowMs: 1001)
        #expect(limiter.entries.count == 998 && limiter.entries[.client("c1")] == nil)
        #expect(limiter.windowsExamined == 4)

        // New limits apply to new keys as to old ones.
        for attempt in 0..<2 {
            #expect(limiter.begin(client: "late", user: "late\(attempt)", nowMs: 1100) == nil)
            limiter.end(client: "late", user: "late\(attempt)", failed: true, nowMs: 1100)
        }
        #expect(limiter.begin(client: "late", user: "other", nowMs: 1100) == 901)  // late's window ends at 2001

        // Every window has ended by 2101: each was looked at once, and the table is empty.
        #expect(limiter.begin(client: "c0", user: "u0", nowMs: 2101) == nil)
        limiter.cancel(client: "c0", user: "u0", nowMs: 2101)
        #expect(limiter.entries.isEmpty && limiter.openWindows == 0)
        #expect(limiter.windowsExamined == 1000 + 4)  // the first 1000, late's client and user, late0 and late1
    }
}

/// The users a region image carries come from another node: they are checked whole before
/// anything is logged or replaced.
@Suite struct UserImageTests {
    @Test func anImageNamingAUserTwiceOrWithoutAHashChangesNothing() throws {
        let source = try UserStore(directory: try temporaryDirectory("users-source"), logger: Logger(label: "test"))
        try source.create(name: "bob", password: "bobpass1")
        let image = source.exportImage()
        #expect(image.first == 2)  // root and bob, each length-prefixed after the count

        let target = try UserStore(directory: try temporaryDirectory("users-target"), logger: Logger(label: "test"))
        // The same two records twice: bob and root named twice.
        let twice = [4] + Array(image.dropFirst()) + Array(image.dropFirst())
        #expect(throws: CorruptDataError.self) { try target.install(image: twice, index: 10) }
        #expect(target.list() == ["root"] && target.appliedIndex == 0)
        // A record without a hash is a drop, not a user an image may hold.
        var ghost = ByteWriter()
        ghost.write(varint: 1)
        ghost.write(lengthPrefixed: UserStore.encode(UserStore.User(name: "ghost", salt: [], hash: [], rounds: 0, grants: [:]), index: 0))
        #expect(throws: CorruptDataError.self) { try target.install(image: ghost.bytes, index: 10) }
        #expect(target.list() == ["root"] && target.appliedIndex == 0)
        // The image as it came installs whole.
        try target.install(image: image, index: 10)
        #expect(target.list() == ["bob", "root"] && target.appliedIndex == 10)
    }
}
