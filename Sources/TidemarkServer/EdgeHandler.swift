import TidemarkCore
import TidemarkNet
import TidemarkStages
import TidemarkStorage

/// Hands each request from the edge to the decode stage, and turns a full or
/// stopping stage into the answer DESIGN.md section 4 asks for.
struct EdgeHandler: HTTPRequestHandler {
    let decode: Stage<HTTPExchange>
    /// Checks credentials from each head; nil admits every request (edge tests).
    var authenticator: Authenticator? = nil

    func admit(_ head: HTTPRequest, client: String, decision: HTTPAdmissionDecision) -> Admission {
        authenticator?.admit(head, client: client, decision: decision) ?? .admit(as: nil)
    }

    func handle(_ request: HTTPRequest, responder: HTTPResponder, whenSpace: @escaping @Sendable () -> Void) -> HandOff {
        switch decode.submit(HTTPExchange(request: request, responder: responder), whenSpace: whenSpace) {
        case .accepted:
            return .accepted
        case .deferred:
            return .deferred
        case .rejected(.overloaded):
            return .rejected(.error(503, "stage \(decode.name) is overloaded; retry later", route: AdminRoutes.label(for: request),
                                    extra: [("stage", decode.name)]))
        case .rejected(.stopping):
            return .rejected(.error(503, "node is shutting down", route: AdminRoutes.label(for: request),
                                    extra: [("stage", decode.name)]))
        }
    }
}

/// The node's own routes: `/ping`, `/metrics`, `/stages`, `/cluster`, `/quarantine`. Runs on the decode stage.
struct AdminRoutes: Sendable {
    static let routes = ["/ping", "/metrics", "/stages", "/cluster", "/quarantine", "/write", "/flush"] + RESTv2.routes

    let stages: @Sendable () -> [StageSnapshot]
    let storage: @Sendable () -> EngineStats
    var regions: @Sendable () -> RegionMetrics = { RegionMetrics() }
    /// Disk full, failed logs, quarantined files.
    let health: @Sendable (_ listingQuarantine: Bool) -> NodeHealth
    let http: HTTPMetrics
    /// Readings of the authenticator, when the node has one.
    var auth: @Sendable () -> AuthMetrics? = { nil }
    /// In a cluster, this node's view of it.
    let cluster: @Sendable () -> ClusterStatus?
    /// The meta group's view of the cluster, as `"meta":{…}` for `/cluster`.
    let meta: @Sendable () -> String
    let startedNs: UInt64
    let startTimeSeconds: Double

    /// The `route` label for a request: its path when it is a known route, else `other`.
    static func label(for request: HTTPRequest) -> String {
        let path = String(request.path)
        return routes.contains(path) ? path : "other"
    }

    func respond(to request: HTTPRequest) -> HTTPResponse {
        let route = Self.label(for: request)
        guard route != "other" else {
            return .error(404, "no route for \(request.method) \(request.path)", route: route)
        }
        guard request.method == "GET" || request.method == "HEAD" else {
            var response = HTTPResponse.error(405, "\(request.path) accepts GET only", route: route)
            response.headers.append(("Allow", "GET, HEAD"))
            return response
        }
        switch route {
        case "/ping":
            // A node that refuses writes (disk full, a failed log) is taken out by health checks until it takes them again.
            let health = health(false)  // refusesWrites needs no walk of the quarantine
            guard !health.refusesWrites else {
                let message = "DEGRADED: " + health.reasons.joined(separator: ", ") + (health.storage.lastError.map { ": \($0)" } ?? "")
                return .json(503, "{\"code\":503,\"message\":\(jsonQuoted(message))}", route: route)
            }
            return .json(200, #"{"code":200,"message":"SUCCESS_STATUS"}"#, route: route)
        case "/quarantine":
            return .json(200, health(true).quarantineJSON, route: route)
        case "/metrics":
            let text = MetricsText.render(
                stages: stages(), storage: storage(), regions: regions(), health: health(true), http: http, auth: auth(), cluster: cluster(), process: .read(),
                uptimeSeconds: Double(monotonicNowNs() - startedNs) / 1e9, startTimeSeconds: startTimeSeconds)
            return HTTPResponse(status: 200, contentType: MetricsText.contentType, body: Array(text.utf8), route: route)
        case "/cluster":
            let fields = health(true).clusterJSONFields + "," + meta()
            guard let status = cluster() else {
                return .json(200, "{\"node_id\":1,\"nodes\":[],\"groups\":[],\"partition_table_version\":0,\"standalone\":true,\(fields)}", route: route)
            }
            return .json(200, String(status.json.dropLast()) + ",\(fields)}", route: route)
        default:
            let body = StageReport.encode(stages().map(StageReport.init))
            return HTTPResponse(status: 200, contentType: "application/json", body: body, route: route)
        }
    }
}
