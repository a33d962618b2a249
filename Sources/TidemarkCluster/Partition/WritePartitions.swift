import TidemarkConsensus
import TidemarkStorage
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
        var databases = DatabaseNumbers(state)
        // Per key: its database's number and its slot, then each row's partition (rows of a key mostly share one).
        var placed: [(database: Int, slot: Int)?] = []
        placed.reserveCapacity(rows.keys.count)
        for key in rows.keys {
            var database = databases.number(of: key.device)
            if database == nil, createDatabases, let created = autoDatabase(of: key.device) {
                if !needs.databases.contains(created) {
                    needs.databases.append(created)
                    databases.add(created)
                }
                database = databases.names.firstIndex(of: created)
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
            if databases.dataSlots[database][slot]?[partition] != nil && databases.schemaSlots[database][slot] != nil { continue }
            requested[database, default: [:]][slot, default: []].insert(partition)
        }
        for (database, slots) in requested {
            needs.allocations[databases.names[database]] = slots.keys.sorted().map { SlotRequest(slot: $0, timePartitions: slots[$0]!.sorted()) }
        }
        return needs
    }

    /// The data region group of each row of `rows`: its database's, slot's and time
    /// partition's in the table (nil for a row outside every database or not allocated yet).
    public static func place(_ rows: RowBatch, in state: MetaState) -> Placement {
        var placer = Placer(state)
        return placer.place(rows)
    }

    /// Places the rows of many writes against one state: the databases are numbered, and
    /// each one's single data group found, once for all of them (the append stage makes one
    /// per batch), not per write.
    public struct Placer {
        private let state: MetaState
        private let databases: DatabaseNumbers
        /// Per database number, its one data group when it has one (nil), looked up on first use.
        private var onlyGroup: [GroupID??]

        public init(_ state: MetaState) {
            self.state = state
            databases = DatabaseNumbers(state)
            onlyGroup = Array(repeating: .none, count: databases.names.count)
        }

        public mutating func place(_ rows: RowBatch) -> Placement {
            let slotCount = state.settings.seriesSlotCount
            let intervalMs = state.settings.timePartitionIntervalMs
            // A database with one data group (a one-node cluster's usual case) sends all its
            // rows there whatever their slot and partition.
            var keyDatabase: [Int?] = []
            var keySlot: [Int] = []
            keyDatabase.reserveCapacity(rows.keys.count)
            keySlot.reserveCapacity(rows.keys.count)
            for key in rows.keys {
                let database = databases.number(of: key.device)
                if let database, onlyGroup[database] == nil {
                    let groups = state.groups.values.filter { $0.database == databases.names[database] && $0.id.kind == .data }
                    onlyGroup[database] = .some(groups.count == 1 ? groups[0].id : nil)
                }
                keyDatabase.append(database)
                let needsSlot = database.map { onlyGroup[$0]! == nil } ?? false
                keySlot.append(needsSlot ? SeriesSlots.slot(ofDevice: key.device, slotCount: slotCount) : 0)
            }
            var groups: [GroupID?] = []
            groups.reserveCapacity(rows.rowCount)
            var uniform = true
            for row in 0..<rows.rowCount {
                let key = Int(rows.rowKeys[row])
                var group: GroupID?
                if let database = keyDatabase[key] {
                    if let only = onlyGroup[database]! {
                        group = only
                    } else {
                        let partition = SeriesSlots.timePartition(of: rows.rowTimestamps[row], intervalMs: intervalMs)
                        group = databases.dataSlots[database][keySlot[key]]?[partition]
                    }
                }
                if row > 0 && group != groups[0] { uniform = false }
                groups.append(group)
            }
            if uniform, let only = groups.first ?? nil { return Placement(single: only, rowGroups: []) }
            return Placement(single: nil, rowGroups: groups)
        }
    }

    /// Why `rows` may not be written now, if a metadata operation in flight touches them: a
    /// database being dropped, or a series a `DELETE TIMESERIES` is deleting (written now, it
    /// could be deleted after it was acknowledged when a crash makes the delete resume).
    public static func refusedByOperations(_ rows: RowBatch, in state: MetaState) -> String? {
        guard !state.operations.isEmpty else { return nil }
        var dropping = Set<String>()
        // Patterns being deleted, with the times they delete (all, for a series delete).
        var deleting: [(text: String, pattern: PathPattern, range: ClosedRange<Int64>)] = []
        for operation in state.operations.values {
            switch operation.kind {
            case .dropDatabase(let name): dropping.insert(name)
            case .deleteSeries(let text): if let pattern = try? PathPattern(parsing: text) { deleting.append((text, pattern, Int64.min...Int64.max)) }
            case .deleteData(let text, let range): if let pattern = try? PathPattern(parsing: text) { deleting.append((text, pattern, range)) }
            }
        }
        // Per key, the span of its rows' timestamps (a row in a range being deleted is refused).
        var spans = [ClosedRange<Int64>?](repeating: nil, count: rows.keys.count)
        if !deleting.isEmpty {
            for row in 0..<rows.rowCount {
                let key = Int(rows.rowKeys[row]), time = rows.rowTimestamps[row]
                spans[key] = spans[key].map { min($0.lowerBound, time)...max($0.upperBound, time) } ?? time...time
            }
        }
        let databases = DatabaseNumbers(state)
        for (keyIndex, key) in rows.keys.enumerated() {
            if let number = databases.number(of: key.device), dropping.contains(databases.names[number]) {
                return "\(databases.names[number]) is being dropped; write again once the drop finished"
            }
            guard let span = spans[keyIndex] else { continue }
            for index in key.measurements.indices {
                let path = key.path(index)
                if let match = deleting.first(where: { $0.range.overlaps(span) && $0.pattern.matches(path) }) {
                    return "\(path) is being deleted (\(match.text)); write again once the delete finished"
                }
            }
        }
        return nil
    }

    /// Where a batch's rows go (`place`).
    public struct Placement: Sendable, Equatable {
        /// Every row goes to this group.
        public var single: GroupID?
        /// Otherwise, each row's group (nil: no database holds it, or not allocated).
        public var rowGroups: [GroupID?]

        public init(single: GroupID?, rowGroups: [GroupID?]) {
            self.single = single
            self.rowGroups = rowGroups
        }
    }

    /// The table's databases numbered once per batch, with their parts of the table, so a
    /// key costs a prefix test, a hash of its device and two integer lookups, with nothing
    /// allocated (this runs on every write).
    private struct DatabaseNumbers {
        let state: MetaState
        private(set) var names: [String]
        private(set) var dataSlots: [[Int: [Int64: GroupID]]]
        private(set) var schemaSlots: [[Int: GroupID]]

        init(_ state: MetaState) {
            self.state = state
            names = state.databases.keys.sorted()
            dataSlots = names.map { state.table.dataSlots[$0] ?? [:] }
            schemaSlots = names.map { state.table.schemaSlots[$0] ?? [:] }
        }

        /// A database the batch creates (nothing in the table yet).
        mutating func add(_ name: String) {
            names.append(name)
            dataSlots.append([:])
            schemaSlots.append([:])
        }

        func number(of device: String) -> Int? {
            if names.count <= 16 {
                // A device is in a database it equals, or one that is a level prefix of it.
                return names.firstIndex { name in
                    device.utf8.starts(with: name.utf8)
                        && (device.utf8.count == name.utf8.count
                            || device.utf8[device.utf8.index(device.utf8.startIndex, offsetBy: name.utf8.count)] == UInt8(ascii: "."))
                }
            }
            return database(of: device, in: state.databases).flatMap { names.firstIndex(of: $0) }
        }
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
