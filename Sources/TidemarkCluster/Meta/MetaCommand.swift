import TidemarkConsensus
import TidemarkIO

/// A slot of a database and the time partitions of it a write needs.
public struct SlotRequest: Sendable, Equatable {
    public var slot: Int
    public var timePartitions: [Int64]

    public init(slot: Int, timePartitions: [Int64]) {
        self.slot = slot
        self.timePartitions = timePartitions
    }
}

/// An entry of the meta group's log: what a member proposes, every member applies
/// (`MetaState.apply`). Commands carry intents, not results: where a group or a partition
/// goes is decided when the entry is applied, from the state at that index.
public enum MetaCommand: Sendable, Equatable {
    /// A node registers (or, from an address already known, registers again). A member of
    /// the meta group asks for its place in `meta_peers` as its ID; any other node for 0 (the
    /// next free one).
    case registerNode(internalAddress: String, clientAddress: String, cores: Int, requestedID: NodeID = 0)
    case setNodeStatus(NodeID, NodeRecord.Status)
    case createDatabase(DatabaseRecord)
    case dropDatabase(String)
    /// Assigns what is not assigned yet of these slots and time partitions.
    case allocate(database: String, [SlotRequest])
    /// A region group's leader as a replica reported it.
    case reportLeader(GroupID, NodeID)
    case removeNode(NodeID)
    /// A change of a user, as the node's user store encodes it (opaque here): applied by
    /// the meta state machine's `MetaExtension`, so every node of any size of cluster
    /// authenticates against the same users.
    case user([UInt8])
    /// The start of a recorded two-phase metadata operation (DESIGN.md section 3): from here
    /// what it deletes takes no writes (a dropped database no allocations); each region
    /// deletes; `finish` ends it. Beginning one that is in flight already changes nothing.
    case begin(MetaOperation.Kind)
    /// The end of an operation (a drop's database, groups and partitions leave the state then);
    /// finishing one that is not in flight changes nothing.
    case finish(MetaOperation.Kind)

    /// Whether applying it may change which region groups exist or where they are (what a
    /// node's regions follow), rather than only users, statuses or leader hints.
    public var changesPlacement: Bool {
        switch self {
        case .createDatabase, .dropDatabase, .allocate, .removeNode, .finish: true
        case .registerNode, .setNodeStatus, .reportLeader, .user, .begin: false
        }
    }

    /// Bounds on what one entry may name (a command from outside is not trusted).
    static let textBytesMax = 4096
    static let requestsMax = 1_000_000

    public func encoded() -> [UInt8] {
        var writer = ByteWriter()
        switch self {
        case .registerNode(let internalAddress, let clientAddress, let cores, let requestedID):
            writer.write(1)
            writer.write(lengthPrefixed: internalAddress)
            writer.write(lengthPrefixed: clientAddress)
            writer.write(varint: UInt64(max(0, cores)))
            writer.write(varint: requestedID)
        case .setNodeStatus(let node, let status):
            writer.write(2)
            writer.write(varint: node)
            writer.write(lengthPrefixed: status.rawValue)
        case .createDatabase(let database):
            writer.write(3)
            Self.write(database, to: &writer)
        case .dropDatabase(let name):
            writer.write(4)
            writer.write(lengthPrefixed: name)
        case .allocate(let database, let requests):
            writer.write(5)
            writer.write(lengthPrefixed: database)
            writer.write(varint: UInt64(requests.count))
            for request in requests {
                writer.write(varint: UInt64(request.slot))
                writer.write(varint: UInt64(request.timePartitions.count))
                for partition in request.timePartitions { writer.write(signedVarint: partition) }
            }
        case .reportLeader(let group, let leader):
            writer.write(6)
            group.write(to: &writer)
            writer.write(varint: leader)
        case .removeNode(let node):
            writer.write(7)
            writer.write(varint: node)
        case .user(let record):
            writer.write(8)
            writer.write(bytes: record)
        case .begin(let kind):
            writer.write(9)
            kind.write(to: &writer)
        case .finish(let kind):
            writer.write(10)
            kind.write(to: &writer)
        }
        return writer.bytes
    }

    public init(decoding bytes: [UInt8]) throws(CorruptDataError) {
        var reader = ByteReader(bytes)
        switch try reader.readByte() {
        case 1:
            self = .registerNode(internalAddress: try Self.text(&reader), clientAddress: try Self.text(&reader),
                                 cores: try reader.readCount(max: 1 << 20, what: "cores"), requestedID: try reader.readVarint())
        case 2:
            let node = try reader.readVarint()
            guard let status = NodeRecord.Status(rawValue: try Self.text(&reader)) else { throw CorruptDataError("unknown node status") }
            self = .setNodeStatus(node, status)
        case 3: self = .createDatabase(try Self.readDatabase(&reader))
        case 4: self = .dropDatabase(try Self.text(&reader))
        case 9: self = .begin(try MetaOperation.Kind(from: &reader))
        case 10: self = .finish(try MetaOperation.Kind(from: &reader))
        case 5:
            let database = try Self.text(&reader)
            var requests: [SlotRequest] = []
            var partitions = 0
            for _ in 0..<(try reader.readCount(max: min(Self.requestsMax, reader.remaining), what: "slot requests")) {
                let slot = try reader.readCount(max: Int(Int32.max), what: "slot")
                let count = try reader.readCount(max: min(Self.requestsMax - partitions, reader.remaining), what: "time partitions")
                partitions += count
                var list: [Int64] = []
                for _ in 0..<count { list.append(try reader.readSignedVarint()) }
                requests.append(SlotRequest(slot: slot, timePartitions: list))
            }
            self = .allocate(database: database, requests)
        case 6: self = .reportLeader(try Self.readRegionGroup(&reader), try reader.readVarint())
        case 7: self = .removeNode(try reader.readVarint())
        case 8:
            self = .user(Array(bytes[reader.offset...]))
            return
        case let kind: throw CorruptDataError("unknown meta command kind \(kind)")
        }
        guard reader.isAtEnd else { throw CorruptDataError("bytes after a meta command") }
    }

    // MARK: - Parts shared with the snapshot

    static func text(_ reader: inout ByteReader) throws(CorruptDataError) -> String {
        guard let text = try reader.readText(max: textBytesMax) else { throw CorruptDataError("meta text is not UTF-8") }
        return text
    }

    static func write(_ database: DatabaseRecord, to writer: inout ByteWriter) {
        writer.write(lengthPrefixed: database.name)
        writer.write(varint: UInt64(database.schemaReplicationFactor))
        writer.write(varint: UInt64(database.dataReplicationFactor))
        writer.write(varint: UInt64(database.dataRegionGroupsMin))
        writer.write(varint: UInt64(database.schemaRegionGroups))
    }

    static func readDatabase(_ reader: inout ByteReader) throws(CorruptDataError) -> DatabaseRecord {
        DatabaseRecord(name: try text(&reader), schemaReplicationFactor: try reader.readCount(max: 64, what: "schema replication factor"),
                       dataReplicationFactor: try reader.readCount(max: 64, what: "data replication factor"),
                       dataRegionGroupsMin: try reader.readCount(max: 1 << 20, what: "data region groups"),
                       schemaRegionGroups: try reader.readCount(max: 1 << 20, what: "schema region groups"))
    }

    /// A region group: a schema or data group (the meta group is none).
    static func readRegionGroup(_ reader: inout ByteReader) throws(CorruptDataError) -> GroupID {
        let group = try GroupID(from: &reader)
        guard group.kind != .meta else { throw CorruptDataError("the meta group is not a region group") }
        return group
    }
}
