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
    static func answer(_ statement: Statement, meta: MetaState, metaMembers: Set<NodeID>, route: String) -> HTTPResponse? {
        let nodes = meta.nodes.values.sorted { $0.id < $1.id }
        let result: QueryResult
        switch statement {
        case .showCluster(let details):
            // Each meta member is listed as a ConfigNode, then every node as a DataNode.
            let rows = nodes.filter { metaMembers.contains($0.id) }.map { ($0, "ConfigNode") } + nodes.map { ($0, "DataNode") }
            var columns: [(String, String, (NodeRecord, String) -> ResultValue)] = [
                ("NodeID", "INT32", { node, _ in .integer(Int64(node.id)) }), ("NodeType", "TEXT", { _, type in .text(type) }),
                ("Status", "TEXT", { node, _ in .text(node.status.rawValue) }),
                ("InternalAddress", "TEXT", { node, _ in .text(host(node.internalAddress)) }),
                ("InternalPort", "INT32", { node, _ in port(node.internalAddress) }),
            ]
            if details {
                columns += [("RpcAddress", "TEXT", { node, _ in .text(host(node.clientAddress)) }),
                            ("RpcPort", "INT32", { node, _ in port(node.clientAddress) }),
                            ("Cores", "INT32", { node, _ in .integer(Int64(node.cores)) })]
            }
            columns += [("Version", "TEXT", { _, _ in .text(version) })]
            result = QueryResult(expressions: nil, columnNames: columns.map(\.0), dataTypes: columns.map(\.1), timestamps: nil,
                                 values: columns.map { column in rows.map { column.2($0.0, $0.1) } })
        case .showDataNodes:
            func regions(_ node: NodeRecord, _ kind: RegionKind) -> ResultValue {
                .integer(Int64(meta.groups.values.filter { $0.id.kind == kind && $0.replicas.contains(node.id) }.count))
            }
            let columns: [(String, String, (NodeRecord) -> ResultValue)] = [
                ("NodeID", "INT32", { .integer(Int64($0.id)) }), ("Status", "TEXT", { .text($0.status.rawValue) }),
                ("RpcAddress", "TEXT", { .text(host($0.clientAddress)) }), ("RpcPort", "INT32", { port($0.clientAddress) }),
                ("DataRegionNum", "INT32", { regions($0, .data) }), ("SchemaRegionNum", "INT32", { regions($0, .schema) }),
            ]
            result = QueryResult(expressions: nil, columnNames: columns.map(\.0), dataTypes: columns.map(\.1), timestamps: nil,
                                 values: columns.map { column in nodes.map(column.2) })
        default:
            return nil
        }
        return .json(200, RESTv2.json(result), route: route)
    }

    /// `"meta":{…}` for `/cluster`: the meta group's leader as this node knows it, the
    /// route version, and every registered node with its status.
    static func json(_ meta: MetaState, leader: NodeID?, metaMembers: Set<NodeID>) -> String {
        let nodes = meta.nodes.values.sorted { $0.id < $1.id }.map { node in
            "{\"id\":\(node.id),\"internal\":\(jsonQuoted(node.internalAddress)),\"client\":\(jsonQuoted(node.clientAddress)),"
                + "\"status\":\(jsonQuoted(node.status.rawValue)),\"cores\":\(node.cores),\"meta_member\":\(metaMembers.contains(node.id))}"
        }.joined(separator: ",")
        return "\"meta\":{\"leader\":\(leader.map { "\($0)" } ?? "null"),\"route_version\":\(meta.routeVersion),"
            + "\"table_version\":\(meta.table.version),\"registered_nodes\":[\(nodes)]}"
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
