import TidemarkConsensus
import TidemarkCore
import TidemarkIO

/// One region group's part of a client write, as a coordinator sends it to a replica of the
/// group (DESIGN.md section 3, forward-or-reject): its rows, and per all-or-nothing unit its
/// request line and rows, so the answer names the client's lines.
public struct WritePart: Sendable {
    /// Hops a part may make: from the coordinator to a replica, then once from a follower to its leader.
    public static let hopsMax: UInt8 = 2

    public var group: GroupID
    /// 1 from the coordinator; 2 once a follower passed it on to the leader it knows.
    public var hops: UInt8
    /// The meta log index the coordinator placed the rows at: the receiver's copy must reach it.
    public var metaIndex: UInt64
    public var rows: RowBatch
    public var lines: [Int]
    public var unitRows: [Range<Int>]

    public init(group: GroupID, hops: UInt8, metaIndex: UInt64, rows: RowBatch, lines: [Int], unitRows: [Range<Int>]) {
        precondition(hops >= 1 && hops <= Self.hopsMax && lines.count == unitRows.count)
        precondition(unitRows.allSatisfy { $0.upperBound <= rows.rowCount }, "units name rows of the part")
        self.group = group
        self.hops = hops
        self.metaIndex = metaIndex
        self.rows = rows
        self.lines = lines
        self.unitRows = unitRows
    }

    public func encoded() -> [UInt8] {
        var writer = ByteWriter()
        group.write(to: &writer)
        writer.write(hops)
        writer.write(varint: metaIndex)
        WirePoints.write(rows, to: &writer)
        writer.write(varint: UInt64(lines.count))
        for (line, range) in zip(lines, unitRows) {
            writer.write(varint: UInt64(line))
            writer.write(varint: UInt64(range.lowerBound))
            writer.write(varint: UInt64(range.count))
        }
        return writer.bytes
    }

    /// A part of at most `pointsMax` points; anything malformed throws, nothing traps.
    public init(decoding bytes: [UInt8], pointsMax: Int) throws(CorruptDataError) {
        var reader = ByteReader(bytes)
        let group = try GroupID(from: &reader)
        let hops = try reader.readByte()
        guard hops >= 1 && hops <= Self.hopsMax else { throw CorruptDataError("a write part after \(hops) hops") }
        let metaIndex = try reader.readVarint()
        let rows = try WirePoints.readRows(&reader, pointsMax: pointsMax)
        let count = try reader.readCount(max: rows.rowCount, what: "units")
        var lines: [Int] = []
        var unitRows: [Range<Int>] = []
        for _ in 0..<count {
            let line = try reader.readCount(max: Int(Int32.max), what: "line")
            let start = try reader.readCount(max: rows.rowCount, what: "unit start")
            let length = try reader.readCount(max: rows.rowCount - start, what: "unit rows")
            lines.append(line)
            unitRows.append(start..<(start + length))
        }
        guard reader.remaining == 0 else { throw CorruptDataError("\(reader.remaining) bytes after a write part") }
        self.init(group: group, hops: hops, metaIndex: metaIndex, rows: rows, lines: lines, unitRows: unitRows)
    }
}

/// A replica's answer to a write part: what happened to it, or that this node does not hold
/// the group (the coordinator's table is stale: WRONG_GROUP, with this node's version).
public struct WritePartAnswer: Sendable, Equatable {
    public var refused: [SourceError]
    public var failure: String?
    public var failureStatus: Int
    public var stage: String?
    public var leaderAddress: String?
    /// The group's leader as the receiver knows it, when it did not write the part (not the leader).
    public var leaderHint: UInt64?
    /// Set when the receiver holds no replica of the group: its route version.
    public var wrongGroupVersion: UInt64?

    public init(refused: [SourceError], failure: String?, failureStatus: Int, stage: String? = nil, leaderAddress: String? = nil,
                leaderHint: UInt64? = nil, wrongGroupVersion: UInt64? = nil) {
        self.refused = refused
        self.failure = failure
        self.failureStatus = failureStatus
        self.stage = stage
        self.leaderAddress = leaderAddress
        self.leaderHint = leaderHint
        self.wrongGroupVersion = wrongGroupVersion
    }

    /// The receiver holds no replica of `group`.
    public static func wrongGroup(_ group: GroupID, routeVersion: UInt64, leaderHint: UInt64?) -> WritePartAnswer {
        WritePartAnswer(refused: [], failure: "WRONG_GROUP: this node holds no replica of \(group) (route version \(routeVersion))",
                        failureStatus: 503, leaderHint: leaderHint, wrongGroupVersion: routeVersion)
    }

    public func encoded() -> [UInt8] {
        var writer = ByteWriter()
        writer.write(varint: UInt64(refused.count))
        for error in refused {
            writer.write(varint: UInt64(error.line))
            writer.write(varint: UInt64(error.column))
            writer.write(lengthPrefixed: error.message)
        }
        func optional(_ text: String?) {
            writer.write(text == nil ? 0 : 1)
            if let text { writer.write(lengthPrefixed: text) }
        }
        optional(failure)
        writer.write(varint: UInt64(failureStatus))
        optional(stage)
        optional(leaderAddress)
        writer.write(varint: leaderHint.map { $0 + 1 } ?? 0)
        writer.write(varint: wrongGroupVersion.map { $0 + 1 } ?? 0)
        return writer.bytes
    }

    public init(decoding bytes: [UInt8]) throws(CorruptDataError) {
        var reader = ByteReader(bytes)
        let count = try reader.readCount(max: bytes.count, what: "refused units")
        var refused: [SourceError] = []
        for _ in 0..<count {
            let line = try reader.readCount(max: Int(Int32.max), what: "line")
            let column = try reader.readCount(max: Int(Int32.max), what: "column")
            refused.append(SourceError(line: line, column: column, message: try WirePoints.readText(&reader)))
        }
        func optional() throws(CorruptDataError) -> String? { try reader.readByte() == 0 ? nil : try WirePoints.readText(&reader) }
        let failure = try optional()
        let status = try reader.readCount(max: 999, what: "status")
        let stage = try optional()
        let leaderAddress = try optional()
        let hint = try reader.readVarint()
        let version = try reader.readVarint()
        self.init(refused: refused, failure: failure, failureStatus: status, stage: stage, leaderAddress: leaderAddress,
                  leaderHint: hint == 0 ? nil : hint - 1, wrongGroupVersion: version == 0 ? nil : version - 1)
    }
}
