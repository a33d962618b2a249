import TidemarkQuery
import TidemarkStorage

/// Runs a fragment's operation over the regions of its groups that this node holds: for a
/// peer's fragment, and for the coordinator's own share of a plan (no network).
public enum FragmentRunner {
    /// `engines` are the fragment's regions here. A region without the series (its partitions
    /// hold no point of it yet) answers nothing rather than an error: `.done` for a scan,
    /// empty aggregates. A delete or drop that matched nothing here is the engine's error,
    /// which the coordinator ignores when another region matched.
    public static func run(_ operation: Fragment.Operation, on engines: [StorageEngine], scanBatchPoints: Int) -> FragmentAnswer {
        let store = RegionUnion(scanBatchPoints: scanBatchPoints) { engines }
        do {
            switch operation {
            case .databases: return .names(store.databases())
            case .series(let pattern): return .series(store.series(matching: pattern))
            case .oneSeries(let path): return .series(store.series(path).map { [$0] } ?? [])
            case .devices(let pattern): return .names(store.devices(matching: pattern))
            case .scan(let path, let range, let pointsMax):
                guard engines.contains(where: { $0.series(path) != nil }) else { return .done }
                let scan = try RegionUnion(scanBatchPoints: max(1, pointsMax)) { engines }.scan(path: path, range: range)
                guard let batch = try scan.next() else { return .page(scan.dataType, timestamps: [], values: .empty(scan.dataType), more: false) }
                return .page(scan.dataType, timestamps: batch.timestamps, values: batch.values, more: batch.timestamps.count >= pointsMax)
            case .aggregate(let path, let range):
                guard engines.contains(where: { $0.series(path) != nil }) else { return .aggregates(Aggregates()) }
                return .aggregates(try store.aggregate(path: path, range: range))
            case .aggregates(let requests):
                return .aggregateList(try requests.map { request in
                    engines.contains { $0.series(request.path) != nil } ? try store.aggregate(path: request.path, range: request.range) : Aggregates()
                })
            case .createDatabase(let name): try store.createDatabase(name)
            case .createSeries(let schema): try store.createSeries(schema)
            case .deleteSeries(let pattern):
                guard engines.contains(where: { !$0.series(matching: pattern).isEmpty }) else {
                    return .failed(.schema(SchemaError("\(pattern): no series matches", kind: .noSuchSeries)))
                }
                try store.deleteSeries(matching: pattern)
            case .dropDatabase(let name): try store.dropDatabase(name)
            case .delete(let pattern, let range): try store.delete(matching: pattern, range: range)
            case .flush: try store.flush()
            }
            return .done
        } catch let error as EngineError {
            return .failed(error)
        } catch {
            return .failed(.io("\(error)"))
        }
    }
}
