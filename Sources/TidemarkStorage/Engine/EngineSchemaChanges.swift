import Synchronization
import TidemarkCore
import TidemarkIO

/// Where a statement's refusal waits while its entry goes through the group: the apply on
/// the proposing node puts the engine's own error here, since the group reports only that
/// the entry was refused.
public final class ApplyOutcome: Sendable {
    private let refusal = Mutex<EngineError?>(nil)

    public init() {}

    func refuse(_ error: EngineError) { refusal.withLock { $0 = error } }

    /// Why the entry was refused, when it was, on this node.
    public var error: EngineError? { refusal.withLock { $0 } }
}

/// Schema statements and deletes. A region with its own WAL runs them at once; a region
/// whose log is its consensus group's proposes each as one entry (`routeChanges`), which
/// every replica applies at the same log position: schema and data never part, and a
/// follower changes nothing on its own (the group refuses a proposal there).
extension StorageEngine {
    /// How a `.consensus` region logs what it changes besides points: `propose` hands the
    /// record, with the outcome its apply fills in as the proposal's local, to the group and
    /// returns once it is applied, throwing when it is not.
    public func routeChanges(through propose: @escaping @Sendable ([UInt8], ApplyOutcome) throws -> Void) {
        precondition(wal == nil, "a region with its own WAL logs its changes itself")
        changeProposer.withLock { $0 = propose }
    }

    public func createDatabase(_ name: String) throws { try change(.createDatabase(name)) }

    public func createSeries(_ series: SeriesSchema) throws { try change(.createSeries(series)) }

    /// Deletes the series matching `pattern` and all their points.
    public func deleteSeries(matching pattern: PathPattern) throws { try change(.deleteSeries(pattern: pattern.description)) }

    /// Drops a database: its points (a delete over all time), its series, and every segment
    /// file that holds nothing else.
    public func dropDatabase(_ name: String) throws { try change(.deleteDatabase(name)) }

    /// Deletes points of series matching `pattern` within `range` (inclusive).
    public func delete(matching pattern: PathPattern, range: ClosedRange<Int64>) throws {
        try run(.delete(pattern: pattern.description, range: range))
    }

    private func change(_ record: SchemaRecord) throws { try run(.schema(record)) }

    /// Proposes `record` to the group, or with an own WAL logs, syncs and applies it.
    private func run(_ record: EngineRecord) throws {
        let bytes = record.encoded()
        guard wal == nil else {
            let wal = try ownWAL()
            let sequence = try writeLock.withLock {
                let sequence = try wal.append([bytes])
                try wal.waitDurable(sequence)
                try state.withLock { try applyChangeLocked(record, index: sequence) }
                return sequence
            }
            return try afterChange(record, index: sequence)
        }
        guard let propose = changeProposer.withLock({ $0 }) else {
            throw EngineError.io("this region's log is its consensus group's, and no group takes its changes yet")
        }
        let outcome = ApplyOutcome()
        do {
            try propose(bytes, outcome)
        } catch {
            throw outcome.error ?? error
        }
    }

    /// Applies a delete or a schema statement logged at `index`; the caller holds `writeLock`
    /// and `state`. A refusal (the database exists, no such database) is the same on every
    /// replica, since each applies the same entries in the same order. An entry whose schema
    /// effects the schema log already holds (a replay after a restart) changes the schema no
    /// more; its tombstone is kept once.
    func applyChangeLocked(_ record: EngineRecord, index: UInt64) throws {
        switch record {
        case .write:
            preconditionFailure("writes are applied by applyLocked")
        case .delete(let pattern, let range):
            try applyDeleteLocked(pattern: try PathPattern(parsing: pattern), range: range, index: index)
        case .schema(let change):
            let replayed = index <= schemaIndex
            switch change {
            case .createDatabase(let name):
                guard !replayed else { return }
                try schemaChange { try schema.createDatabase(name) }
            case .createSeries(let series):
                guard !replayed else { return }
                try schemaChange { try schema.createSeries(series) }
            case .deleteSeries(let text):
                let pattern = try PathPattern(parsing: text)
                try applyDeleteLocked(pattern: pattern, range: Int64.min...Int64.max, index: index)
                guard !replayed else { return }
                schema.deleteSeries(matching: pattern)
            case .deleteDatabase(let name):
                if !replayed {
                    guard schema.databases.contains(name) else {
                        throw EngineError.schema(SchemaError("\(name): no such database", kind: .noSuchDatabase))
                    }
                }
                try applyDeleteLocked(pattern: try PathPattern(parsing: name + ".**"), range: Int64.min...Int64.max, index: index)
                guard !replayed else { return }
                try schemaChange { try schema.deleteDatabase(name) }
            case .appliedThrough:
                throw EngineError.corrupt("a schema-log marker in the region's log")
            }
            schemaIndex = index
            // Memory holds the change; if the append fails it waits in `unloggedSchema` and is
            // appended before anything else (the statement fails, every replica has applied it).
            try logSchemaLocked([change, .appliedThrough(index)])
        }
    }

    /// What a change does once `writeLock` is let go: a dropped database's segment files go.
    func afterChange(_ record: EngineRecord, index: UInt64) throws {
        if case .schema(.deleteDatabase(let name)) = record { try removeSegments(onlyOf: name, before: index) }
    }

    /// Removes every segment file that holds only points of `database` logged before `index`
    /// (the drop at `index` deleted them; this gives back their space at once instead of at
    /// compaction). A segment with later points (the database made again) stays.
    private func removeSegments(onlyOf database: String, before index: UInt64) throws {
        try maintenanceLock.withLock {
            let doomed = state.withLock { () -> [SegmentHandle] in
                let doomed = segments.filter { segment in
                    segment.info.maxSequence < index && segment.reader.index.keys.allSatisfy { $0.hasPrefix(database + ".") }
                }
                let names = Set(doomed.map(\.name))
                segments.removeAll { names.contains($0.name) }
                return doomed
            }
            for segment in doomed { try FileIO.remove(segmentDirectory + "/" + segment.name) }
            try FileIO.syncDirectory(segmentDirectory)
        }
    }

    /// Runs a schema change, reporting a refusal as an `EngineError`.
    func schemaChange<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let error as SchemaError { throw EngineError.schema(error) }
    }
}
