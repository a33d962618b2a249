import Foundation
import TidemarkCore

/// A REST body that cannot be used, with IoTDB's status code (303 malformed, 614 type mismatch).
struct RESTBodyError: Error, Sendable, Equatable {
    let code: Int
    let message: String
}

/// The JSON bodies of IoTDB's REST v2 inserts, decoded into points. Pure: no I/O and no
/// server state, so a libFuzzer target (fuzz/RESTBodyFuzz.swift) compiles it on its own.
enum RESTBody {
    /// The body as a JSON object.
    static func object(_ bytes: [UInt8]) throws(RESTBodyError) -> [String: Any] {
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: Data(bytes))
        } catch {
            throw RESTBodyError(code: 303, message: "malformed JSON: \(error.localizedDescription)")
        }
        guard let object = parsed as? [String: Any] else { throw RESTBodyError(code: 303, message: "the request body must be a JSON object") }
        return object
    }

    /// One row per timestamp, with the measurements whose value is not null.
    static func tabletRows(_ body: [String: Any]) throws -> [RowWrite] {
        guard let rawDevice = body["device"] as? String, let timestamps = body["timestamps"] as? [Any],
              let rawMeasurements = body["measurements"] as? [String], let types = body["data_types"] as? [String],
              let columns = body["values"] as? [[Any]] else {
            throw RESTBodyError(code: 303, message: "insertTablet needs device, timestamps, measurements, data_types and values")
        }
        let device = PathLevel.canonicalPath(rawDevice)
        let measurements = rawMeasurements.map(PathLevel.canonical)
        guard measurements.count == types.count, columns.count == measurements.count else {
            throw RESTBodyError(code: 303, message: "measurements, data_types and values must have the same length")
        }
        let times = try timestamps.map(timestamp)
        var rows = times.map { RowWrite(device: device, timestamp: $0, measurements: [], values: []) }
        for (column, (measurement, typeName)) in zip(columns, zip(measurements, types)) {
            guard column.count == times.count else {
                throw RESTBodyError(code: 303, message: "values of \(measurement) has \(column.count) entries for \(times.count) timestamps")
            }
            let type = try dataType(typeName)
            for (row, raw) in column.enumerated() {
                guard let value = try value(raw, type, measurement) else { continue }
                rows[row].measurements.append(measurement)
                rows[row].values.append(value)
            }
        }
        return rows.filter { !$0.values.isEmpty }
    }

    /// One row per record, with the measurements whose value is not null.
    static func recordRows(_ body: [String: Any]) throws -> [RowWrite] {
        guard let devices = body["devices"] as? [String], let timestamps = body["timestamps"] as? [Any],
              let measurementsList = body["measurements_list"] as? [[String]], let typesList = body["data_types_list"] as? [[String]],
              let valuesList = body["values_list"] as? [[Any]] else {
            throw RESTBodyError(code: 303, message: "insertRecords needs devices, timestamps, measurements_list, data_types_list and values_list")
        }
        guard [timestamps.count, measurementsList.count, typesList.count, valuesList.count].allSatisfy({ $0 == devices.count }) else {
            throw RESTBodyError(code: 303, message: "devices, timestamps, measurements_list, data_types_list and values_list must have the same length")
        }
        var rows: [RowWrite] = []
        for index in devices.indices {
            let time = try timestamp(timestamps[index])
            guard measurementsList[index].count == typesList[index].count, valuesList[index].count == typesList[index].count else {
                throw RESTBodyError(code: 303, message: "record \(index) has mismatched measurements, types and values")
            }
            var row = RowWrite(device: PathLevel.canonicalPath(devices[index]), timestamp: time, measurements: [], values: [])
            for (written, (typeName, raw)) in zip(measurementsList[index], zip(typesList[index], valuesList[index])) {
                let measurement = PathLevel.canonical(written)
                guard let value = try value(raw, try dataType(typeName), measurement) else { continue }
                row.measurements.append(measurement)
                row.values.append(value)
            }
            if !row.values.isEmpty { rows.append(row) }
        }
        return rows
    }

    /// A JSON scalar as JSONSerialization hands it over (booleans are NSNumbers of type "c").
    private enum JSONScalar {
        case boolean(Bool)
        case integer(Int64)
        case double(Double)
        case other
    }

    private static func scalar(_ raw: Any) -> JSONScalar {
        guard let number = raw as? NSNumber else { return .other }
        switch String(cString: number.objCType) {
        case "c", "B": return .boolean(number.boolValue)
        case "d", "f": return .double(number.doubleValue)
        default: return .integer(number.int64Value)
        }
    }

    private static func timestamp(_ raw: Any) throws -> Int64 {
        switch scalar(raw) {
        case .integer(let time): return time
        case .double(let value) where Int64(exactly: value) != nil: return Int64(value)
        default: throw RESTBodyError(code: 303, message: "timestamps must be integers, got \(raw)")
        }
    }

    private static func dataType(_ name: String) throws -> DataType {
        guard let type = DataType(name: name) else { throw RESTBodyError(code: 303, message: "unknown data type \(name)") }
        return type
    }

    /// A JSON value as `type`; nil for JSON null.
    private static func value(_ raw: Any, _ type: DataType, _ measurement: String) throws -> Value? {
        if raw is NSNull { return nil }
        let mismatch = RESTBodyError(code: 614, message: "\(measurement): \(raw) is not a \(type)")
        switch (type, scalar(raw)) {
        case (.boolean, .boolean(let flag)): return .boolean(flag)
        case (.text, _):
            guard let text = raw as? String else { throw mismatch }
            return .text(text)
        case (.int32, .integer(let v)): guard let narrow = Int32(exactly: v) else { throw mismatch }; return .int32(narrow)
        case (.int64, .integer(let v)): return .int64(v)
        case (.float, .integer(let v)): return .float(Float(v))
        case (.float, .double(let v)): return .float(Float(v))
        case (.double, .integer(let v)): return .double(Double(v))
        case (.double, .double(let v)): return .double(v)
        default: throw mismatch
        }
    }
}
