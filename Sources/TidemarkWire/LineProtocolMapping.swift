import Foundation
import TidemarkCore
import TidemarkStorage

/// Time units of `/write?precision=`.
public enum WritePrecision: String, Sendable, CaseIterable {
    case ns, us, ms, s

    /// Converts a timestamp in this unit to milliseconds (floor), or nil on overflow.
    public func milliseconds(_ value: Int64) -> Int64? {
        func floorDivide(_ a: Int64, _ b: Int64) -> Int64 { a >= 0 ? a / b : -((-(a + 1)) / b) - 1 }
        switch self {
        case .ns: return floorDivide(value, 1_000_000)
        case .us: return floorDivide(value, 1000)
        case .ms: return value
        case .s:
            let (result, overflow) = value.multipliedReportingOverflow(by: 1000)
            return overflow ? nil : result
        }
    }
}

/// How line protocol maps onto Tidemark's paths (README "Line protocol"):
/// database `root.<db>`, device `root.<db>.<measurement>.<tag values in tag-key order>`,
/// one series per field, `<device>.<field key>`.
public enum LineProtocolMapping {
    /// Per request (one database): each series key's device path and the batch key of its
    /// last field set, so a device's later lines reuse them instead of building them again.
    public struct RowCache {
        fileprivate var devices: [String?] = []
        fileprivate var fields: [(keys: [String], batchKey: Int)?] = []
        /// One line's values, reused line after line.
        fileprivate var values: [Value] = []

        public init() {}
    }

    /// `line` as a row of its device; throws (with the line's number) when a value or
    /// timestamp cannot be stored.
    public static func row(of line: LinePoint, database: String, precision: WritePrecision, nowMs: Int64) throws -> RowWrite {
        var batch = RowBatch()
        var cache = RowCache()
        try append(line, database: database, precision: precision, nowMs: nowMs, to: &batch, cache: &cache)
        return RowWrite(device: batch.keys[0].device, timestamp: batch.rowTimestamps[0], measurements: batch.keys[0].measurements,
                        values: batch.values)
    }

    /// Appends `line` as a row of `batch`, sharing with the request's earlier lines what
    /// their series keys have in common. Throws (with the line's number), adding nothing,
    /// when a value or timestamp cannot be stored.
    public static func append(_ line: LinePoint, database: String, precision: WritePrecision, nowMs: Int64,
                              to batch: inout RowBatch, cache: inout RowCache) throws {
        let timestamp: Int64
        if let raw = line.timestamp {
            guard let converted = precision.milliseconds(raw) else {
                throw LineError(line: line.line, column: 1, message: "timestamp \(raw) overflows in precision \(precision.rawValue)")
            }
            timestamp = converted
        } else {
            timestamp = nowMs
        }
        cache.values.removeAll(keepingCapacity: true)
        for field in line.fields {
            switch field.value {
            case .float(let number): cache.values.append(.double(number))
            case .integer(let number): cache.values.append(.int64(number))
            case .unsigned(let number):
                guard let signed = Int64(exactly: number) else {
                    throw LineError(line: line.line, column: 1, message: "unsigned field \(field.key) = \(number) exceeds INT64")
                }
                cache.values.append(.int64(signed))
            case .boolean(let flag): cache.values.append(.boolean(flag))
            case .string(let text): cache.values.append(.text(text))
            }
        }
        let series = line.seriesKey
        if series >= cache.devices.count {
            cache.devices += Array(repeating: nil, count: series + 1 - cache.devices.count)
            cache.fields += Array(repeating: nil, count: series + 1 - cache.fields.count)
        }
        let key: Int
        if series >= 0, let known = cache.fields[series], known.keys.count == line.fields.count,
           zip(known.keys, line.fields).allSatisfy({ $0 == $1.key }) {
            key = known.batchKey
        } else {
            let device: String
            if series >= 0, let known = cache.devices[series] {
                device = known
            } else {
                device = self.device(of: line, database: database)
                if series >= 0 { cache.devices[series] = device }
            }
            key = batch.addKey(RowBatch.Key(device: device, measurements: line.fields.map { level($0.key) }))
            if series >= 0 { cache.fields[series] = (line.fields.map(\.key), key) }
        }
        batch.append(key: key, timestamp: timestamp, values: cache.values)
    }

    /// `root.<db>.<measurement>.<tag values in tag-key order>`.
    static func device(of line: LinePoint, database: String) -> String {
        var device = "root." + level(database) + "." + level(line.measurement)
        for tag in line.tags { device += "." + level(tag.value) }
        return device
    }

    /// The points of `line`, one per field (tests and tools).
    public static func points(of line: LinePoint, database: String, precision: WritePrecision, nowMs: Int64) throws -> [PointWrite] {
        try row(of: line, database: database, precision: precision, nowMs: nowMs).points
    }

    /// A path level: bare when plain, else backquoted (a backquote doubled).
    public static func level(_ name: String) -> String { PathLevel.quoted(name) }
}
