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
