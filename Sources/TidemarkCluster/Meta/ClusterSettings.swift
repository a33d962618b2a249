import TidemarkCore
import TidemarkIO

/// Settings fixed when the cluster is created: every node must agree on them, and a node
/// whose config says otherwise refuses to start (DESIGN.md section 3, "Start-up").
public struct ClusterSettings: Sendable, Equatable {
    public var clusterName = "tidemark"
    /// Slots devices hash into (`SeriesSlots.slot`); IoTDB's default.
    public var seriesSlotCount = 1000
    /// Width of a time partition (7 days).
    public var timePartitionIntervalMs: Int64 = 7 * 24 * 3600 * 1000
    public var schemaReplicationFactor = 1
    public var dataReplicationFactor = 1
    public var schemaConsensus = ReplicationKind.standalone
    public var dataConsensus = ReplicationKind.standalone
    /// Data region groups a database starts with; 0: from the data nodes' cores (IoTDB's AUTO).
    public var dataRegionGroupsPerDatabase = 0
    /// Schema region groups a database starts with.
    public var schemaRegionGroupsPerDatabase = 1

    public init() {}

    /// Each setting by its config key, for the start-up check's message.
    public var named: [(key: String, value: String)] {
        [("cluster_name", clusterName), ("series_slot_num", "\(seriesSlotCount)"),
         ("time_partition_interval_ms", "\(timePartitionIntervalMs)"),
         ("schema_replication_factor", "\(schemaReplicationFactor)"), ("data_replication_factor", "\(dataReplicationFactor)"),
         ("schema_consensus", schemaConsensus.rawValue), ("data_consensus", dataConsensus.rawValue),
         ("data_region_groups_per_database", "\(dataRegionGroupsPerDatabase)"),
         ("schema_region_groups_per_database", "\(schemaRegionGroupsPerDatabase)")]
    }

    /// The settings as bytes (a meta snapshot's first part, and a start-up check's answer).
    public func write(to writer: inout ByteWriter) {
        writer.write(lengthPrefixed: clusterName)
        writer.write(varint: UInt64(seriesSlotCount))
        writer.write(signedVarint: timePartitionIntervalMs)
        writer.write(varint: UInt64(schemaReplicationFactor))
        writer.write(varint: UInt64(dataReplicationFactor))
        writer.write(lengthPrefixed: schemaConsensus.rawValue)
        writer.write(lengthPrefixed: dataConsensus.rawValue)
        writer.write(varint: UInt64(dataRegionGroupsPerDatabase))
        writer.write(varint: UInt64(schemaRegionGroupsPerDatabase))
    }

    public init(from reader: inout ByteReader) throws(CorruptDataError) {
        func text() throws(CorruptDataError) -> String {
            guard let text = try reader.readText(max: 4096) else { throw CorruptDataError("cluster settings: text is not UTF-8") }
            return text
        }
        func kind(_ value: String) throws(CorruptDataError) -> ReplicationKind {
            guard let kind = ReplicationKind(rawValue: value) else { throw CorruptDataError("cluster settings: unknown consensus \(value)") }
            return kind
        }
        clusterName = try text()
        seriesSlotCount = try reader.readCount(max: Int(Int32.max), what: "series slots")
        timePartitionIntervalMs = try reader.readSignedVarint()
        schemaReplicationFactor = try reader.readCount(max: 64, what: "schema replication factor")
        dataReplicationFactor = try reader.readCount(max: 64, what: "data replication factor")
        schemaConsensus = try kind(try text())
        dataConsensus = try kind(try text())
        dataRegionGroupsPerDatabase = try reader.readCount(max: 1 << 20, what: "data region groups")
        schemaRegionGroupsPerDatabase = try reader.readCount(max: 1 << 20, what: "schema region groups")
        guard seriesSlotCount > 0, timePartitionIntervalMs > 0 else { throw CorruptDataError("cluster settings: impossible values") }
    }

    /// The first setting that differs from `other`'s, as (key, this value, other value).
    public func firstDifference(from other: ClusterSettings) -> (key: String, local: String, peer: String)? {
        for (mine, theirs) in zip(named, other.named) where mine.value != theirs.value { return (mine.key, mine.value, theirs.value) }
        return nil
    }
}

/// A node's config names another value for a setting fixed when the cluster was made.
public struct FixedSettingMismatch: Error, Sendable, Equatable, CustomStringConvertible {
    public let key: String
    /// What the cluster was made with.
    public let cluster: String
    /// What this node's config says.
    public let config: String
    /// Where the cluster's value came from (the meta checkpoint, a peer).
    public let source: String

    public var description: String {
        "\(key) is \(config) in this node's config, but the cluster was made with \(key) = \(cluster) (\(source)); fixed settings never change"
    }
}
