import Testing
import TidemarkConsensus
import TidemarkCore
import TidemarkIO
import TidemarkQuery
import TidemarkStorage
import TidemarkTestSupport
@testable import TidemarkCluster

/// What travels between a coordinator and the nodes serving region groups (`WritePart`,
/// `Fragment` and their answers), and how a coordinator cuts a series' range into the
/// groups' shares (`ClusterStore.spans`).
@Suite struct DataPlaneTests {
    private func part() -> WritePart {
        var rows = RowBatch()
        let a = rows.addKey(RowBatch.Key(device: "root.p.d1", measurements: ["b", "i", "l", "f", "d", "t"]))
        rows.append(key: a, timestamp: .max, values: [.boolean(true), .int32(.min), .int64(.max), .float(-0.0), .double(.nan), .text("grüß ✓")])
        let b = rows.addKey(RowBatch.Key(device: "root.p.`odd.level`", measurements: ["v"]))
        rows.append(key: b, timestamp: .min, values: [.double(1.5)])
        rows.append(key: a, timestamp: 0, values: [.boolean(false), .int32(7), .int64(-1), .float(.infinity), .double(-2), .text("")])
        return WritePart(group: GroupID(kind: .data, number: 7), hops: 1, metaIndex: 42, rows: rows, lines: [3, 9], unitRows: [0..<1, 1..<3])
    }

    @Test func aWritePartComesBackBitForBit() throws {
        let sent = part()
        let got = try WritePart(decoding: sent.encoded(), pointsMax: 100)
        #expect(got.group == sent.group && got.hops == 1 && got.metaIndex == 42 && got.lines == [3, 9] && got.unitRows == [0..<1, 1..<3])
        #expect(got.rows.keys == sent.rows.keys && got.rows.rowKeys == sent.rows.rowKeys && got.rows.rowTimestamps == sent.rows.rowTimestamps)
        #expect(zip(got.rows.values, sent.rows.values).allSatisfy { $0.isIdentical(to: $1) } && got.rows.values.count == sent.rows.values.count,
                "NaN, -0.0 and text keep their bits")
    }

    @Test func aMalformedWritePartThrowsWhereverItIsCut() throws {
        let bytes = part().encoded()
        for end in 0..<bytes.count {
            #expect(throws: CorruptDataError.self) { try WritePart(decoding: Array(bytes[..<end]), pointsMax: 100) }
        }
        #expect(throws: CorruptDataError.self, "more points than allowed") { try WritePart(decoding: bytes, pointsMax: 12) }
        #expect(throws: CorruptDataError.self, "trailing bytes") { try WritePart(decoding: bytes + [0], pointsMax: 100) }
        var hops = bytes
        hops[2] = 3  // after the group's kind and number
        #expect(throws: CorruptDataError.self, "a part passed on twice") { try WritePart(decoding: hops, pointsMax: 100) }
        // Random bytes never trap.
        var generator = Seeded(state: 30)
        for _ in 0..<2000 {
            let noise = (0..<Int(generator.next() % 64)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            _ = try? WritePart(decoding: noise, pointsMax: 1000)
            _ = try? WritePartAnswer(decoding: noise)
            _ = try? Fragment(decoding: noise)
            _ = try? FragmentAnswer(decoding: noise)
        }
    }

    @Test func answersComeBackAsSent() throws {
        let answer = WritePartAnswer(refused: [SourceError(line: 4, column: 1, message: "root.p.d1.v is INT64, got a DOUBLE value")],
                                     failure: "not the leader", failureStatus: 503, stage: nil, leaderAddress: "127.0.0.1:18080", leaderHint: 0)
        #expect(try WritePartAnswer(decoding: answer.encoded()) == answer)
        let wrong = WritePartAnswer.wrongGroup(GroupID(kind: .data, number: 3), routeVersion: 0, leaderHint: nil)
        #expect(try WritePartAnswer(decoding: wrong.encoded()) == wrong && wrong.wrongGroupVersion == 0)

        let pattern = try PathPattern(parsing: "root.p.*.v")
        let operations: [Fragment.Operation] = [
            .databases, .series(pattern), .oneSeries("root.p.d1.v"), .devices(pattern),
            .scan(path: "root.p.d1.v", range: Int64.min...Int64.max, pointsMax: 4096), .aggregate(path: "root.p.d1.v", range: -5...5),
            .createDatabase("root.p"), .createSeries(SeriesSchema(path: "root.p.d1.s", dataType: .int32, encoding: "RLE", compression: "LZ4")),
            .deleteSeries(pattern), .dropDatabase("root.p"), .delete(pattern, range: 0...9), .flush,
            .aggregates([AggregateRequest(path: "root.p.d1.v", range: 0...9), AggregateRequest(path: "root.p.d2.v", range: Int64.min...0)]),
        ]
        for operation in operations {
            let fragment = Fragment(groups: [GroupID(kind: .data, number: 1), GroupID(kind: .data, number: 9)], metaIndex: 7, weak: true, operation: operation)
            #expect(try Fragment(decoding: fragment.encoded()) == fragment)
        }
        var values = Column.empty(.double)
        values.append(.double(.nan))
        values.append(.double(2))
        var aggregates = Aggregates()
        aggregates.fold(timestamps: [1, 2], values: values)
        let answers: [FragmentAnswer] = [
            .names(["root.a", "root.b"]), .series([SeriesSchema(path: "root.p.d1.s", dataType: .text)]),
            .page(.double, timestamps: [1, 2], values: values, more: true), .aggregates(aggregates), .aggregateList([aggregates, Aggregates()]), .done,
            .failed(.schema(SchemaError("no such series", kind: .noSuchSeries))), .failed(.unavailable("electing", leaderAddress: "h:1")),
            .failed(.typeMismatch(path: "root.p.d1.s", expected: .int32, got: .text)),
            .elsewhere(routeVersion: 12, leaders: [GroupID(kind: .data, number: 1): 3]),
        ]
        for sent in answers {
            // FragmentAnswer holds engine errors, which are not Equatable: compare the bytes.
            #expect(try FragmentAnswer(decoding: sent.encoded()).encoded() == sent.encoded())
        }
    }

    /// A state with one database of two data groups, and one slot's time partitions 0, 1, 2 and 5.
    private func state() throws -> (MetaState, slot: Int) {
        var settings = ClusterSettings()
        settings.timePartitionIntervalMs = 100
        var state = MetaState(settings: settings)
        try state.apply(.registerNode(internalAddress: "n1:1", clientAddress: "n1:2", cores: 2), index: 1)
        try state.apply(.createDatabase(DatabaseRecord(name: "root.p", schemaReplicationFactor: 1, dataReplicationFactor: 1, dataRegionGroupsMin: 2,
                                                       schemaRegionGroups: 1)), index: 2)
        let slot = SeriesSlots.slot(ofDevice: "root.p.d1", slotCount: settings.seriesSlotCount)
        try state.apply(.allocate(database: "root.p", [SlotRequest(slot: slot, timePartitions: [0, 1, 2, 5])]), index: 3)
        return (state, slot)
    }

    @Test func aSeriesRangeIsCutAtItsPartitionsAndJoinedWithinAGroup() throws {
        let (state, slot) = try state()
        let store = ClusterStore(nodeID: 1, scanBatchPoints: 10, timeoutMs: 100, state: { state },
                                 access: ClusterStore.Access(local: { _, _ in nil }, leader: { _ in nil }, call: { _, _, done in done(.failure(PeerError())) }))
        let groups = try #require(state.table.dataSlots["root.p"]?[slot])
        let spans = try store.spans(of: "root.p.d1.v", in: 50...520, state)
        // Partitions 3 and 4 were never allocated: no point lies there, no fragment goes there.
        var expected: [ClusterStore.Span] = []
        for (partition, range) in [(0, 50...99), (1, 100...199), (2, 200...299), (5, 500...520)] as [(Int64, ClosedRange<Int64>)] {
            let group = groups[partition]!
            if let last = expected.last, last.group == group, last.range.upperBound + 1 == range.lowerBound {
                expected[expected.count - 1].range = last.range.lowerBound...range.upperBound
            } else {
                expected.append(ClusterStore.Span(group: group, range: range))
            }
        }
        #expect(spans == expected)
        // A slot's new time partitions follow its group: partitions 0 to 2 join into one span.
        #expect(Set(groups.values).count == 1 && spans.map(\.range) == [50...299, 500...520], "\(spans)")
        // The whole time line, to its ends, without overflow.
        let all = try store.spans(of: "root.p.d1.v", in: Int64.min...Int64.max, state)
        #expect(all.first?.range.lowerBound == 0 && all.last?.range.upperBound == 599)
        #expect(try store.spans(of: "root.q.d1.v", in: 0...10, state).isEmpty, "no database holds it")
        #expect(store.groups(holding: "root.p.d1.v", state).sorted() == Set(groups.values).sorted())
        // A device of the database with nothing written yet may be any group's.
        #expect(store.groups(holding: "root.p.d2.v", state) == store.dataGroups(state).filter { state.groups[$0]?.database == "root.p" })
        #expect(store.dataGroups(state, matching: try PathPattern(parsing: "root.q.**")).isEmpty)
    }

    @Test func aGroupNoReplicaAnswersForFailsTheCallNamingIt() throws {
        let (state, _) = try state()
        let store = ClusterStore(nodeID: 99, scanBatchPoints: 10, timeoutMs: 2000, state: { state },
                                 access: ClusterStore.Access(local: { _, _ in nil }, leader: { _ in nil }, call: { _, _, done in done(.failure(PeerError())) }))
        #expect {
            try store.series(matching: try PathPattern(parsing: "root.p.**"))
        } throws: { error in
            guard case EngineError.unavailable(let message, _) = error else { return false }
            return message.contains("no replica answered for region group(s) data-") && message.contains("peer gone")
        }
    }
}

private struct PeerError: Error, CustomStringConvertible {
    var description: String { "peer gone" }
}
