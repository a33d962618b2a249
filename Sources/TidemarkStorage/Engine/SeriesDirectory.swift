import TidemarkCore

/// The series writes have named, by device and measurement, kept from batch to batch: a
/// row finds each of its series with one hash of its device and a compare of each
/// measurement, with no path built or hashed. Each (device, measurement) has a number a
/// batch keys its columns by. Not thread-safe: the engine uses it under its state lock.
final class SeriesDirectory {
    private struct Entry {
        let measurement: String
        let path: String
        /// The schema's series when last looked at; checked against the schema before use.
        var ref: SeriesRef?
    }

    /// Entries kept before the directory starts again (paths the schema refused, deleted
    /// devices: it must not grow without bound on bad or changing input).
    let entriesMax: Int
    private var deviceNumbers: [String: Int] = [:]
    /// Per device, its entries' numbers in the order first seen.
    private var deviceEntries: [[Int]] = []
    private var entries: [Entry] = []

    init(entriesMax: Int) {
        precondition(entriesMax > 0)
        self.entriesMax = entriesMax
    }

    var count: Int { entries.count }

    /// Forgets everything when full; only between batches, while no number is held.
    func trim() {
        guard entries.count >= entriesMax else { return }
        deviceNumbers.removeAll()
        deviceEntries.removeAll()
        entries.removeAll()
    }

    func device(_ path: String) -> Int {
        if let number = deviceNumbers[path] { return number }
        deviceNumbers[path] = deviceEntries.count
        deviceEntries.append([])
        return deviceEntries.count - 1
    }

    /// The number of `measurement` of `device` (a number from `device(_:)`); a device's rows
    /// usually list their measurements in the same order, so position `hint` is tried first.
    func series(device: Int, devicePath: String, measurement: String, hint: Int) -> Int {
        let known = deviceEntries[device]
        if hint < known.count, entries[known[hint]].measurement == measurement { return known[hint] }
        if let number = known.first(where: { entries[$0].measurement == measurement }) { return number }
        entries.append(Entry(measurement: measurement, path: devicePath + "." + measurement, ref: nil))
        deviceEntries[device].append(entries.count - 1)
        return entries.count - 1
    }

    func path(_ number: Int) -> String { entries[number].path }

    /// The schema's series for entry `number`, now: the remembered one while it lives (an
    /// array lookup), else looked up by path.
    func ref(_ number: Int, in schema: SchemaTree) -> SeriesRef? {
        if let ref = entries[number].ref, schema.type(ofID: ref.id) == ref.type { return ref }
        let ref = schema.ref(entries[number].path)
        entries[number].ref = ref
        return ref
    }
}

/// What a batch of writes checks its rows against: the schema and the engine's directory
/// of series. Valid only inside `StorageEngine.withSeriesLookup`, which holds the lock.
public struct SeriesLookup {
    let directory: SeriesDirectory
    let schema: SchemaTree
}
