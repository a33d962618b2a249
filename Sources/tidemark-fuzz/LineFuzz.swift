import ArgumentParser
import Foundation
import TidemarkCore
import TidemarkStorage
import TidemarkTestSupport
import TidemarkWire

/// Random line-protocol requests through the write path the server runs (parse, map to rows,
/// group and type-check unit by unit, prepare, apply), with flushes and reopenings between
/// them. A model keeps what each request had accepted; at the end every series must read back
/// exactly the model's points: nothing accepted lost, nothing refused written.
struct LineFuzz: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "lines", abstract: "Line protocol through the write path, checked against a model.")
    @OptionGroup var options: FuzzOptions
    @Option(help: "Requests per input (one engine per input).") var requests = 30

    func run() throws {
        try FuzzLoop(name: "lines", options: options).run { seed, describe in try withScratchDirectory("lines") { directory in
            var engineOptions = EngineOptions()
            engineOptions.memtableBytesMax = 16 << 10
            engineOptions.fieldsPerLineMax = 50
            engineOptions.seriesPerWriteMax = 200
            var engine = try StorageEngine(directory: directory, options: engineOptions, log: .consensus)
            var random = Seeded(state: seed)
            var model: [String: [Int64: Value]] = [:]
            var index: UInt64 = 0
            for _ in 0..<requests {
                let precision = random.pick(WritePrecision.allCases)
                let body = LineGrammar.request(&random)
                describe("precision=\(precision.rawValue)\n\(body)")
                index += try write(body, precision: precision, to: engine, index: index + 1, model: &model) ? 1 : 0
                if random.chance(15) { try engine.flush() }
                if random.chance(8) {
                    // Everything applied is in segments once flushed: a reopened engine must still have it.
                    try engine.flush()
                    engine.close()
                    engine = try StorageEngine(directory: directory, options: engineOptions, log: .consensus)
                }
            }
            try verify(engine, against: model)
            engine.close()
        } }
    }

    /// One request down the write path; returns whether an entry was applied at `index`.
    private func write(_ body: String, precision: WritePrecision, to engine: StorageEngine, index: UInt64,
                       model: inout [String: [Int64: Value]]) throws -> Bool {
        var rows = RowBatch()
        var units: [Range<Int>] = []
        var cache = LineProtocolMapping.RowCache()
        _ = LineProtocol.forEachPoint(in: Array(body.utf8), fieldsPerLineMax: engine.options.fieldsPerLineMax) { line in
            guard (try? LineProtocolMapping.append(line, database: "lp", precision: precision, nowMs: 1_700_000_000_000,
                                                   to: &rows, cache: &cache)) != nil else { return }
            units.append((rows.rowCount - 1)..<rows.rowCount)
        }
        guard !rows.namesMoreSeries(than: engine.options.seriesPerWriteMax), rows.pointCount <= engine.options.writePointsMax else { return false }
        var grouped = GroupedWrite()
        let refused = Set(engine.withSeriesLookup { grouped.add(rows, units: units, lookup: &$0) }.map(\.unit))
        // A write the engine refuses whole (a schema rule) applies nothing: the model stays.
        guard let prepared = try? engine.prepareWrite(grouped) else { return false }
        try engine.apply(index: index, record: prepared.record, prepared: prepared)
        for (unit, range) in units.enumerated() where !refused.contains(unit) {
            for row in range {
                let key = rows.key(ofRow: row)
                for (measurement, valueIndex) in zip(key.measurements.indices, rows.valueRange(ofRow: row)) {
                    model[key.path(measurement), default: [:]][rows.rowTimestamps[row]] = rows.values[valueIndex]
                }
            }
        }
        return true
    }

    private func verify(_ engine: StorageEngine, against model: [String: [Int64: Value]]) throws {
        for (path, points) in model.sorted(by: { $0.key < $1.key }) {
            let read = try engine.scan(path: path, range: Int64.min...Int64.max).all()
            let expected = points.sorted { $0.key < $1.key }
            guard read.timestamps == expected.map(\.key) else {
                throw Finding(description: "\(path): read times \(read.timestamps.prefix(8)) (\(read.timestamps.count)), accepted \(expected.map(\.key).prefix(8)) (\(expected.count))")
            }
            for (offset, point) in expected.enumerated() where !same(read.values[offset], point.value) {
                throw Finding(description: "\(path) at \(point.key): read \(read.values[offset]), accepted \(point.value)")
            }
        }
    }

    /// Values compare bit for bit (NaN is NaN).
    private func same(_ a: Value, _ b: Value) -> Bool {
        switch (a, b) {
        case (.double(let x), .double(let y)): x.bitPattern == y.bitPattern
        case (.float(let x), .float(let y)): x.bitPattern == y.bitPattern
        default: a == b
        }
    }
}

/// Line-protocol requests with the edges a client can send: escapes, odd and long names,
/// deep tag sets, too many fields, numbers at and past their types' ends, bad timestamps.
enum LineGrammar {
    private static let names = ["m", "cpu", "a\\ b", "a\\,b", "é", "root", "time", "9lives", "`q`", "x.y", "m"]
    private static let tagValues = ["v", "us-west", "1", "a\\=b", "é", "`", String(repeating: "t", count: 130), "v"]
    private static let fieldKeys = ["f0", "f1", "f2", "value", "time", "a\\=b", "f0"]
    private static let values = ["1", "1i", "-1i", "9223372036854775807i", "9223372036854775808i", "-9223372036854775808i",
                                 "18446744073709551615u", "1u", "1.5", "1e308", "-0", "t", "true", "F", "\"txt\"", "\"\"",
                                 "\"a\\\"b\"", "NaN", "inf", "1e999", "abc", "0.1"]
    private static let timestamps = ["", " 0", " -1", " 9223372036854775807", " -9223372036854775808", " 1700000000000",
                                     " 99999999999999999999", " 5", " 6", " 7", " 1e3"]

    static func request(_ random: inout Seeded) -> String {
        (0..<random.int(1...8)).map { _ in line(&random) }.joined(separator: random.pick(["\n", "\n", "\r\n", "\n\n"]))
    }

    private static func line(_ random: inout Seeded) -> String {
        var text = random.pick(names)
        let tagCount = random.chance(5) ? 20 : random.int(0...2)
        for index in 0..<tagCount { text += ",k\(index)=\(random.pick(tagValues))" }
        let fieldCount = random.chance(5) ? 60 : random.int(1...3)
        let fields = (0..<fieldCount).map { index in
            "\(fieldCount > 3 ? "w\(index)" : random.pick(fieldKeys))=\(random.pick(values))"
        }
        text += " " + fields.joined(separator: ",") + random.pick(timestamps)
        if random.chance(3) { text = String(text.prefix(random.int(0...text.count))) }
        return text
    }
}
