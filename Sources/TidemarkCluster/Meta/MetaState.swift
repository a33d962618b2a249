import TidemarkConsensus
import TidemarkIO
/// A node as the meta group knows it.
public struct NodeRecord: Sendable, Equatable {
    public enum Status: String, Sendable, Equatable, CaseIterable {
        case running = "Running"
        /// Missed heartbeats for `node_unknown_after_ms`.
        case unknown = "Unknown"
        /// Disk almost full: takes no new regions or writes.
        case readOnly = "ReadOnly"
        /// Being removed: takes no new regions.
        case removing = "Removing"
    }

    public var id: NodeID
    /// `host:port` of its internal RPC listener (its identity: a node registering again from
    /// the same address gets its ID back).
    public var internalAddress: String
    /// `host:port` clients reach it at (its `http.listen`).
    public var clientAddress: String
    public var status: Status
    public var cores: Int

    /// Regions it may hold (IoTDB: `data_region_per_data_node` 0 = cores / 2), at least one.
    public var regionCapacity: Int { max(1, cores / 2) }
}

/// A database and how it replicates.
public struct DatabaseRecord: Sendable, Equatable {
    public var name: String
    public var schemaReplicationFactor: Int
    public var dataReplicationFactor: Int
    /// Data region groups it holds at least (0: as many as the cluster's capacity gives it).
    public var dataRegionGroupsMin: Int
    public var schemaRegionGroups: Int

    public init(name: String, schemaReplicationFactor: Int, dataReplicationFactor: Int, dataRegionGroupsMin: Int, schemaRegionGroups: Int) {
        self.name = name
        self.schemaReplicationFactor = schemaReplicationFactor
        self.dataReplicationFactor = dataReplicationFactor
        self.dataRegionGroupsMin = dataRegionGroupsMin
        self.schemaRegionGroups = schemaRegionGroups
    }

    /// A database with the cluster's defaults (as a write or `CREATE TIMESERIES` makes one).
    public init(name: String, defaults settings: ClusterSettings) {
        self.init(name: name, schemaReplicationFactor: settings.schemaReplicationFactor, dataReplicationFactor: settings.dataReplicationFactor,
                  dataRegionGroupsMin: settings.dataRegionGroupsPerDatabase, schemaRegionGroups: settings.schemaRegionGroupsPerDatabase)
    }
}

/// A metadata operation in flight (DESIGN.md section 3): recorded when it starts, applied on
/// every node, recorded again when it finishes; a node that restarts, or a new meta leader,
/// resumes it to the end.
public struct MetaOperation: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// `DROP DATABASE`: each region deletes the database's data, then it leaves the state.
        case dropDatabase(String)
        /// `DELETE TIMESERIES` of a path pattern: each region deletes the series it matches.
        case deleteSeries(String)
        /// `DELETE FROM <pattern> WHERE time …`: each region deletes the points in the range.
        case deleteData(String, ClosedRange<Int64>)
    }
    /// The meta log index that started it.
    public var id: UInt64
    public var kind: Kind

    public init(id: UInt64, kind: Kind) {
        self.id = id
        self.kind = kind
    }
}

extension MetaOperation.Kind {
    /// `kind byte | pattern or name | (a data delete) the range's ends as signed varints`, as
    /// meta commands and snapshots carry it.
    func write(to writer: inout ByteWriter) {
        switch self {
        case .dropDatabase(let name):
            writer.write(1)
            writer.write(lengthPrefixed: name)
        case .deleteSeries(let pattern):
            writer.write(2)
            writer.write(lengthPrefixed: pattern)
        case .deleteData(let pattern, let range):
            writer.write(3)
            writer.write(lengthPrefixed: pattern)
            writer.write(signedVarint: range.lowerBound)
            writer.write(signedVarint: range.upperBound)
        }
    }

    init(from reader: inout ByteReader) throws(CorruptDataError) {
        let kind = try reader.readByte()
        let text = try MetaCommand.text(&reader)
        switch kind {
        case 1: self = .dropDatabase(text)
        case 2: self = .deleteSeries(text)
        case 3:
            let low = try reader.readSignedVarint(), high = try reader.readSignedVarint()
            guard low <= high else { throw CorruptDataError("a delete's time range \(low)…\(high) is empty") }
            self = .deleteData(text, low...high)
        default: throw CorruptDataError("unknown metadata operation kind \(kind)")
        }
    }
}

/// A region group: its database, its replicas (by node) and the leader last reported.
public struct RegionGroup: Sendable, Equatable {
    public var id: GroupID
    public var database: String
    public var replicas: [NodeID]
    public var leaderHint: NodeID?
}

/// A refusal of a meta command, decided by the state alone (the same on every member).
public struct MetaError: Error, Sendable, Equatable, CustomStringConvertible {
    /// IoTDB's status code (501 database exists, 500 no such database, …).
    public var code: Int
    public var message: String

    public init(code: Int, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

/// The meta group's state (DESIGN.md section 3): the nodes, the databases, the region
/// groups and the partition table. Pure: `apply` takes a command and the meta log index it
/// sits at and changes the state as every member does; allocation (which group a partition
/// goes to, which nodes a group's replicas go to) is a function of the state alone.
public struct MetaState: Sendable, Equatable {
    public let settings: ClusterSettings
    /// The meta log index of the last command applied.
    public private(set) var appliedIndex: UInt64 = 0
    public private(set) var nodes: [NodeID: NodeRecord] = [:]
    public private(set) var databases: [String: DatabaseRecord] = [:]
    public private(set) var groups: [GroupID: RegionGroup] = [:]
    public private(set) var table = PartitionTable()
    /// The meta log index of the last change of a group's replicas, leader or a node's
    /// status: nodes apply a route map only when it is newer than theirs.
    public private(set) var routeVersion: UInt64 = 0
    /// Metadata operations started and not finished, by the index that started them.
    public private(set) var operations: [UInt64: MetaOperation] = [:]
    var nextNodeID: NodeID = 1
    var nextGroupNumber: UInt32 = 1
    var placement = ReplicaPlacement()

    /// `reservedNodeIDs`: IDs 1…n are kept for the meta group's members (their places in
    /// `meta_peers`); other nodes are numbered after them.
    public init(settings: ClusterSettings, reservedNodeIDs: Int = 0) {
        precondition(reservedNodeIDs >= 0, "a count of IDs")
        self.settings = settings
        nextNodeID = NodeID(reservedNodeIDs) + 1
    }

    /// What a command gave back.
    public enum Outcome: Sendable, Equatable {
        case done
        /// The ID of the node that registered.
        case node(NodeID)
    }

    /// Applies `command`, the meta log's entry at `index`; throws, changing nothing, when the
    /// state refuses it. Every check comes before the first change, so a refusal leaves no trace.
    @discardableResult
    public mutating func apply(_ command: MetaCommand, index: UInt64) throws(MetaError) -> Outcome {
        precondition(index > appliedIndex, "meta entries apply in order, once (\(appliedIndex) then \(index))")
        let outcome = try applyChecked(command, index: index)
        appliedIndex = index
        return outcome
    }

    private mutating func applyChecked(_ command: MetaCommand, index: UInt64) throws(MetaError) -> Outcome {
        switch command {
        case .registerNode(let internalAddress, let clientAddress, let cores, let requestedID):
            return .node(try register(internalAddress: internalAddress, clientAddress: clientAddress, cores: cores, requestedID: requestedID, index: index))
        case .setNodeStatus(let node, let status):
            guard nodes[node] != nil else { throw MetaError(code: 918, "no node \(node)") }
            nodes[node]!.status = status
            routeVersion = index
        case .createDatabase(let database):
            try createDatabase(database, index: index)
        case .dropDatabase(let name):
            guard databases[name] != nil else { throw MetaError(code: 500, "\(name): no such database") }
            if let operation = dropping(name) { operations[operation.id] = nil }
            dropDatabase(name, index: index)
        case .begin(let kind):
            if case .dropDatabase(let name) = kind, databases[name] == nil { throw MetaError(code: 500, "\(name): no such database") }
            // Begun already (a retried statement, a resumed operation): the same one goes on.
            if operation(kind) == nil { operations[index] = MetaOperation(id: index, kind: kind) }
        case .finish(let kind):
            // Finished already: nothing left to do.
            guard let operation = operation(kind) else { return .done }
            operations[operation.id] = nil
            if case .dropDatabase(let name) = kind, databases[name] != nil { dropDatabase(name, index: index) }
        case .allocate(let database, let requests):
            try allocate(database, requests, index: index)
        case .reportLeader(let group, let leader):
            guard let known = groups[group], known.replicas.contains(leader) else { return .done }  // stale: ignored
            if known.leaderHint != leader {
                groups[group]!.leaderHint = leader
                routeVersion = index
            }
        case .removeNode(let node):
            try removeNode(node, index: index)
        case .user:
            break  // the meta state machine's extension (the user store) applies it
        }
        return .done
    }

    // MARK: - Nodes

    private mutating func register(internalAddress: String, clientAddress: String, cores: Int, requestedID: NodeID,
                                   index: UInt64) throws(MetaError) -> NodeID {
        let known = nodes.values.first { $0.internalAddress == internalAddress }
        if requestedID != 0 {
            if let known, known.id != requestedID {
                throw MetaError(code: 921, "\(internalAddress) is node \(known.id), not node \(requestedID) (meta_peers lists the meta group in another order?)")
            }
            if let holder = nodes[requestedID], holder.internalAddress != internalAddress {
                throw MetaError(code: 921, "node \(requestedID) is \(holder.internalAddress), not \(internalAddress)")
            }
        }
        if let known {
            nodes[known.id]!.clientAddress = clientAddress
            nodes[known.id]!.cores = cores
            if known.status == .unknown { nodes[known.id]!.status = .running }
            routeVersion = index
            return known.id
        }
        let id = requestedID != 0 ? requestedID : nextNodeID
        nextNodeID = max(nextNodeID, id + 1)
        nodes[id] = NodeRecord(id: id, internalAddress: internalAddress, clientAddress: clientAddress, status: .running, cores: max(1, cores))
        routeVersion = index
        return id
    }

    /// Refused while the node holds the only live copy of a region: draining it first is the
    /// handoff's job.
    private mutating func removeNode(_ node: NodeID, index: UInt64) throws(MetaError) {
        guard nodes[node] != nil else { throw MetaError(code: 918, "no node \(node)") }
        for group in groups.values.sorted(by: { $0.id < $1.id }) where group.replicas.contains(node) {
            let otherLive = group.replicas.filter { $0 != node && nodes[$0]?.status == .running }
            guard !otherLive.isEmpty else {
                throw MetaError(code: 919, "node \(node) holds the only live copy of \(group.id) (database \(group.database)); move the region first")
            }
        }
        nodes[node]!.status = .removing
        routeVersion = index
    }

    /// The operation of `kind` in flight, if one is.
    public func operation(_ kind: MetaOperation.Kind) -> MetaOperation? {
        operations.values.first { $0.kind == kind }
    }

    /// The drop of `database` in flight, if one is.
    public func dropping(_ database: String) -> MetaOperation? { operation(.dropDatabase(database)) }

    private mutating func dropDatabase(_ name: String, index: UInt64) {
        for group in groups.values where group.database == name {
            placement.remove(group.replicas, database: name)
            groups[group.id] = nil
        }
        databases[name] = nil
        table.dropDatabase(name, version: index)
        routeVersion = index
    }

    /// Nodes that may take new regions, by ID.
    var placeable: [NodeID] { nodes.values.filter { $0.status == .running }.map(\.id).sorted() }

    // MARK: - Databases and groups

    private mutating func createDatabase(_ database: DatabaseRecord, index: UInt64) throws(MetaError) {
        let name = database.name
        guard databases[name] == nil else { throw MetaError(code: 501, "\(name): database already exists") }
        for other in databases.keys where other.hasPrefix(name + ".") || name.hasPrefix(other + ".") {
            throw MetaError(code: 501, "\(name) overlaps database \(other)")
        }
        for (what, factor) in [("schema", database.schemaReplicationFactor), ("data", database.dataReplicationFactor)] {
            guard factor >= 1 else { throw MetaError(code: 700, "\(name): a \(what) replication factor is at least 1") }
            guard placeable.count >= factor else {
                throw MetaError(code: 920, "\(name): \(what) replication factor \(factor) needs \(factor) running nodes; the cluster has \(placeable.count)")
            }
        }
        guard database.schemaRegionGroups >= 1 else { throw MetaError(code: 700, "\(name): a database has at least one schema region group") }
        databases[name] = database
        // The factors were checked against the running nodes above: every group finds its nodes.
        for _ in 0..<database.schemaRegionGroups { precondition(addGroup(.schema, database, index: index)) }
        while groupCount(name, .data) < dataGroupTarget(database) { precondition(addGroup(.data, database, index: index)) }
    }

    /// Data region groups `database` should hold: at least its minimum (1 when automatic),
    /// and its share of the nodes' region capacity (IoTDB's AUTO extension policy).
    public func dataGroupTarget(_ database: DatabaseRecord) -> Int {
        let capacity = nodes.values.filter { $0.status == .running }.reduce(0) { $0 + $1.regionCapacity }
        let share = capacity / (max(1, database.dataReplicationFactor) * max(1, databases.count))
        return max(max(1, database.dataRegionGroupsMin), share)
    }

    public func groupCount(_ database: String, _ kind: GroupKind) -> Int {
        groups.values.filter { $0.database == database && $0.id.kind == kind }.count
    }

    /// Adds a group of `database`, its replicas placed on running nodes; false (nothing added)
    /// when there are fewer of them than its replication factor.
    private mutating func addGroup(_ kind: GroupKind, _ database: DatabaseRecord, index: UInt64) -> Bool {
        let factor = kind == .schema ? database.schemaReplicationFactor : database.dataReplicationFactor
        guard let replicas = placement.choose(factor, database: database.name, among: placeable) else { return false }
        let id = GroupID(kind: kind, number: nextGroupNumber)
        nextGroupNumber += 1
        groups[id] = RegionGroup(id: id, database: database.name, replicas: replicas, leaderHint: replicas.first)
        placement.add(replicas, database: database.name)
        routeVersion = index
        return true
    }

    // MARK: - Partitions

    /// Assigns every requested (slot) and (slot, time partition) of `database` not assigned
    /// yet. A new slot goes to the group with the fewest slots; a new time partition of a slot
    /// to the slot's current group, unless that group has two or more slots more than the
    /// least loaded one (groups were added): then that slot's future moves there. History
    /// never moves.
    private mutating func allocate(_ name: String, _ requests: [SlotRequest], index: UInt64) throws(MetaError) {
        guard let database = databases[name] else { throw MetaError(code: 500, "\(name): no such database") }
        guard dropping(name) == nil else { throw MetaError(code: 606, "\(name) is being dropped; write to it again once the drop finished") }
        for request in requests {
            guard request.slot >= 0 && request.slot < settings.seriesSlotCount else {
                throw MetaError(code: 700, "slot \(request.slot) is outside 0..<\(settings.seriesSlotCount)")
            }
        }
        // Grown while the running nodes allow (too few of them now: the groups it has serve).
        while groupCount(name, .data) < dataGroupTarget(database), addGroup(.data, database, index: index) {}
        let schemaGroups = groups.values.filter { $0.database == name && $0.id.kind == .schema }.map(\.id).sorted()
        let dataGroups = groups.values.filter { $0.database == name && $0.id.kind == .data }.map(\.id).sorted()
        var schemaCounts = table.schemaSlotCounts(name)
        var dataCounts = table.currentDataSlotCounts(name)
        func leastLoaded(_ candidates: [GroupID], _ counts: [GroupID: Int]) -> GroupID {
            candidates.min { (counts[$0] ?? 0, $0) < (counts[$1] ?? 0, $1) }!
        }
        for request in requests.sorted(by: { $0.slot < $1.slot }) {
            let slot = request.slot
            if table.schemaGroup(name, slot: slot) == nil {
                let group = leastLoaded(schemaGroups, schemaCounts)
                table.assignSchema(name, slot: slot, to: group, version: index)
                schemaCounts[group, default: 0] += 1
            }
            for partition in Set(request.timePartitions).sorted() where table.dataGroup(name, slot: slot, timePartition: partition) == nil {
                let current = table.currentDataGroup(name, slot: slot)
                let lightest = leastLoaded(dataGroups, dataCounts)
                let group: GroupID
                if let current, (dataCounts[current] ?? 0) < (dataCounts[lightest] ?? 0) + 2 {
                    group = current
                } else {
                    group = lightest
                }
                // Only the latest partition decides where the slot's future goes.
                let latest = table.dataSlots[name]?[slot]?.keys.max()
                table.assignData(name, slot: slot, timePartition: partition, to: group, version: index)
                if latest == nil || partition > latest! {
                    if let current { dataCounts[current, default: 1] -= 1 }
                    dataCounts[group, default: 0] += 1
                }
            }
        }
    }

    // MARK: - Checks

    /// What breaks the state's invariants, if anything (the simulator and tests call it).
    public func violations() -> [String] {
        var found: [String] = []
        var recount = ReplicaPlacement()
        for group in groups.values.sorted(by: { $0.id < $1.id }) {
            if Set(group.replicas).count != group.replicas.count { found.append("\(group.id) has two replicas on one node: \(group.replicas)") }
            for node in group.replicas where nodes[node] == nil { found.append("\(group.id) has a replica on unknown node \(node)") }
            if databases[group.database] == nil { found.append("\(group.id) belongs to no database (\(group.database))") }
            if Set(group.replicas).count == group.replicas.count { recount.add(group.replicas, database: group.database) }
        }
        if recount != placement { found.append("the placement counters differ from the groups") }
        for operation in operations.values {
            if operation.id > appliedIndex && appliedIndex > 0 { found.append("operation \(operation.id) starts after the applied index \(appliedIndex)") }
            if case .dropDatabase(let name) = operation.kind, databases[name] == nil { found.append("operation \(operation.id) drops \(name), which does not exist") }
        }
        for (database, slots) in table.schemaSlots {
            for (slot, id) in slots where groups[id]?.database != database || id.kind != .schema {
                found.append("\(database) slot \(slot) names schema group \(id), which is not one of its schema groups")
            }
        }
        for (database, slots) in table.dataSlots {
            for (slot, partitions) in slots {
                for (partition, id) in partitions where groups[id]?.database != database || id.kind != .data {
                    found.append("\(database) slot \(slot) partition \(partition) names data group \(id), which is not one of its data groups")
                }
            }
        }
        if table.version > appliedIndex { found.append("table version \(table.version) is past the applied index \(appliedIndex)") }
        return found
    }

    /// Restores a state from its parts (`MetaSnapshot`); the caller checks `violations()`.
    init(settings: ClusterSettings, appliedIndex: UInt64, nodes: [NodeID: NodeRecord], databases: [String: DatabaseRecord],
         groups: [GroupID: RegionGroup], table: PartitionTable, routeVersion: UInt64, nextNodeID: NodeID, nextGroupNumber: UInt32,
         operations: [UInt64: MetaOperation] = [:]) {
        self.operations = operations
        self.settings = settings
        self.appliedIndex = appliedIndex
        self.nodes = nodes
        self.databases = databases
        self.groups = groups
        self.table = table
        self.routeVersion = routeVersion
        self.nextNodeID = nextNodeID
        self.nextGroupNumber = nextGroupNumber
        for group in groups.values.sorted(by: { $0.id < $1.id }) where Set(group.replicas).count == group.replicas.count {
            placement.add(group.replicas, database: group.database)
        }
    }
}
