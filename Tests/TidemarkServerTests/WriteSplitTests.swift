import Synchronization
import Testing
import TidemarkConsensus
import TidemarkCore
import TidemarkIO
import TidemarkCluster
import TidemarkWire
@testable import TidemarkServer

/// A write whose rows fall in several region groups is split by group and answered once
/// (`WriteApplier.split`).
@Suite struct WriteSplitTests {
    private let a = GroupID(kind: .data, number: 2), b = GroupID(kind: .data, number: 5)

    @Test func eachGroupGetsItsRowsAndTheAnswersAreGatheredIntoOne() throws {
        var rows = RowBatch()
        for (line, device) in ["root.p.d1", "root.p.d2", "root.p.d1", "root.q.x", "root.p.d2"].enumerated() {
            rows.append(RowWrite(device: device, timestamp: Int64(line), measurements: ["v", "w"], values: [.int64(Int64(line)), .boolean(true)]))
        }
        // Units: lines 1–3 one row each, line 4 (rows 3 and 4) spans a row outside every database.
        let units = [WriteJob.Unit(line: 1, rows: 0..<1), WriteJob.Unit(line: 2, rows: 1..<2), WriteJob.Unit(line: 3, rows: 2..<3),
                     WriteJob.Unit(line: 4, rows: 3..<5)]
        let answered = Mutex<[WriteOutcome]>([])
        let job = WriteJob(rows: rows, units: units, decodeErrors: [LineError(line: 9, column: 2, message: "syntax")]) { outcome in
            answered.withLock { $0.append(outcome) }
        }
        let parts = WriteApplier.split(job, rowGroups: [a, b, a, nil, b])
        #expect(parts.map(\.0) == [a, b])
        let partA = parts[0].1, partB = parts[1].1
        #expect(partA.rows.rowCount == 2 && Set(partA.rows.keys.map(\.device)) == ["root.p.d1"])
        #expect(partA.rows.rowTimestamps == [0, 2] && partA.units.map(\.line) == [1, 3] && partA.units.map(\.rows) == [0..<1, 1..<2])
        #expect(partA.rows.values == [.int64(0), .boolean(true), .int64(2), .boolean(true)])
        #expect(partB.rows.rowCount == 1 && partB.units.map(\.line) == [2], "line 4 is refused whole, its d2 row too")
        partB.finish(WriteOutcome(refused: [LineError(line: 2, column: 1, message: "type")]))
        #expect(answered.withLock { $0 }.isEmpty, "answered only once every part is")
        partA.finish(WriteOutcome(refused: [], failure: "disk", failureStatus: 500))
        let outcome = try #require(answered.withLock { $0 }.first)
        #expect(answered.withLock { $0 }.count == 1)
        #expect(outcome.refused.map(\.line) == [2, 4, 9] && outcome.failure == "disk" && outcome.failureStatus == 500)
        #expect(outcome.refused.first { $0.line == 4 }?.message.contains("root.q.x: no database holds it") == true)
    }

    @Test func aJobWithNoRowAnyGroupTakesIsAnsweredAtOnce() {
        var rows = RowBatch()
        rows.append(RowWrite(device: "root.q.x", timestamp: 1, measurements: ["v"], values: [.int64(1)]))
        let answered = Mutex<WriteOutcome?>(nil)
        let job = WriteJob(rows: rows, units: [WriteJob.Unit(line: 1, rows: 0..<1)], decodeErrors: []) { outcome in
            answered.withLock { $0 = outcome }
        }
        #expect(WriteApplier.split(job, rowGroups: [nil]).isEmpty)
        #expect(answered.withLock { $0 }?.refused.map(\.line) == [1] && answered.withLock { $0 }?.failure == nil)
    }
}

/// What a heartbeat carries and what the meta leader keeps of it.
@Suite struct HeartbeatTests {
    @Test func reportsRoundTripAndAHostileAnswerIsRefused() throws {
        let reports = [RegionReport(group: GroupID(kind: .data, number: 7), isLeader: true, term: 9, segmentBytes: 1 << 40, memtableBytes: 5),
                       RegionReport(group: GroupID(kind: .data, number: 9), isLeader: false, segmentBytes: 0, memtableBytes: 0)]
        var reader = ByteReader(RegionReport.encode(reports))
        #expect(try RegionReport.decode(&reader) == reports && reader.isAtEnd)
        var claimsTooMany = ByteWriter()
        claimsTooMany.write(varint: UInt64.max)
        var hostile = ByteReader(claimsTooMany.bytes)
        #expect(throws: CorruptDataError.self) { try RegionReport.decode(&hostile) }
        var badRole = RegionReport.encode([reports[0]])
        badRole[3] = 7  // count, kind, number, then the role byte
        var badReader = ByteReader(badRole)
        #expect(throws: CorruptDataError.self) { try RegionReport.decode(&badReader) }
        let heard: [NodeID: [RegionReport]] = [1: reports, 4: []]
        #expect(MetaAgent.decodeHeard(MetaAgent.encodeHeard(heard)) == heard)
        #expect(MetaAgent.decodeHeard([1]) == nil)
    }

    @Test func aNodeIsSilentFromTheFirstHeartbeatUntilItAnswers() {
        let book = HeartbeatBook()
        let second: UInt64 = 1_000_000_000
        #expect(book.silentMs(2, nowNs: 5 * second) == nil, "never asked")
        book.asked(2, nowNs: 5 * second)
        book.asked(2, nowNs: 6 * second)
        #expect(book.silentMs(2, nowNs: 8 * second) == 3000, "silent since the first heartbeat")
        book.answered(2, regions: [], nowNs: 8 * second)
        book.asked(2, nowNs: 9 * second)
        #expect(book.silentMs(2, nowNs: 10 * second) == 2000)
        #expect(book.takeLeaderTerm(5, of: GroupID(kind: .data, number: 3)) && book.takeLeaderTerm(5, of: GroupID(kind: .data, number: 3)))
        #expect(!book.takeLeaderTerm(4, of: GroupID(kind: .data, number: 3)), "a deposed leader's older term is stale")
        book.reset()
        #expect(book.silentMs(2, nowNs: 10 * second) == nil)
        #expect(book.takeLeaderTerm(1, of: GroupID(kind: .data, number: 3)), "a new leader of the meta group starts afresh")
    }
}
