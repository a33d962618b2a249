import TidemarkConsensus
import Foundation
import TidemarkCluster
import TidemarkCore
import TidemarkNet
import TidemarkQuery

/// `SHOW CLUSTER [DETAILS]` and `SHOW DATANODES`, answered from the meta group's state (the
/// same on every node once it applied the same entries), in IoTDB's column names.
enum ClusterStatements {
    /// Written in SHOW CLUSTER's Version column.
    static let version = "tidemark-0.29"

    /// The answer to a cluster statement; nil when the statement is not one. `metaMembers` are
    /// the nodes of the meta group (IoTDB's ConfigNodes).
    /// `heard` gives the regions the meta leader's heartbeats reported (for SHOW REGIONS'
    /// sizes; nil when the leader cannot be asked).
    static func answer(_ statement: Statement, meta: MetaState, metaMembers: Set<NodeID>, heard: () -> [NodeID: [RegionReport]]? = { nil },
                       route: String) -> HTTPResponse? {
        let nodes = meta.nodes.values.sorted { $0.id < $1.id }
        let result: QueryResult
        switch statement {
        case .showCluster(let details):
            // Each meta member is listed as a ConfigNode, then every node as a DataNode.
            let rows = nodes.filter { metaMembers.contains($0.id) }.map { ($0, "ConfigNode") } + nodes.map { ($0, "DataNode") }
            var columns: [(String, String, ((NodeRecord, String)) -> ResultValue)] = [
                ("NodeID", "INT32", { .integer(Int64($0.0.id)) }), ("NodeType", "TEXT", { .text($0.1) }),
                ("Status", "TEXT", { .text($0.0.status.rawValue) }),
                ("InternalAddress", "TEXT", { .text(host($0.0.internalAddress)) }),
                ("InternalPort", "INT32", { port($0.0.internalAddress) }),
            ]
            if details {
                columns += [("RpcAddress", "TEXT", { .text(host($0.0.clientAddress)) }), ("RpcPort", "INT32", { port($0.0.clientAddress) }),
                            ("Cores", "INT32", { .integer(Int64($0.0.cores)) })]
            }
            columns += [("Version", "TEXT", { _ in .text(version) })]
            result = table(rows, columns)
        case .showDataNodes:
            func regions(_ node: NodeRecord, _ kind: GroupKind) -> ResultValue {
                .integer(Int64(meta.groups.values.filter { $0.id.kind == kind && $0.replicas.contains(node.id) }.count))
            }
            result = table(nodes, [
                ("NodeID", "INT32", { .integer(Int64($0.id)) }), ("Status", "TEXT", { .text($0.status.rawValue) }),
                ("RpcAddress", "TEXT", { .text(host($0.clientAddress)) }), ("RpcPort", "INT32", { port($0.clientAddress) }),
                ("DataRegionNum", "INT32", { regions($0, .data) }), ("SchemaRegionNum", "INT32", { regions($0, .schema) }),
            ])
        case .showRegions:
            result = regions(meta, heard: heard())
        case .showDatabasesDetails:
            result = databases(meta)
        default:
            return nil
        }
        return .json(200, RESTv2.json(result), route: route)
    }

    /// Statements that change the meta group's state, proposed there (waiting for the outcome,
    /// on the query stage): `REMOVE DATANODE` is answered here; `CREATE DATABASE` and
    /// `DROP DATABASE` return nil once the meta group took them, and the region's engine then
    /// runs them too. A refusal is answered with its code.
    /// `CREATE TIMESERIES` outside every database creates the database first, as a write
    /// does, when `createDatabases` (`auto_create_schema`).
    /// `DROP DATABASE` is begun in the meta group only where `takesDataChanges` (elsewhere the
    /// regions refuse it, naming their leader, and nothing is begun).
    static func change(_ statement: Statement, agent: MetaAgent, createDatabases: Bool, takesDataChanges: () -> Bool = { true },
                       route: String) -> HTTPResponse? {
        func refusal(_ error: MetaProposeError) -> HTTPResponse {
            switch error {
            case .refused(let refused): RESTv2.status(refused.code, refused.message, route: route)
            case .unavailable(let why): RESTv2.status(606, "the meta group cannot take it now: \(why)", route: route, http: 503)
            }
        }
        switch statement {
        case .removeDataNode(let node):
            if case .failure(let error) = agent.proposeAndWait(.removeNode(node)) { return refusal(error) }
            return RESTv2.success(route: route)
        case .dropDatabase, .deleteTimeseries, .deleteData:
            // A recorded two-phase operation: its start first (what it deletes takes no more
            // writes), then the regions delete (the engine's part), then `afterEngine` records
            // its end. A crash between them is resumed (`MetaOperations`).
            guard takesDataChanges() else { return nil }
            let state = agent.machine.current
            let kinds = operationKinds(of: statement).filter { kind in
                if case .dropDatabase(let name) = kind { return state.databases[name] != nil }
                return true
            }
            // Until `afterEngine`, the resumer leaves these to the statement.
            let subjects = operationKinds(of: statement).map(MetaOperations.subject)
            agent.operationsRunningHere.withLock { $0.formUnion(subjects) }
            for kind in kinds {
                if case .failure(let error) = agent.proposeAndWait(.begin(kind)) {
                    agent.operationsRunningHere.withLock { $0.subtract(subjects) }
                    return refusal(error)
                }
                Failpoint.crash(if: MetaOperations.failpoint(after: kind))
            }
            return nil
        case .createDatabase(let name, let options):
            let settings = agent.machine.settings
            let record = DatabaseRecord(name: name, schemaReplicationFactor: options.schemaReplicationFactor ?? settings.schemaReplicationFactor,
                                        dataReplicationFactor: options.dataReplicationFactor ?? settings.dataReplicationFactor,
                                        dataRegionGroupsMin: options.dataRegionGroups ?? settings.dataRegionGroupsPerDatabase,
                                        schemaRegionGroups: options.schemaRegionGroups ?? settings.schemaRegionGroupsPerDatabase)
            switch agent.proposeAndWait(.createDatabase(record)) {
            // Known to the meta group already (a write created it, or a crash came before the
            // engine's part): the engine answers whether it exists.
            case .success: return nil
            case .failure(.refused(let error)) where error.code == 501 && agent.machine.current.databases[name] != nil: return nil
            case .failure(let error): return refusal(error)
            }
        case .createTimeseries(let path, _, _, _):
            let device = String(path[..<(PathLevel.levelEnds(path).last ?? path.endIndex)])
            let state = agent.machine.current
            guard createDatabases, WritePartitions.database(of: device, in: state.databases) == nil,
                  let name = WritePartitions.autoDatabase(of: device) else { return nil }
            switch agent.proposeAndWait(.createDatabase(DatabaseRecord(name: name, defaults: state.settings))) {
            case .success: return nil
            case .failure(.refused(let error)) where error.code == 501: return nil  // made meanwhile
            case .failure(let error): return refusal(error)
            }
        default:
            return nil
        }
    }

    /// The operations a statement records: one per database dropped, per pattern deleted.
    static func operationKinds(of statement: Statement) -> [MetaOperation.Kind] {
        switch statement {
        case .dropDatabase(let names): names.map { .dropDatabase($0) }
        case .deleteTimeseries(let patterns): patterns.map { .deleteSeries($0) }
        case .deleteData(let patterns, let range): patterns.map { .deleteData($0, range) }
        default: []
        }
    }

    /// After the engine ran a statement that began operations: each whose deleting is done is
    /// finished in the meta group; the others stay in flight and are resumed.
    /// - A drop is done once no region holds the database (`stillHeld`): an engine that stopped
    ///   at the first name it lacked did not reach the others. The regions' "no such database"
    ///   (none held data of it) is a drop done when every name was begun.
    /// - A series delete is done once no region matches its pattern (`stillMatches`).
    /// - A delete of points is done when the regions answered it.
    static func afterEngine(_ statement: Statement, _ answer: HTTPResponse, agent: MetaAgent,
                            stillHeld: (String) -> Bool = { _ in false }, stillMatches: (String) -> Bool = { _ in false }) -> HTTPResponse {
        let kinds = operationKinds(of: statement)
        guard !kinds.isEmpty else { return answer }
        defer { agent.operationsRunningHere.withLock { $0.subtract(kinds.map(MetaOperations.subject)) } }
        let state = agent.machine.current
        let begun = kinds.filter { state.operation($0) != nil }
        let body = String(decoding: answer.body, as: UTF8.self)
        let answered = answer.status == 200 && body.contains("\"code\":200")
        func done(_ kind: MetaOperation.Kind) -> Bool {
            switch kind {
            case .dropDatabase(let name): !stillHeld(name)
            case .deleteSeries(let pattern): !stillMatches(pattern)
            case .deleteData: answered
            }
        }
        let isDrop = if case .dropDatabase = statement { true } else { false }
        if isDrop {
            guard answer.status == 200, answered || (body.contains("\"code\":500") && begun.count == kinds.count) else { return answer }
            let left = begun.filter { !done($0) }.map(MetaOperations.subject)
            guard left.isEmpty else {
                return RESTv2.status(606, "\(left.joined(separator: ", ")) not dropped yet; the drop goes on by itself, or run DROP DATABASE again",
                                     route: answer.route, http: 503)
            }
        }
        for kind in begun where done(kind) {
            if case .failure(let error) = agent.proposeAndWait(.finish(kind)) {
                return RESTv2.status(606, "\(MetaOperations.subject(of: kind)) was deleted from the data, but the meta group did not record "
                                     + "the end (\(error)); it is finished later by itself", route: answer.route, http: 503)
            }
        }
        return isDrop ? RESTv2.success(route: answer.route) : answer
    }

    /// Builds a result from columns of (name, type, value of a row).
    private static func table<Row>(_ rows: [Row], _ columns: [(String, String, (Row) -> ResultValue)]) -> QueryResult {
        QueryResult(expressions: nil, columnNames: columns.map(\.0), dataTypes: columns.map(\.1), timestamps: nil,
                    values: columns.map { column in rows.map(column.2) })
    }

    /// `SHOW REGIONS`: one row per replica, by group then node, in IoTDB's columns. A data
    /// group's series slots are the slots with a partition in it, its time slots the
    /// (slot, time partition)s; a schema group's time slots are 0. TsFileSize is the bytes of
    /// the replica's segment files as its node last reported them to the meta leader (null
    /// when not heard).
    static func regions(_ meta: MetaState, heard: [NodeID: [RegionReport]]? = nil) -> QueryResult {
        var sizes: [NodeID: [GroupID: Int]] = [:]
        for (node, reports) in heard ?? [:] {
            for report in reports { sizes[node, default: [:]][report.group] = report.segmentBytes }
        }
        var seriesSlots: [GroupID: Set<Int>] = [:]
        var timeSlots: [GroupID: Int] = [:]
        for slots in meta.table.schemaSlots.values {
            for (slot, group) in slots { seriesSlots[group, default: []].insert(slot) }
        }
        for slots in meta.table.dataSlots.values {
            for (slot, partitions) in slots {
                for group in partitions.values {
                    seriesSlots[group, default: []].insert(slot)
                    timeSlots[group, default: 0] += 1
                }
            }
        }
        let rows = meta.groups.values.sorted { $0.id < $1.id }.flatMap { group in group.replicas.sorted().map { (group, $0) } }
        func node(_ id: NodeID) -> NodeRecord? { meta.nodes[id] }
        return table(rows, [
            ("RegionId", "INT32", { .integer(Int64($0.0.id.number)) }),
            ("Type", "TEXT", { .text($0.0.id.kind == .data ? "DataRegion" : "SchemaRegion") }),
            ("Status", "TEXT", { .text(node($0.1)?.status.rawValue ?? "Unknown") }),
            ("Database", "TEXT", { .text($0.0.database) }),
            ("SeriesSlotNum", "INT32", { .integer(Int64(seriesSlots[$0.0.id]?.count ?? 0)) }),
            ("TimeSlotNum", "INT64", { .integer(Int64(timeSlots[$0.0.id] ?? 0)) }),
            ("DataNodeId", "INT32", { .integer(Int64($0.1)) }),
            ("RpcAddress", "TEXT", { .text(host(node($0.1)?.clientAddress ?? "")) }),
            ("RpcPort", "INT32", { port(node($0.1)?.clientAddress ?? "") }),
            ("InternalAddress", "TEXT", { .text(node($0.1)?.internalAddress ?? "") }),
            ("Role", "TEXT", { .text($0.0.leaderHint == $0.1 ? "Leader" : "Follower") }),
            ("TsFileSize", "INT64", { sizes[$0.1]?[$0.0.id].map { .integer(Int64($0)) } ?? .null }),
        ])
    }

    /// `SHOW DATABASES DETAILS`: each database's factors and region groups, in IoTDB's columns.
    static func databases(_ meta: MetaState) -> QueryResult {
        let rows = meta.databases.values.sorted { $0.name < $1.name }
        return table(rows, [
            ("Database", "TEXT", { .text($0.name) }),
            ("SchemaReplicationFactor", "INT32", { .integer(Int64($0.schemaReplicationFactor)) }),
            ("DataReplicationFactor", "INT32", { .integer(Int64($0.dataReplicationFactor)) }),
            ("TimePartitionOrigin", "INT64", { _ in .integer(0) }),
            ("TimePartitionInterval", "INT64", { _ in .integer(meta.settings.timePartitionIntervalMs) }),
            ("SchemaRegionGroupNum", "INT32", { .integer(Int64(meta.groupCount($0.name, .schema))) }),
            ("MinSchemaRegionGroupNum", "INT32", { .integer(Int64($0.schemaRegionGroups)) }),
            ("DataRegionGroupNum", "INT32", { .integer(Int64(meta.groupCount($0.name, .data))) }),
            ("MinDataRegionGroupNum", "INT32", { .integer(Int64(max(1, $0.dataRegionGroupsMin))) }),
            ("MaxDataRegionGroupNum", "INT32", { .integer(Int64(meta.dataGroupTarget($0))) }),
        ])
    }

    /// `"meta":{…}` for `/cluster`: the meta group's leader as this node knows it, the
    /// route and table versions, every registered node with its status, and every region
    /// group with its database, replicas (by node) and leader hint; on a data-only node, the
    /// route maps the leader pushed to it, and the pulls a heartbeat's newer version caused.
    static func json(_ meta: MetaState, leader: NodeID?, metaMembers: Set<NodeID>, pushesReceived: UInt64 = 0, stalePulls: UInt64 = 0) -> String {
        let operations = meta.operations.values.sorted { $0.id < $1.id }.map { operation in
            switch operation.kind {
            case .dropDatabase(let name): "{\"id\":\(operation.id),\"drop_database\":\(jsonQuoted(name))}"
            case .deleteSeries(let pattern): "{\"id\":\(operation.id),\"delete_timeseries\":\(jsonQuoted(pattern))}"
            case .deleteData(let pattern, let range):
                "{\"id\":\(operation.id),\"delete_data\":\(jsonQuoted(pattern)),\"from\":\(range.lowerBound),\"to\":\(range.upperBound)}"
            }
        }.joined(separator: ",")
        let nodes = meta.nodes.values.sorted { $0.id < $1.id }.map { node in
            "{\"id\":\(node.id),\"internal\":\(jsonQuoted(node.internalAddress)),\"client\":\(jsonQuoted(node.clientAddress)),"
                + "\"status\":\(jsonQuoted(node.status.rawValue)),\"cores\":\(node.cores),\"meta_member\":\(metaMembers.contains(node.id))}"
        }.joined(separator: ",")
        return "\"meta\":{\"leader\":\(leader.map { "\($0)" } ?? "null"),\"route_version\":\(meta.routeVersion),"
            + "\"table_version\":\(meta.table.version),\"pushes_received\":\(pushesReceived),\"stale_pulls\":\(stalePulls),\"registered_nodes\":[\(nodes)],"
            + "\"region_groups\":[\(regionGroups(meta))],\"operations\":[\(operations)]}"
    }

    private static func regionGroups(_ meta: MetaState) -> String {
        meta.groups.values.sorted { $0.id < $1.id }.map { group in
            "{\"id\":\(jsonQuoted("\(group.id)")),\"database\":\(jsonQuoted(group.database)),"
                + "\"replicas\":[\(group.replicas.map { "\($0)" }.joined(separator: ","))],\"leader\":\(group.leaderHint.map { "\($0)" } ?? "null")}"
        }.joined(separator: ",")
    }

    /// The host of `HOST:PORT` (an IPv6 host without its brackets).
    static func host(_ address: String) -> String {
        guard let colon = address.lastIndex(of: ":") else { return address }
        return String(address[..<colon]).trimmingCharacters(in: ["[", "]"])
    }

    static func port(_ address: String) -> ResultValue {
        guard let colon = address.lastIndex(of: ":"), let port = Int64(address[address.index(after: colon)...]) else { return .null }
        return .integer(port)
    }
}
