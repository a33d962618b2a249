import TidemarkCore
import TidemarkIO

/// The series writes have named, by device and measurement, kept from batch to batch: a
/// row finds each of its series with one hash of its device and a compare of each
/// measurement, with no path built or hashed. Each (device, measurement) has a number, and
/// remembers its column in the batch being grouped. The engine keeps it under its lock.
struct SeriesDirectory {
    private struct Entry {
        let measurement: String
        let path: String
        /// The schema's series when last looked at: the hint for the next look.
        var ref: SeriesRef?
        /// The entry's column in the batch whose stamp is `batch`.
        var batch = 0
        var column: Int32 = 0
    }

    /// Entries kept before the directory starts again (paths the schema refused, deleted
    /// devices: it must not grow without bound on bad or changing input).
    let entriesMax: Int
    private var deviceNumbers: [String: Int] = [:]
    /// Per device, its entries' numbers in the order first seen.
    private var deviceEntries: [[Int]] = []
    /// Per device, its entries by measurement: a miss of the position hint costs one hash,
    /// not a walk of the device's entries (a line of 100 000 fields would be quadratic).
    private var deviceMeasurements: [[String: Int]] = []
    private var entries: [Entry] = []
    private var batchNext = 1

    init(entriesMax: Int) {
        precondition(entriesMax > 0)
        self.entriesMax = entriesMax
    }

    var count: Int { entries.count }

    /// Forgets everything when full; only between batches, while no number is held.
    mutating func trim() {
        guard entries.count >= entriesMax else { return }
        deviceNumbers.removeAll()
        deviceEntries.removeAll()
        deviceMeasurements.removeAll()
        entries.removeAll()
    }

    /// A stamp for a new batch: no entry has a column in it yet.
    mutating func newBatch() -> Int {
        defer { batchNext += 1 }
        return batchNext
    }

    mutating func device(_ path: String) -> Int {
        if let number = deviceNumbers[path] { return number }
        deviceNumbers[path] = deviceEntries.count
        deviceEntries.append([])
        deviceMeasurements.append([:])
        return deviceEntries.count - 1
    }

    /// The number of `measurement` of `device` (a number from `device(_:)`); a device's rows
    /// usually list their measurements in the same order, so position `hint` is tried first.
    mutating func series(device: Int, devicePath: String, measurement: String, hint: Int) -> Int {
        if hint < deviceEntries[device].count {
            let number = deviceEntries[device][hint]
            if entries[number].measurement == measurement { return number }
        }
        if let number = deviceMeasurements[device][measurement] { return number }
        let number = entries.count
        entries.append(Entry(measurement: measurement, path: devicePath + "." + measurement, ref: nil))
        deviceEntries[device].append(number)
        deviceMeasurements[device][measurement] = number
        return number
    }

    func path(_ number: Int) -> String { entries[number].path }

    /// Entry `number`'s column in batch `batch`, if it has one.
    func column(_ number: Int, batch: Int) -> Int? {
        entries[number].batch == batch ? Int(entries[number].column) : nil
    }

    /// Gives entry `number` column `column` in batch `batch`, or takes it back (nil).
    mutating func setColumn(_ column: Int?, of number: Int, batch: Int) {
        precondition(column.map { $0 >= 0 && $0 <= Int(Int32.max) } ?? true)
        entries[number].batch = column == nil ? 0 : batch
        entries[number].column = Int32(column ?? 0)
    }

    /// The schema's series for entry `number`, now.
    mutating func ref(_ number: Int, in schema: SchemaTree) -> SeriesRef? {
        let ref = schema.ref(entries[number].path, hint: entries[number].ref?.id)
        entries[number].ref = ref
        return ref
    }
}

/// What a batch of writes checks its rows against: the schema and the engine's directory
/// of series. Valid only inside `StorageEngine.withSeriesLookup`, which holds the lock.
public struct SeriesLookup {
    var directory: SeriesDirectory
    let schema: SchemaTree
}
