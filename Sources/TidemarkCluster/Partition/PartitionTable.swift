import TidemarkConsensus
/// The cluster's partition table (DESIGN.md section 3): (database, slot) to a schema region
/// group, (database, slot, time partition) to a data region group. Pure and versioned: the
/// version is the meta log index of its last change, never a clock. An assignment never
/// changes once made; only dropping its database removes it.
public struct PartitionTable: Sendable, Equatable {
    /// The meta log index of the last change (0: empty, never changed).
    public private(set) var version: UInt64 = 0
    /// Per database, per slot, the schema region group.
    public private(set) var schemaSlots: [String: [Int: GroupID]] = [:]
    /// Per database, per slot, per time partition, the data region group.
    public private(set) var dataSlots: [String: [Int: [Int64: GroupID]]] = [:]

    public init() {}

    public func schemaGroup(_ database: String, slot: Int) -> GroupID? { schemaSlots[database]?[slot] }

    public func dataGroup(_ database: String, slot: Int, timePartition: Int64) -> GroupID? {
        dataSlots[database]?[slot]?[timePartition]
    }

    /// The group of the slot's latest time partition: where its next partition goes, unless
    /// the allocator moves the slot's future to a less loaded group.
    public func currentDataGroup(_ database: String, slot: Int) -> GroupID? {
        guard let partitions = dataSlots[database]?[slot], let latest = partitions.keys.max() else { return nil }
        return partitions[latest]
    }

    /// Slots whose current data group is each group of `database` (groups without one absent).
    public func currentDataSlotCounts(_ database: String) -> [GroupID: Int] {
        var counts: [GroupID: Int] = [:]
        for slot in (dataSlots[database] ?? [:]).keys {
            if let group = currentDataGroup(database, slot: slot) { counts[group, default: 0] += 1 }
        }
        return counts
    }

    /// Slots assigned to each schema group of `database`.
    public func schemaSlotCounts(_ database: String) -> [GroupID: Int] {
        var counts: [GroupID: Int] = [:]
        for group in (schemaSlots[database] ?? [:]).values { counts[group, default: 0] += 1 }
        return counts
    }

    mutating func assignSchema(_ database: String, slot: Int, to group: GroupID, version: UInt64) {
        precondition(group.kind == .schema, "a schema slot goes to a schema group")
        precondition(schemaSlots[database]?[slot] == nil, "\(database) slot \(slot) is assigned already")
        schemaSlots[database, default: [:]][slot] = group
        advance(to: version)
    }

    mutating func assignData(_ database: String, slot: Int, timePartition: Int64, to group: GroupID, version: UInt64) {
        precondition(group.kind == .data, "a data slot goes to a data group")
        precondition(dataSlots[database]?[slot]?[timePartition] == nil, "\(database) slot \(slot) partition \(timePartition) is assigned already")
        dataSlots[database, default: [:]][slot, default: [:]][timePartition] = group
        advance(to: version)
    }

    mutating func dropDatabase(_ database: String, version: UInt64) {
        schemaSlots[database] = nil
        dataSlots[database] = nil
        advance(to: version)
    }

    private mutating func advance(to newVersion: UInt64) {
        precondition(newVersion >= version, "the table's version only grows (\(version) → \(newVersion))")
        version = newVersion
    }

    /// Restores a table from its parts (a meta snapshot); the caller checked them.
    init(version: UInt64, schemaSlots: [String: [Int: GroupID]], dataSlots: [String: [Int: [Int64: GroupID]]]) {
        self.version = version
        self.schemaSlots = schemaSlots
        self.dataSlots = dataSlots
    }
}
