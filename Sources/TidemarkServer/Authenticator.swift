import Foundation
import Synchronization
import TidemarkCore
import TidemarkNet
import TidemarkStages

/// Checks a request's credentials from its head, at the edge, before its body is read.
///
/// Remembered credentials are answered at once on the loop thread. Others are hashed on the
/// auth stage, a small pool with its own bounded queue, so `/ping` and callers whose
/// credentials are remembered never wait behind a password hash; the decision goes back to
/// the edge as an event (`HTTPAdmissionDecision`), and no worker waits for another stage.
/// Failed logins are limited per client address (an IPv6 client by its /64) and per user
/// name (`LoginLimiter`): past the limit a login gets 429 without a hash, so guessing costs
/// the node a bounded number of hashes per window. A name no user can have is refused
/// before either. Several requests with the same header share one check.
final class Authenticator: Sendable {
    /// Counters for `/metrics`.
    final class Stats: Sendable {
        /// Logins refused with 429 by the limiter, without a hash.
        let limited = Atomic<UInt64>(0)
        /// Logins whose password check failed.
        let failed = Atomic<UInt64>(0)
        /// Logins refused with 503 because the auth stage's queue was full.
        let overloaded = Atomic<UInt64>(0)
    }

    /// A request waiting for the check of its credentials.
    private struct Waiter {
        let decision: HTTPAdmissionDecision
        let route: String
    }

    let users: UserStore
    let stage: Stage<StageTask>
    let stats = Stats()
    private let limiter: Mutex<LoginLimiter>
    /// Checks on the auth stage, by header, with the requests waiting for each.
    private let checking = Mutex<[String: [Waiter]]>([:])
    private let nowMs: @Sendable () -> UInt64

    init(users: UserStore, settings: AuthSettings, stage: Stage<StageTask>,
         nowMs: @escaping @Sendable () -> UInt64 = { monotonicNowNs() / 1_000_000 }) {
        self.users = users
        self.stage = stage
        self.nowMs = nowMs
        limiter = Mutex(LoginLimiter(perClientMax: settings.failedLoginsPerClientMax, perUserMax: settings.failedLoginsPerUserMax,
                                     windowMs: settings.failedLoginWindowMs, entriesMax: settings.limiterEntriesMax))
    }

    /// The auth stage: `threads` workers and a queue of `queueCapacity`, refusing when full
    /// (a login then gets 503). `before` runs ahead of each batch (tests hold the workers there).
    static func makeStage(_ settings: AuthSettings, before: (@Sendable () -> Void)? = nil) -> Stage<StageTask> {
        Stage(name: "auth", settings: StageSettings(threads: settings.threads, queueCapacity: settings.queueCapacity,
                                                    batchSize: 1, overflow: .reject, inline: false)) { batch in
            before?()
            for task in batch { task.run() }
        }
    }

    /// Addresses and names the limiter tracks now (for tests).
    var limiterEntries: Int { limiter.withLock { $0.entries.count } }

    /// Decides about a head on the loop thread; never hashes here.
    func admit(_ head: HTTPRequest, client: String, decision: HTTPAdmissionDecision) -> Admission {
        if Access.openRoutes.contains(String(head.path)) {
            // Open routes take no body: admitting one unauthenticated would let anyone hold
            // the node's body budget (a POST /ping declaring 32 MiB). Refused from the head,
            // its body unread, so the edge closes the connection after the answer.
            return head.announcesBody ? .refuse(Access.bodyOnOpenRoute(head)) : .admit(as: nil)
        }
        let route = AdminRoutes.label(for: head)
        guard let header = Access.credentials(of: head) else { return .refuse(Access.missingCredentials(route: route)) }
        if let user = users.rememberedUser(header) { return .admit(as: user) }
        guard let (name, password) = UserStore.basicCredentials(header) else { return .refuse(Access.malformedCredentials(route: route)) }
        // No user can have this name: answered without a hash, and kept out of the limiter,
        // whose entries are then bounded by a name's 64 bytes instead of a header's 16 KiB.
        guard UserStore.isValidName(name) else { return .refuse(Access.wrongPassword(route: route)) }
        let waiter = Waiter(decision: decision, route: route)
        let joined = checking.withLock { checking in
            guard checking[header] != nil else { return false }
            checking[header]!.append(waiter)
            return true
        }
        if joined { return .pending }
        if let retryMs = limiter.withLock({ $0.begin(client: client, user: name, nowMs: nowMs()) }) {
            stats.limited.add(1, ordering: .relaxed)
            return .refuse(Self.tooManyFailures(route: route, retryMs: retryMs))
        }
        checking.withLock { $0[header] = [waiter] }
        let task = StageTask { [self] in check(header: header, name: name, password: password, client: client) }
        if case .accepted = stage.offer(task) { return .pending }
        // Full or stopping: nothing was hashed; whoever joined meanwhile is refused as well.
        limiter.withLock { $0.cancel(client: client, user: name, nowMs: nowMs()) }
        stats.overloaded.add(1, ordering: .relaxed)
        let others = checking.withLock { $0.removeValue(forKey: header) ?? [] }.dropFirst()
        for other in others { other.decision.refuse(Self.overloaded(route: other.route)) }
        return .refuse(Self.overloaded(route: route))
    }

    /// Runs on the auth stage: one hash, then the decision for every request waiting on it.
    private func check(header: String, name: String, password: String, client: String) {
        let valid = users.verify(header: header, name: name, password: password)
        if !valid { stats.failed.add(1, ordering: .relaxed) }
        limiter.withLock { $0.end(client: client, user: name, failed: !valid, nowMs: nowMs()) }
        let waiters = checking.withLock { $0.removeValue(forKey: header) ?? [] }
        for waiter in waiters {
            if valid { waiter.decision.admit(as: name) } else { waiter.decision.refuse(Access.wrongPassword(route: waiter.route)) }
        }
    }

    /// 429, IoTDB having no code for it: the body's code is 429 too, and `Retry-After` says when.
    static func tooManyFailures(route: String, retryMs: UInt64) -> HTTPResponse {
        let seconds = max(1, (retryMs + 999) / 1000)
        var response = RESTv2.status(429, "too many failed logins from this address or for this user; retry in \(seconds) s",
                                     route: route, http: 429)
        response.headers.append(("Retry-After", String(seconds)))
        return response
    }

    static func overloaded(route: String) -> HTTPResponse {
        .error(503, "stage auth is overloaded; retry later", route: route, extra: [("stage", "auth")])
    }
}

extension Access {
    /// The request's `Authorization` header; for `/write` without one, InfluxDB 1.x's
    /// `?u=…&p=…` as a basic header.
    static func credentials(of request: HTTPRequest) -> String? {
        if let header = request.header("authorization") { return header }
        guard request.path == "/write" else { return nil }
        let query = QueryString(request.target)
        guard let name = query["u"], let password = query["p"] else { return nil }
        return "Basic " + Data("\(name):\(password)".utf8).base64EncodedString()
    }
}
