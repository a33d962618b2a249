import TidemarkNet
import TidemarkQuery
import TidemarkStorage

/// Authentication answers and privilege checks, in IoTDB's bodies.
enum Access {
    /// Routes anyone may call (probes and scrapers carry no credentials).
    static let openRoutes: Set<String> = ["/ping", "/metrics"]

    /// The answer to a request for an open route that carries a body: 405 for a method the
    /// route does not serve, else 413 (they serve GET and HEAD, which take none).
    static func bodyOnOpenRoute(_ head: HTTPRequest) -> HTTPResponse {
        let route = AdminRoutes.label(for: head)
        guard head.method == "GET" || head.method == "HEAD" else {
            var response = HTTPResponse.error(405, "\(head.path) accepts GET only", route: route)
            response.headers.append(("Allow", "GET, HEAD"))
            return response
        }
        return .error(413, "\(head.path) takes no request body", route: route)
    }

    static func missingCredentials(route: String) -> HTTPResponse { RESTv2.status(800, "INIT_AUTH_ERROR", route: route, http: 401) }

    static func wrongPassword(route: String) -> HTTPResponse { RESTv2.status(801, "WRONG_LOGIN_PASSWORD", route: route, http: 401) }

    static func malformedCredentials(route: String) -> HTTPResponse {
        RESTv2.status(303, "Illegal format of authorization header.", route: route, http: 400)
    }

    /// The first (privilege, path) the user lacks, if any.
    static func missing(_ user: String, _ needs: [(Privilege, String)], in users: UserStore) -> (Privilege, String)? {
        needs.first { !users.allows(user, $0.0, on: $0.1) }
    }

    static func message(_ lack: (Privilege, String)) -> String {
        "No permissions for this operation, please add privilege \(lack.0.rawValue) on [\(lack.1)]"
    }

    /// The WRITE_DATA the user lacks for `job`, if any.
    static func missingForWrite(_ user: String, _ job: WriteJob, in users: UserStore) -> (Privilege, String)? {
        // Most writers may write everywhere: skip listing every series.
        if users.allows(user, .writeData, on: "root.**") { return nil }
        return missing(user, writeNeeds(job), in: users)
    }

    /// WRITE_DATA on every distinct series a write touches.
    static func writeNeeds(_ job: WriteJob) -> [(Privilege, String)] {
        var seen = Set<String>()
        var needs: [(Privilege, String)] = []
        for key in job.rows.keys {
            for index in key.measurements.indices where seen.insert(key.path(index)).inserted { needs.append((.writeData, key.path(index))) }
        }
        return needs
    }

    /// What a statement needs, path by path.
    static func needs(_ statement: Statement, user: String) -> [(Privilege, String)] {
        switch statement {
        case .createDatabase(let name, _): [(.writeSchema, name)]
        case .dropDatabase(let names): names.map { (.writeSchema, $0) }
        case .showDatabases(let pattern), .countTimeseries(let pattern), .showDevices(let pattern), .showTimeseries(let pattern, _, _):
            [(.readSchema, pattern ?? "root.**")]
        case .createTimeseries(let path, _, _, _): [(.writeSchema, path)]
        case .deleteTimeseries(let patterns): patterns.map { (.writeSchema, $0) }
        case .insert(let device, let measurements, _): measurements.map { (.writeData, device + "." + $0) }
        case .deleteData(let paths, _): paths.map { (.writeData, $0) }
        case .select(let select):
            // Every path the statement reads: the select list (which GROUP BY LEVEL and ORDER BY
            // only regroup or reorder) and the WHERE clause, whose filters reveal values too.
            select.from.flatMap { prefix in
                readPaths(select).map { (.readData, (prefix + $0).joined(separator: ".")) }
            }
        case .flush: [(.writeData, "root.**")]
        // What the cluster is made of, as /cluster says it to any signed-in user.
        case .showCluster, .showDataNodes, .showRegions, .showDatabasesDetails: []
        // Changing the cluster's layout: schema rights over everything (IoTDB's MAINTAIN).
        case .removeDataNode: [(.writeSchema, "root.**")]
        case .alterPassword(let name, _) where name == user: []
        case .createUser, .dropUser, .alterPassword, .grant, .revoke, .listUsers: [(.manageUser, "root.**")]
        }
    }

    /// The relative paths a SELECT reads, each once, in order.
    static func readPaths(_ select: SelectStatement) -> [[String]] {
        var all = select.items.flatMap(\.paths)
        if let condition = select.condition { all += condition.paths }
        var seen = Set<[String]>()
        return all.filter { seen.insert($0).inserted }
    }

    /// Runs a user-management statement; nil when the statement is not one.
    static func runUserStatement(_ statement: Statement, users: UserStore, route: String) -> HTTPResponse? {
        do {
            switch statement {
            case .createUser(let name, let password): try users.create(name: name, password: password)
            case .dropUser(let name): try users.drop(name)
            case .alterPassword(let name, let password): try users.setPassword(name, password)
            case .grant(let name, let privileges, let patterns): try users.change(name, privileges: privileges, patterns: patterns, grant: true)
            case .revoke(let name, let privileges, let patterns): try users.change(name, privileges: privileges, patterns: patterns, grant: false)
            case .listUsers:
                let result = QueryResult(expressions: nil, columnNames: ["user"], dataTypes: ["TEXT"], timestamps: nil,
                                         values: [users.list().map { .text($0) }])
                return .json(200, RESTv2.json(result), route: route)
            default: return nil
            }
            return RESTv2.success(route: route)
        } catch let error as UserError {
            return RESTv2.status(error.code, error.message, route: route)
        } catch let error as EngineError {
            return RESTv2.status(StatementExecutor.translate(error), route: route)
        } catch {
            return RESTv2.status(305, "\(error)", route: route)
        }
    }
}
