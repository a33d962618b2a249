import Foundation
import TidemarkStages

/// One stage as `GET /stages` reports it and `tidemark stages` prints it.
public struct StageReport: Codable, Sendable, Equatable {
    public var name: String
    public var threads: Int
    public var inline: Bool
    public var queueCapacity: Int
    public var batchSize: Int
    public var overflow: String
    /// Threads running the handler now.
    public var active: Int
    /// Events waiting in the queue.
    public var pending: Int
    public var completed: UInt64
    public var blocked: UInt64
    public var rejected: UInt64
    public var queueWaitP50Us: Double
    public var queueWaitP99Us: Double
    public var serviceP50Us: Double
    public var serviceP99Us: Double

    public init(_ snapshot: StageSnapshot) {
        name = snapshot.name
        threads = snapshot.settings.threads
        inline = snapshot.settings.inline
        queueCapacity = snapshot.settings.queueCapacity
        batchSize = snapshot.settings.batchSize
        overflow = snapshot.settings.overflow.rawValue
        active = snapshot.busyThreads
        pending = snapshot.queueDepth
        completed = snapshot.completed
        blocked = snapshot.blocked
        rejected = snapshot.rejected
        queueWaitP50Us = Double(snapshot.queueWait.valueNs(atPercentile: 50)) / 1000
        queueWaitP99Us = Double(snapshot.queueWait.valueNs(atPercentile: 99)) / 1000
        serviceP50Us = Double(snapshot.service.valueNs(atPercentile: 50)) / 1000
        serviceP99Us = Double(snapshot.service.valueNs(atPercentile: 99)) / 1000
    }

    /// The `/stages` body: `{"stages":[…]}` with snake_case keys.
    public static func encode(_ reports: [StageReport]) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys]
        // Encoding plain numbers, strings and booleans cannot fail.
        return Array(try! encoder.encode(["stages": reports]))
    }

    public static func decode(_ body: [UInt8]) throws -> [StageReport] {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode([String: [StageReport]].self, from: Data(body))["stages"] ?? []
    }
}

extension StageReport {
    /// The reports as an aligned text table, in the spirit of `nodetool tpstats`.
    public static func table(_ reports: [StageReport]) -> String {
        let header = ["Stage", "Threads", "Active", "Pending", "Completed", "Blocked", "Rejected", "p99 wait", "p99 service"]
        let rows = reports.map { report in
            [report.name, report.inline ? "inline" : String(report.threads), String(report.active),
             "\(report.pending)/\(report.queueCapacity)", String(report.completed), String(report.blocked),
             String(report.rejected), duration(us: report.queueWaitP99Us), duration(us: report.serviceP99Us)]
        }
        let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max()! }
        return ([header] + rows).map { cells in
            cells.enumerated().map { column, cell in
                // Names read left-aligned, numbers right-aligned.
                let padding = String(repeating: " ", count: widths[column] - cell.count)
                return column == 0 ? cell + padding : padding + cell
            }.joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }

    /// A duration in the unit that keeps it short: `850µs`, `12.3ms`, `1.50s`.
    static func duration(us: Double) -> String {
        if us == 0 { return "-" }
        if us < 1000 { return String(format: "%.0fµs", us) }
        if us < 1_000_000 { return String(format: "%.1fms", us / 1000) }
        return String(format: "%.2fs", us / 1_000_000)
    }
}
