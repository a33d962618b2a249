import TidemarkCore

/// An expression in a select list or a WHERE clause.
public indirect enum Expression: Sendable, Equatable, CustomStringConvertible {
    /// A path: in a select list relative to each FROM prefix; `time` in a WHERE clause.
    case path([String])
    case number(Double, text: String)
    case string(String)
    case boolean(Bool)
    case null
    case call(String, [Expression])
    case binary(String, Expression, Expression)
    case negate(Expression)

    public var description: String {
        switch self {
        case .path(let levels): levels.joined(separator: ".")
        case .number(_, let text): text
        case .string(let text): "'\(text)'"
        case .boolean(let flag): flag ? "true" : "false"
        case .null: "null"
        case .call(let name, let arguments): "\(name)(\(arguments.map(\.description).joined(separator: ", ")))"
        case .binary(let op, let lhs, let rhs): "\(lhs) \(op) \(rhs)"
        case .negate(let inner): "-\(inner)"
        }
    }
}

/// A WHERE condition.
public indirect enum Condition: Sendable, Equatable {
    case and(Condition, Condition)
    case or(Condition, Condition)
    case not(Condition)
    case compare(Expression, String, Expression)
}

/// `GROUP BY ([start, end), interval[, step])`, in milliseconds.
public struct TimeWindows: Sendable, Equatable {
    public var start: Int64
    public var end: Int64
    public var intervalMs: Int64
    public var stepMs: Int64
}

/// How `FILL` replaces nulls.
public enum Fill: Sendable, Equatable {
    case previous
    case linear
    case constant(Expression)
}

public struct SelectStatement: Sendable, Equatable {
    public var last = false
    public var items: [Expression] = []
    public var from: [[String]] = []
    public var condition: Condition?
    public var groupByLevel: Int?
    public var groupByTime: TimeWindows?
    public var fill: Fill?
    public var alignByDevice = false
    public var orderByTimeDescending = false
    public var limit: Int?
    public var offset = 0
    public var seriesLimit: Int?
    public var seriesOffset = 0
}

/// What `CREATE DATABASE … WITH …` sets; nil where the cluster's default holds.
public struct DatabaseOptions: Sendable, Equatable {
    public var schemaReplicationFactor: Int?
    public var dataReplicationFactor: Int?
    public var schemaRegionGroups: Int?
    public var dataRegionGroups: Int?

    public init(schemaReplicationFactor: Int? = nil, dataReplicationFactor: Int? = nil, schemaRegionGroups: Int? = nil, dataRegionGroups: Int? = nil) {
        self.schemaReplicationFactor = schemaReplicationFactor
        self.dataReplicationFactor = dataReplicationFactor
        self.schemaRegionGroups = schemaRegionGroups
        self.dataRegionGroups = dataRegionGroups
    }
}

/// A parsed statement of IoTDB's tree-model dialect.
public enum Statement: Sendable, Equatable {
    case createDatabase(String, DatabaseOptions = DatabaseOptions())
    case dropDatabase([String])
    case showDatabases(String?)
    case createTimeseries(path: String, type: DataType, encoding: String?, compressor: String?)
    case showTimeseries(String?, limit: Int?, offset: Int)
    case countTimeseries(String?)
    case showDevices(String?)
    case deleteTimeseries([String])
    case insert(device: String, measurements: [String], rows: [(Int64, [Expression])])
    case deleteData(paths: [String], range: ClosedRange<Int64>)
    case select(SelectStatement)
    case createUser(name: String, password: String)
    case dropUser(String)
    case alterPassword(user: String, password: String)
    case grant(user: String, privileges: [String], patterns: [String])
    case revoke(user: String, privileges: [String], patterns: [String])
    case listUsers
    /// `FLUSH [paths] [true|false]`: seal and flush memtables (the paths and the
    /// sequence/unsequence flag are accepted for IoTDB compatibility; the whole region flushes).
    case flush
    /// `SHOW CLUSTER [DETAILS]`: the nodes and their roles, from the meta group.
    case showCluster(details: Bool)
    /// `SHOW DATANODES`: every node (each is a data node) and its status, from the meta group.
    case showDataNodes
    /// `SHOW REGIONS`: every replica of every region group, from the meta group.
    case showRegions
    /// `SHOW DATABASES DETAILS`: each database's replication and region groups, from the meta group.
    case showDatabasesDetails
    /// `REMOVE DATANODE <id>`: marks the node Removing (refused while it holds a last copy).
    case removeDataNode(UInt64)

    public static func == (lhs: Statement, rhs: Statement) -> Bool {
        switch (lhs, rhs) {
        case (.insert(let d1, let m1, let r1), .insert(let d2, let m2, let r2)):
            d1 == d2 && m1 == m2 && r1.count == r2.count && zip(r1, r2).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        case (.createDatabase(let a, let x), .createDatabase(let b, let y)): a == b && x == y
        case (.dropDatabase(let a), .dropDatabase(let b)): a == b
        case (.showDatabases(let a), .showDatabases(let b)): a == b
        case (.createTimeseries(let p1, let t1, let e1, let c1), .createTimeseries(let p2, let t2, let e2, let c2)):
            p1 == p2 && t1 == t2 && e1 == e2 && c1 == c2
        case (.showTimeseries(let a, let l1, let o1), .showTimeseries(let b, let l2, let o2)): a == b && l1 == l2 && o1 == o2
        case (.countTimeseries(let a), .countTimeseries(let b)): a == b
        case (.showDevices(let a), .showDevices(let b)): a == b
        case (.deleteTimeseries(let a), .deleteTimeseries(let b)): a == b
        case (.deleteData(let p1, let r1), .deleteData(let p2, let r2)): p1 == p2 && r1 == r2
        case (.select(let a), .select(let b)): a == b
        case (.createUser(let a, let p), .createUser(let b, let q)): a == b && p == q
        case (.dropUser(let a), .dropUser(let b)): a == b
        case (.alterPassword(let a, let p), .alterPassword(let b, let q)): a == b && p == q
        case (.grant(let a, let p, let x), .grant(let b, let q, let y)), (.revoke(let a, let p, let x), .revoke(let b, let q, let y)):
            a == b && p == q && x == y
        case (.listUsers, .listUsers), (.flush, .flush), (.showDataNodes, .showDataNodes), (.showRegions, .showRegions),
             (.showDatabasesDetails, .showDatabasesDetails): true
        case (.removeDataNode(let a), .removeDataNode(let b)): a == b
        case (.showCluster(let a), .showCluster(let b)): a == b
        default: false
        }
    }

    /// Whether the statement is about the cluster (answered from the meta group, on any node).
    public var isAboutCluster: Bool {
        switch self {
        case .showCluster, .showDataNodes, .showRegions, .showDatabasesDetails, .removeDataNode: true
        default: false
        }
    }

    /// Whether the statement manages users (kept by the meta group, taken by any node).
    public var isUserStatement: Bool {
        switch self {
        case .createUser, .dropUser, .alterPassword, .grant, .revoke, .listUsers: true
        default: false
        }
    }

    /// Whether the statement only reads (answered by `/rest/v2/query`).
    public var isQuery: Bool {
        switch self {
        case .select, .showDatabases, .showTimeseries, .countTimeseries, .showDevices, .listUsers, .showCluster, .showDataNodes, .showRegions,
             .showDatabasesDetails: true
        default: false
        }
    }
}

extension Expression {
    /// The paths the expression reads, as written (relative to FROM), in order.
    public var paths: [[String]] {
        switch self {
        case .path(let levels): [levels]
        case .call(_, let arguments): arguments.flatMap(\.paths)
        case .binary(_, let a, let b): a.paths + b.paths
        case .negate(let inner): inner.paths
        default: []
        }
    }

    /// `time` (or `timestamp`) in a condition: the row's time, not a series.
    var isTime: Bool {
        if case .path(let levels) = self, levels.count == 1 { return ["TIME", "TIMESTAMP"].contains(levels[0].uppercased()) }
        return false
    }
}

extension Condition {
    /// The series paths the condition reads (not `time`), as written, in order.
    public var paths: [[String]] {
        switch self {
        case .and(let a, let b), .or(let a, let b): a.paths + b.paths
        case .not(let inner): inner.paths
        case .compare(let lhs, _, let rhs): (lhs.paths + rhs.paths).filter { !Expression.path($0).isTime }
        }
    }
}
