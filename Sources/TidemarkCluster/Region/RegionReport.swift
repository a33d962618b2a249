import TidemarkConsensus
import TidemarkIO

/// A region replica as the node holding it reports it in a heartbeat.
public struct RegionReport: Sendable, Equatable {
    public var group: GroupID
    public var isLeader: Bool
    /// The group's consensus term the role holds in (0 without terms: standalone,
    /// multi-leader): a leader report of an older term than one already taken is stale.
    public var term: UInt64
    /// Bytes of its sealed segment files (IoTDB's TsFileSize) and of its memtables.
    public var segmentBytes: Int
    public var memtableBytes: Int

    public init(group: GroupID, isLeader: Bool, term: UInt64 = 0, segmentBytes: Int, memtableBytes: Int) {
        self.group = group
        self.isLeader = isLeader
        self.term = term
        self.segmentBytes = segmentBytes
        self.memtableBytes = memtableBytes
    }

    /// Bounds on what one heartbeat answer may list (an answer from a peer is not trusted).
    public static let reportsMax = 1 << 20

    public static func encode(_ reports: [RegionReport]) -> [UInt8] {
        var writer = ByteWriter()
        writer.write(varint: UInt64(reports.count))
        for report in reports {
            report.group.write(to: &writer)
            writer.write(report.isLeader ? 1 : 0)
            writer.write(varint: report.term)
            writer.write(varint: UInt64(max(0, report.segmentBytes)))
            writer.write(varint: UInt64(max(0, report.memtableBytes)))
        }
        return writer.bytes
    }

    public static func decode(_ reader: inout ByteReader) throws -> [RegionReport] {
        // Each report takes at least 6 bytes: a count past what is left is refused before any allocation.
        let count = try reader.readCount(max: min(reportsMax, reader.remaining / 6), what: "region reports")
        var reports: [RegionReport] = []
        for _ in 0..<count {
            let group = try GroupID(from: &reader)
            let role = try reader.readByte()
            guard role <= 1 else { throw CorruptDataError("region report role \(role)") }
            let term = try reader.readVarint()
            let segments = try reader.readVarint(), memtables = try reader.readVarint()
            guard segments <= UInt64(Int.max), memtables <= UInt64(Int.max) else { throw CorruptDataError("region report size past Int") }
            reports.append(RegionReport(group: group, isLeader: role == 1, term: term, segmentBytes: Int(segments), memtableBytes: Int(memtables)))
        }
        return reports
    }
}
