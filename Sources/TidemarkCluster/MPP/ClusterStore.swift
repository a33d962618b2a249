import Foundation
import Synchronization
import TidemarkConsensus
import TidemarkCore
import TidemarkQuery
import TidemarkStorage

/// The whole cluster's data as one store, for the coordinator's statements (DESIGN.md section
/// 3, MPP): each call becomes fragments, one per node for the region groups it serves, sent in
/// parallel and merged here (a statement's aggregates in one batch). The partition table
/// prunes them: a series' scan or aggregate goes only to the groups of its (database, slot)
/// whose time partitions meet the range, each for its partitions' share of the range, so the parts are disjoint in time and their aggregates
/// merge without a scan. Groups this node leads (or, multi-leader, holds) run here, without
/// the network. A node that does not hold or lead a group answers where it is; the fragment
/// is sent there, a bounded number of times, and a group no replica answers for fails the
/// statement, naming it.
///
/// The statement's thread waits for the fragments' answers (bounded by `timeoutMs`): the
/// executor runs one statement on one query worker, as on a single node.
public final class ClusterStore: RegionStore {
    /// How fragments reach the regions.
    public struct Access: Sendable {
        /// The engine of `group` when this node holds it and serves its reads: it leads it (or
        /// holds a replica of a multi-leader group), or, for a weak read (true), holds any replica.
        public var local: @Sendable (GroupID, _ weak: Bool) -> StorageEngine?
        /// The leader of `group` as this node knows it.
        public var leader: @Sendable (GroupID) -> UInt64?
        /// Sends a fragment to a node; `completion` runs once, from any thread.
        public var call: @Sendable (UInt64, Fragment, @escaping @Sendable (Result<FragmentAnswer, Error>) -> Void) -> Void

        public init(local: @escaping @Sendable (GroupID, Bool) -> StorageEngine?, leader: @escaping @Sendable (GroupID) -> UInt64?,
                    call: @escaping @Sendable (UInt64, Fragment, @escaping @Sendable (Result<FragmentAnswer, Error>) -> Void) -> Void) {
            self.local = local
            self.leader = leader
            self.call = call
        }
    }

    public let scanBatchPoints: Int
    private let state: @Sendable () -> MetaState
    private let access: Access
    private let nodeID: UInt64
    private let timeoutMs: UInt64
    /// Nodes asked for one group before the statement fails.
    private let attemptsMax: Int
    /// Weak reads: any replica serves them, this node's own first.
    public let weak: Bool

    public init(nodeID: UInt64, scanBatchPoints: Int, timeoutMs: UInt64, attemptsMax: Int = 3, weak: Bool = false,
                state: @escaping @Sendable () -> MetaState, access: Access) {
        self.weak = weak
        precondition(timeoutMs > 0 && attemptsMax > 0)
        self.nodeID = nodeID
        self.scanBatchPoints = scanBatchPoints
        self.timeoutMs = timeoutMs
        self.attemptsMax = attemptsMax
        self.state = state
        self.access = access
    }

    // MARK: Schema

    public func databases() throws -> [String] {
        let state = state()
        return Set(try answers(.databases, over: dataGroups(state), state).flatMap(Self.names)).sorted()
    }

    public func series(matching pattern: PathPattern) throws -> [SeriesSchema] {
        let state = state()
        var seen = Set<String>()
        return try answers(.series(pattern), over: dataGroups(state, matching: pattern), state).flatMap(Self.schemas)
            .filter { seen.insert($0.path).inserted }.sorted { $0.path < $1.path }
    }

    public func series(_ path: String) throws -> SeriesSchema? {
        let state = state()
        return try answers(.oneSeries(path), over: groups(holding: path, state), state).flatMap(Self.schemas).first
    }

    public func devices(matching pattern: PathPattern) throws -> [String] {
        let state = state()
        return Set(try answers(.devices(pattern), over: dataGroups(state, matching: pattern), state).flatMap(Self.names)).sorted()
    }

    // MARK: Reads

    public func scan(path: String, range: ClosedRange<Int64>) throws -> SeriesScan {
        let state = state()
        guard let type = try series(path)?.dataType else {
            throw EngineError.schema(SchemaError("\(path): no such series", kind: .noSuchSeries))
        }
        let scans = try spans(of: path, in: range, state).map { span in try scan(path, type: type, span: span, state) }
        guard let merged = SeriesScan.merging(scans, batchPoints: scanBatchPoints) else {
            return SeriesScan.streaming(type, batchPoints: scanBatchPoints) { nil }
        }
        return merged
    }

    /// One span's points: read here when this node serves the group, else page by page from the node that does.
    private func scan(_ path: String, type: DataType, span: Span, _ state: MetaState) throws -> SeriesScan {
        if let engine = access.local(span.group, weak) {
            guard engine.series(path) != nil else { return SeriesScan.streaming(type, batchPoints: scanBatchPoints) { nil } }
            return try engine.scan(path: path, range: span.range)
        }
        var next: ClosedRange<Int64>? = span.range
        let pagePoints = min(Fragment.pagePointsMax, max(scanBatchPoints, 4096))
        return SeriesScan.streaming(type, batchPoints: scanBatchPoints) { [self] in
            guard let range = next else { return nil }
            let answers = try answers(.scan(path: path, range: range, pointsMax: pagePoints), over: [span.group], state)
            guard case .page(let got, let timestamps, let values, let more)? = answers.first else {
                next = nil
                return nil
            }
            guard got == type else { throw EngineError.corrupt("\(path) has different types in the regions that hold it") }
            let last = timestamps.last ?? range.upperBound
            next = more && last < range.upperBound ? (last + 1)...range.upperBound : nil
            return timestamps.isEmpty ? nil : (timestamps, values)
        }
    }

    public func aggregate(path: String, range: ClosedRange<Int64>) throws -> Aggregates {
        guard try series(path) != nil else { throw EngineError.schema(SchemaError("\(path): no such series", kind: .noSuchSeries)) }
        return try aggregates([AggregateRequest(path: path, range: range)])[0]
    }

    /// Each request cut into its spans, the spans of one group asked in one fragment (all
    /// groups' fragments at once), and each request's parts merged.
    public func aggregates(_ requests: [AggregateRequest]) throws -> [Aggregates] {
        let state = state()
        var byGroup: [GroupID: [(request: Int, item: AggregateRequest)]] = [:]
        for (index, request) in requests.enumerated() {
            for span in try spans(of: request.path, in: request.range, state) {
                byGroup[span.group, default: []].append((index, AggregateRequest(path: request.path, range: span.range)))
            }
        }
        var merged = Array(repeating: Aggregates(), count: requests.count)
        let groups = byGroup.keys.sorted()
        let itemsOf = byGroup.mapValues { $0.map(\.item) }
        let answered = Mutex<[GroupID: Result<[Aggregates], Error>]>([:])
        DispatchQueue.concurrentPerform(iterations: groups.count) { index in
            let group = groups[index]
            let items = itemsOf[group]!
            let result = Result<[Aggregates], Error> {
                switch try answers(.aggregates(items), over: [group], state).first {
                case .aggregateList(let list)? where list.count == items.count: return list
                case .failed(let error)?: throw error
                default: throw EngineError.corrupt("\(group) answered \(items.count) aggregates with something else")
                }
            }
            answered.withLock { $0[group] = result }
        }
        for group in groups {
            let list = try answered.withLock { $0[group]! }.get()
            for (entry, part) in zip(byGroup[group]!, list) { merged[entry.request].merge(part) }
        }
        return merged
    }

    // MARK: Changes

    public func createDatabase(_ name: String) throws {
        let state = state()
        let groups = dataGroups(state).filter { state.groups[$0]?.database == name }
        guard !groups.isEmpty else { throw EngineError.schema(SchemaError("\(name): no database holds it (CREATE DATABASE first)", kind: .noSuchDatabase)) }
        try eachSucceeds(.createDatabase(name), over: groups, state, toleratingIn: [.databaseExists])
    }

    public func createSeries(_ schema: SeriesSchema) throws {
        let state = state()
        let device = String(schema.path[..<(schema.path.lastIndex(of: ".") ?? schema.path.endIndex)])
        guard let database = WritePartitions.database(of: device, in: state.databases) else {
            throw EngineError.schema(SchemaError("\(schema.path): no database holds it (CREATE DATABASE first)", kind: .noSuchDatabase))
        }
        let groups = dataGroups(state).filter { state.groups[$0]?.database == database }
        try eachSucceeds(.createSeries(schema), over: groups, state, toleratingIn: [.seriesExists])
    }

    public func deleteSeries(matching pattern: PathPattern) throws {
        let state = state()
        try anySucceeds(.deleteSeries(pattern), over: dataGroups(state, matching: pattern), state)
    }

    public func dropDatabase(_ name: String) throws {
        let state = state()
        let groups = dataGroups(state).filter { state.groups[$0]?.database == name }
        guard !groups.isEmpty else { throw EngineError.schema(SchemaError("\(name): no such database", kind: .noSuchDatabase)) }
        try anySucceeds(.dropDatabase(name), over: groups, state)
    }

    public func delete(matching pattern: PathPattern, range: ClosedRange<Int64>) throws {
        let state = state()
        for answer in try answers(.delete(pattern, range: range), over: dataGroups(state, matching: pattern), state) {
            if case .failed(let error) = answer { throw error }
        }
    }

    public func flush() throws {
        let state = state()
        for answer in try answers(.flush, over: dataGroups(state), state) {
            if case .failed(let error) = answer { throw error }
        }
    }

    /// Every part must succeed; "exists already" from some but not all (a crash between two
    /// regions' parts) is no failure, from all of them it is.
    private func eachSucceeds(_ operation: Fragment.Operation, over groups: [GroupID], _ state: MetaState,
                              toleratingIn kinds: [SchemaError.Kind]) throws {
        var tolerated: EngineError?
        var changed = false
        for answer in try answers(operation, over: groups, state) {
            switch answer {
            case .failed(.schema(let error)) where kinds.contains(error.kind): tolerated = .schema(error)
            case .failed(let error): throw error
            default: changed = true
            }
        }
        if let tolerated, !changed { throw tolerated }
    }

    /// A delete that matched nothing in one region is done when it matched in another.
    private func anySucceeds(_ operation: Fragment.Operation, over groups: [GroupID], _ state: MetaState) throws {
        var firstError: EngineError?
        var succeeded = false
        for answer in try answers(operation, over: groups, state) {
            switch answer {
            case .failed(.schema(let error)) where error.kind == .noSuchSeries || error.kind == .noSuchDatabase: firstError = firstError ?? .schema(error)
            case .failed(let error): throw error
            default: succeeded = true
            }
        }
        if !succeeded, let firstError { throw firstError }
    }

    // MARK: Planning (pure)

    /// A group's share of a series' time range: the time partitions it holds, coalesced.
    struct Span: Equatable {
        var group: GroupID
        var range: ClosedRange<Int64>
    }

    /// The data groups of every database `pattern` can reach (all of them without a pattern).
    func dataGroups(_ state: MetaState, matching pattern: PathPattern? = nil) -> [GroupID] {
        let databases = Set(state.databases.keys.filter { name in
            pattern.map { $0.mayMatchBelow(name.split(separator: ".").map(String.init)) } ?? true
        })
        return state.groups.values.filter { $0.id.kind == .data && databases.contains($0.database) }.map(\.id).sorted()
    }

    /// The groups that may hold series `path`: its slot's (any time partition), else every
    /// group of its database (a series created before any point was written).
    func groups(holding path: String, _ state: MetaState) -> [GroupID] {
        let device = String(path[..<(path.lastIndex(of: ".") ?? path.endIndex)])
        guard let database = WritePartitions.database(of: device, in: state.databases) else { return [] }
        let slot = SeriesSlots.slot(ofDevice: device, slotCount: state.settings.seriesSlotCount)
        let placed = Set(state.table.dataSlots[database]?[slot]?.values.map { $0 } ?? [])
        return placed.isEmpty ? dataGroups(state).filter { state.groups[$0]?.database == database } : placed.sorted()
    }

    /// `range` cut at time partition bounds, each piece with the group of its partition,
    /// adjacent pieces of one group joined; partitions never allocated hold no points.
    func spans(of path: String, in range: ClosedRange<Int64>, _ state: MetaState) throws -> [Span] {
        let device = String(path[..<(path.lastIndex(of: ".") ?? path.endIndex)])
        guard let database = WritePartitions.database(of: device, in: state.databases) else { return [] }
        let slot = SeriesSlots.slot(ofDevice: device, slotCount: state.settings.seriesSlotCount)
        let interval = state.settings.timePartitionIntervalMs
        let first = SeriesSlots.timePartition(of: range.lowerBound, intervalMs: interval)
        let last = SeriesSlots.timePartition(of: range.upperBound, intervalMs: interval)
        var spans: [Span] = []
        let partitions = (state.table.dataSlots[database]?[slot] ?? [:]).filter { $0.key >= first && $0.key <= last }.sorted { $0.key < $1.key }
        for (partition, group) in partitions {
            let (start, startOverflow) = partition.multipliedReportingOverflow(by: interval)
            let low = startOverflow ? range.lowerBound : max(range.lowerBound, start)
            let (end, endOverflow) = start.addingReportingOverflow(interval - 1)
            let high = startOverflow || endOverflow ? range.upperBound : min(range.upperBound, end)
            guard low <= high else { continue }
            if let previous = spans.last, previous.group == group, previous.range.upperBound < .max, previous.range.upperBound + 1 == low {
                spans[spans.count - 1].range = previous.range.lowerBound...high
            } else {
                spans.append(Span(group: group, range: low...high))
            }
        }
        return spans
    }

    // MARK: Fragments

    /// Runs `operation` over `groups`: one fragment per serving node, in parallel. A group
    /// whose node names its leader is asked there next; one that does not answer, at its next
    /// replica (`attemptsMax` nodes in all); one electing its leader (no replica names one), again
    /// after a pause. All within `timeoutMs`; a group left without an answer fails the call.
    func answers(_ operation: Fragment.Operation, over groups: [GroupID], _ state: MetaState) throws -> [FragmentAnswer] {
        guard !groups.isEmpty else { return [] }
        let deadlineNs = DispatchTime.now().uptimeNanoseconds + timeoutMs * 1_000_000
        var collected: [FragmentAnswer] = []
        var pending = groups
        var asked: [GroupID: [UInt64]] = [:]
        var hints: [GroupID: UInt64] = [:]
        var lastProblem: [GroupID: String] = [:]
        var pauseMs = 25
        while !pending.isEmpty {
            var here: [StorageEngine] = []
            var byNode: [UInt64: [GroupID]] = [:]
            var unplaced: [GroupID] = []
            for group in pending {
                if let engine = access.local(group, weak) {
                    here.append(engine)
                    continue
                }
                guard (asked[group]?.count ?? 0) < attemptsMax, let node = target(of: group, hint: hints[group], asked: Set(asked[group] ?? []), state) else {
                    unplaced.append(group)
                    continue
                }
                asked[group, default: []].append(node)
                byNode[node, default: []].append(group)
            }
            let replies = Mutex<[(node: UInt64, Result<FragmentAnswer, Error>)]>([])
            let done = DispatchGroup()
            for (node, nodeGroups) in byNode {
                done.enter()
                access.call(node, Fragment(groups: nodeGroups, metaIndex: state.appliedIndex, weak: weak, operation: operation)) { result in
                    replies.withLock { $0.append((node, result)) }
                    done.leave()
                }
            }
            if !here.isEmpty { collected.append(FragmentRunner.run(operation, on: here, scanBatchPoints: scanBatchPoints)) }
            let now = DispatchTime.now().uptimeNanoseconds
            if done.wait(timeout: .now() + .nanoseconds(Int(deadlineNs > now ? deadlineNs - now : 0))) == .timedOut {
                throw EngineError.unavailable("the regions on nodes \(byNode.keys.sorted()) did not answer within \(timeoutMs) ms; retry", leaderAddress: nil)
            }
            for group in unplaced { lastProblem[group] = lastProblem[group] ?? "no replica of it is known" }
            guard unplaced.isEmpty else { pending = unplaced; break }
            pending = []
            var electing = false
            for (node, result) in replies.withLock({ $0 }) {
                switch result {
                case .success(.elsewhere(_, let leaders)):
                    for group in byNode[node]! {
                        pending.append(group)
                        if let leader = leaders[group], leader != node {
                            hints[group] = leader
                        } else {
                            // No replica knows a leader: it is being elected. Ask the same nodes again.
                            hints[group] = nil
                            asked[group]?.removeAll { $0 == node }
                            electing = true
                        }
                        lastProblem[group] = "node \(node) does not serve it (no leader yet, or it is not a replica)"
                    }
                case .success(let answer): collected.append(answer)
                case .failure(let error):
                    for group in byNode[node]! {
                        pending.append(group)
                        hints[group] = nil
                        lastProblem[group] = "node \(node): \(error)"
                    }
                }
            }
            pending.sort()
            if electing && !pending.isEmpty {
                guard DispatchTime.now().uptimeNanoseconds + UInt64(pauseMs) * 1_000_000 < deadlineNs else { break }
                Thread.sleep(forTimeInterval: Double(pauseMs) / 1000)  // an election takes a few ticks
                pauseMs = min(pauseMs * 2, 400)
            }
        }
        guard pending.isEmpty else {
            let listed = pending.map { "\($0) (\(lastProblem[$0] ?? "not answered"))" }.joined(separator: ", ")
            throw EngineError.unavailable("no replica answered for region group(s) \(listed); retry", leaderAddress: nil)
        }
        return collected
    }

    /// The node to ask for `group` next: the hint a replica gave, then its leader as known
    /// here, then each replica in turn; a node asked already only when none is left.
    private func target(of group: GroupID, hint: UInt64?, asked: Set<UInt64>, _ state: MetaState) -> UInt64? {
        let replicas = state.groups[group]?.replicas ?? []
        let candidates = [hint, access.leader(group), state.groups[group]?.leaderHint].compactMap { $0 } + replicas
        // This node is no candidate: what it serves ran here already, and it cannot call itself.
        return candidates.first { !asked.contains($0) && $0 != nodeID }
    }

    private static func names(_ answer: FragmentAnswer) throws -> [String] {
        switch answer {
        case .names(let names): return names
        case .failed(let error): throw error
        default: return []
        }
    }

    private static func schemas(_ answer: FragmentAnswer) throws -> [SeriesSchema] {
        switch answer {
        case .series(let list): return list
        case .failed(let error): throw error
        default: return []
        }
    }
}
