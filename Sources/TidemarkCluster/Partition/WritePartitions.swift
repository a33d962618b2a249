import TidemarkCore

/// Where a write's rows fall in the partition table (DESIGN.md section 3): each device's
/// database, series slot and time partitions. Pure: the route stage asks `missing` what the
/// table lacks for a batch, has the meta group create and allocate it, and only then sends
/// the write on.
public enum WritePartitions {
    /// The database `device` falls in among `databases`: the one whose name is a level prefix
    /// of it. Nil when none holds it.
    public static func database(of device: String, in databases: [String: DatabaseRecord]) -> String? {
        for end in PathLevel.levelEnds(device) {
            let prefix = String(device[..<end])
            if databases[prefix] != nil { return prefix }
        }
        return databases[device] != nil ? device : nil
    }

    /// The database a write creates for `device` when none holds it: its first two levels,
    /// `root.<name>`, as auto-create makes it. Nil for a path with fewer levels.
    public static func autoDatabase(of device: String) -> String? {
        let ends = PathLevel.levelEnds(device)
        guard let first = ends.first else { return nil }
        return ends.count >= 2 ? String(device[..<ends[1]]) : (device.index(after: first) < device.endIndex ? device : nil)
    }

    /// What `rows` need that `state` lacks: the databases to create (when `createDatabases`,
    /// else devices without one are left to the engine to refuse) and, per database, the
    /// slots and time partitions to allocate. Empty when the table has everything.
    public static func missing(_ rows: RowBatch, in state: MetaState, createDatabases: Bool) -> Needs {
        var needs = Needs()
        let slotCount = state.settings.seriesSlotCount
        let intervalMs = state.settings.timePartitionIntervalMs
        // This runs on every write (the route stage, on the decode threads): databases are
        // numbered once and their parts of the table fetched once, so a key costs a prefix
        // test, a hash of its device and two integer lookups, with nothing allocated.
        var names = state.databases.keys.sorted()
        var dataSlots = names.map { state.table.dataSlots[$0] ?? [:] }
        var schemaSlots = names.map { state.table.schemaSlots[$0] ?? [:] }
        func number(of device: String) -> Int? {
            if names.count <= 16 {
                return names.firstIndex { name in
                    device.utf8.count > name.utf8.count && device.utf8.starts(with: name.utf8)
                        && device.utf8[device.utf8.index(device.utf8.startIndex, offsetBy: name.utf8.count)] == UInt8(ascii: ".")
                }
            }
            return database(of: device, in: state.databases).flatMap { names.firstIndex(of: $0) }
        }
        // Per key: its database's number and its slot, then each row's partition (rows of a key mostly share one).
        var placed: [(database: Int, slot: Int)?] = []
        placed.reserveCapacity(rows.keys.count)
        for key in rows.keys {
            var database = number(of: key.device)
            if database == nil, createDatabases, let created = autoDatabase(of: key.device) {
                if !needs.databases.contains(created) {
                    needs.databases.append(created)
                    names.append(created)
                    dataSlots.append([:])
                    schemaSlots.append([:])
                }
                database = names.firstIndex(of: created)
            }
            placed.append(database.map { ($0, SeriesSlots.slot(ofDevice: key.device, slotCount: slotCount)) })
        }
        var requested: [Int: [Int: Set<Int64>]] = [:]
        var lastSeen: [Int64?] = Array(repeating: nil, count: rows.keys.count)
        for row in 0..<rows.rowCount {
            let key = Int(rows.rowKeys[row])
            guard let (database, slot) = placed[key] else { continue }
            let partition = SeriesSlots.timePartition(of: rows.rowTimestamps[row], intervalMs: intervalMs)
            if lastSeen[key] == partition { continue }
            lastSeen[key] = partition
            if dataSlots[database][slot]?[partition] != nil && schemaSlots[database][slot] != nil { continue }
            requested[database, default: [:]][slot, default: []].insert(partition)
        }
        for (database, slots) in requested {
            needs.allocations[names[database]] = slots.keys.sorted().map { SlotRequest(slot: $0, timePartitions: slots[$0]!.sorted()) }
        }
        return needs
    }

    /// What a write needs of the meta group before it can go on.
    public struct Needs: Sendable, Equatable {
        /// Databases a write brings, to create first.
        public var databases: [String] = []
        /// Per database, the slots and time partitions to allocate.
        public var allocations: [String: [SlotRequest]] = [:]

        public init() {}

        public var isEmpty: Bool { databases.isEmpty && allocations.isEmpty }
    }
}
