import TidemarkConsensus
import TidemarkIO

/// The meta state as bytes: what a meta member's snapshot holds and a new or lagging member
/// restores from. Layout: `"TMMETA2\0" | settings | applied index | route version | next
/// node ID | next group number | nodes | databases | groups | table | operations | u32
/// CRC32C of all before it`. A state with no operation in flight is written as `TMMETA1`,
/// the layout without them, which a node of the previous version still reads (a rolling
/// upgrade). A snapshot that decodes into a state breaking its invariants is refused.
public enum MetaSnapshot {
    static let magic = Array("TMMETA2\0".utf8)
    static let magicWithoutOperations = Array("TMMETA1\0".utf8)
    static let countMax = 10_000_000

    public static func encode(_ state: MetaState) -> [UInt8] {
        var writer = ByteWriter()
        writer.write(bytes: state.operations.isEmpty ? magicWithoutOperations : magic)
        state.settings.write(to: &writer)
        writer.write(varint: state.appliedIndex)
        writer.write(varint: state.routeVersion)
        writer.write(varint: state.nextNodeID)
        writer.write(varint: UInt64(state.nextGroupNumber))
        let nodes = state.nodes.values.sorted { $0.id < $1.id }
        writer.write(varint: UInt64(nodes.count))
        for node in nodes {
            writer.write(varint: node.id)
            writer.write(lengthPrefixed: node.internalAddress)
            writer.write(lengthPrefixed: node.clientAddress)
            writer.write(lengthPrefixed: node.status.rawValue)
            writer.write(varint: UInt64(node.cores))
        }
        let databases = state.databases.values.sorted { $0.name < $1.name }
        writer.write(varint: UInt64(databases.count))
        for database in databases { MetaCommand.write(database, to: &writer) }
        let groups = state.groups.values.sorted { $0.id < $1.id }
        writer.write(varint: UInt64(groups.count))
        for group in groups {
            group.id.write(to: &writer)
            writer.write(lengthPrefixed: group.database)
            writer.write(varint: UInt64(group.replicas.count))
            for node in group.replicas { writer.write(varint: node) }
            writer.write(varint: group.leaderHint ?? 0)
        }
        let table = state.table
        writer.write(varint: table.version)
        writer.write(varint: UInt64(table.schemaSlots.count))
        for (database, slots) in table.schemaSlots.sorted(by: { $0.key < $1.key }) {
            writer.write(lengthPrefixed: database)
            writer.write(varint: UInt64(slots.count))
            for (slot, group) in slots.sorted(by: { $0.key < $1.key }) {
                writer.write(varint: UInt64(slot))
                writer.write(varint: UInt64(group.number))
            }
        }
        writer.write(varint: UInt64(table.dataSlots.count))
        for (database, slots) in table.dataSlots.sorted(by: { $0.key < $1.key }) {
            writer.write(lengthPrefixed: database)
            writer.write(varint: UInt64(slots.count))
            for (slot, partitions) in slots.sorted(by: { $0.key < $1.key }) {
                writer.write(varint: UInt64(slot))
                writer.write(varint: UInt64(partitions.count))
                for (partition, group) in partitions.sorted(by: { $0.key < $1.key }) {
                    writer.write(signedVarint: partition)
                    writer.write(varint: UInt64(group.number))
                }
            }
        }
        let operations = state.operations.values.sorted { $0.id < $1.id }
        if !operations.isEmpty { writer.write(varint: UInt64(operations.count)) }
        for operation in operations {
            writer.write(varint: operation.id)
            operation.kind.write(to: &writer)
        }
        writer.write(littleEndian: CRC32C.checksum(writer.bytes))
        return writer.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(CorruptDataError) -> MetaState {
        let withOperations = Array(bytes.prefix(magic.count)) == magic
        guard bytes.count >= magic.count + 4, withOperations || Array(bytes.prefix(magic.count)) == magicWithoutOperations else {
            throw CorruptDataError("meta snapshot: bad magic (not a meta snapshot, or another version)")
        }
        let stored = bytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: bytes.count - 4, as: UInt32.self)) }
        guard CRC32C.checksum(Array(bytes.dropLast(4))) == stored else { throw CorruptDataError("meta snapshot fails its CRC") }
        var reader = ByteReader(bytes, offset: magic.count, end: bytes.count - 4)
        func count(_ what: String) throws(CorruptDataError) -> Int { try reader.readCount(max: min(countMax, reader.remaining), what: what) }
        func text() throws(CorruptDataError) -> String { try MetaCommand.text(&reader) }
        let settings = try ClusterSettings(from: &reader)
        let appliedIndex = try reader.readVarint(), routeVersion = try reader.readVarint(), nextNodeID = try reader.readVarint()
        let nextGroup = try reader.readVarint()
        guard nextGroup <= UInt64(UInt32.max) else { throw CorruptDataError("meta snapshot: group number out of range") }
        var nodes: [NodeID: NodeRecord] = [:]
        for _ in 0..<(try count("nodes")) {
            let id = try reader.readVarint(), internalAddress = try text(), clientAddress = try text()
            guard let status = NodeRecord.Status(rawValue: try text()) else { throw CorruptDataError("meta snapshot: unknown node status") }
            nodes[id] = NodeRecord(id: id, internalAddress: internalAddress, clientAddress: clientAddress, status: status,
                                   cores: try reader.readCount(max: 1 << 20, what: "cores"))
        }
        var databases: [String: DatabaseRecord] = [:]
        for _ in 0..<(try count("databases")) {
            let database = try MetaCommand.readDatabase(&reader)
            databases[database.name] = database
        }
        var groups: [GroupID: RegionGroup] = [:]
        for _ in 0..<(try count("groups")) {
            let id = try MetaCommand.readRegionGroup(&reader), database = try text()
            var replicas: [NodeID] = []
            for _ in 0..<(try reader.readCount(max: 64, what: "replicas")) { replicas.append(try reader.readVarint()) }
            let leader = try reader.readVarint()
            groups[id] = RegionGroup(id: id, database: database, replicas: replicas, leaderHint: leader == 0 ? nil : leader)
        }
        func group(_ kind: GroupKind) throws(CorruptDataError) -> GroupID {
            let number = try reader.readVarint()
            guard number <= UInt64(UInt32.max) else { throw CorruptDataError("meta snapshot: group number out of range") }
            return GroupID(kind: kind, number: UInt32(number))
        }
        let version = try reader.readVarint()
        var schemaSlots: [String: [Int: GroupID]] = [:]
        for _ in 0..<(try count("schema databases")) {
            let database = try text()
            for _ in 0..<(try count("schema slots")) {
                schemaSlots[database, default: [:]][try reader.readCount(max: settings.seriesSlotCount - 1, what: "slot")] = try group(.schema)
            }
        }
        var dataSlots: [String: [Int: [Int64: GroupID]]] = [:]
        for _ in 0..<(try count("data databases")) {
            let database = try text()
            for _ in 0..<(try count("data slots")) {
                let slot = try reader.readCount(max: settings.seriesSlotCount - 1, what: "slot")
                for _ in 0..<(try count("time partitions")) {
                    dataSlots[database, default: [:]][slot, default: [:]][try reader.readSignedVarint()] = try group(.data)
                }
            }
        }
        var operations: [UInt64: MetaOperation] = [:]
        if withOperations {
            for _ in 0..<(try count("operations")) {
                let id = try reader.readVarint()
                operations[id] = MetaOperation(id: id, kind: try MetaOperation.Kind(from: &reader))
            }
        }
        guard reader.isAtEnd else { throw CorruptDataError("meta snapshot: \(reader.remaining) stray bytes") }
        let state = MetaState(settings: settings, appliedIndex: appliedIndex, nodes: nodes, databases: databases, groups: groups,
                              table: PartitionTable(version: version, schemaSlots: schemaSlots, dataSlots: dataSlots),
                              routeVersion: routeVersion, nextNodeID: nextNodeID, nextGroupNumber: UInt32(nextGroup), operations: operations)
        let broken = state.violations()
        guard broken.isEmpty else { throw CorruptDataError("meta snapshot breaks the meta state's rules: \(broken.prefix(3).joined(separator: "; "))") }
        return state
    }
}
