import Foundation
import Synchronization
import Testing
import TidemarkCore
import TidemarkTestSupport
@testable import TidemarkIO
@testable import TidemarkStorage

/// What a replica's engine does beyond a standalone one's: take a whole region image (a
/// follower behind the leader's compacted log), and apply committed entries it cannot refuse.
@Suite struct ReplicaEngineTests {
    private func region(_ directory: String, log: RegionLog) throws -> StorageEngine {
        var options = EngineOptions()
        options.partitionInterval = 1000
        options.compactionTriggerSegments = 1000
        return try StorageEngine(directory: directory, options: options, log: log)
    }

    private func points(_ path: String, _ pairs: [(Int64, Double)]) -> [PointWrite] {
        pairs.map { PointWrite(path: path, timestamp: $0.0, value: .double($0.1)) }
    }

    /// The size of the file at `path`, or nil if there is none.
    private func sizeOfFile(_ path: String) -> Int? {
        (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? nil
    }

    /// Every series' points, by path.
    private func contents(_ engine: StorageEngine) throws -> [String: [String]] {
        var out: [String: [String]] = [:]
        for series in engine.series(matching: try PathPattern(parsing: "root.**")) {
            let (timestamps, values) = try engine.scan(path: series.path, range: Int64.min...Int64.max).all()
            guard case .double(let doubles) = values else { continue }
            out[series.path] = zip(timestamps, doubles).map { "\($0)=\($1)" }
        }
        return out
    }

    @Test func anImageReplacesTheRegionWholeAndSurvivesARestart() throws {
        let source = try region(try temporaryDirectory("image-source"), log: .own)
        try source.write(points("root.sg.d1.s", (0..<100).map { (Int64($0), Double($0)) }))
        try source.write(points("root.sg.d2.s", (0..<100).map { (Int64($0), Double($0)) }))
        try source.write(points("root.other.d3.s", (2000..<2100).map { (Int64($0), Double($0) / 2) }))
        try source.flush()
        try source.write(points("root.sg.d1.s", [(150, 150)]))
        try source.delete(matching: try PathPattern(parsing: "root.sg.*.s"), range: 10...150)
        try source.write(points("root.sg.d1.s", [(20, 20.5)]))  // after the delete: stays
        let expected = try contents(source)
        #expect(expected["root.sg.d1.s"]?.count == 11 && expected["root.other.d3.s"]?.count == 100)
        // Segments past the bound are refused before they are read.
        #expect(throws: EngineError.self) { try source.exportImage(coveringThrough: 42, bytesMax: 100) }
        let image = try source.exportImage(coveringThrough: 42)

        // A replica with state of its own, some flushed and some not: none of it survives.
        let directory = try temporaryDirectory("image-target")
        var target = try region(directory, log: .consensus)
        let junk = try #require(try target.prepareWrite(points("root.junk.d.s", [(1, 1)])))
        try target.apply(index: 1, record: junk.record)
        try target.flush()
        try target.apply(index: 2, record: try #require(try target.prepareWrite(points("root.sg.d1.s", [(5, -1)]))).record)
        #expect(try contents(target)["root.junk.d.s"] == ["1=1.0"])

        // A damaged image, or one short of the index asked for, changes nothing.
        var damaged = image
        damaged[damaged.count / 2] ^= 0x40
        let segmentsBefore = try FileIO.list(directory + "/segments").sorted()
        #expect(throws: EngineError.self) { try target.installImage(damaged, coveringAtLeast: 42) }
        var badTrailer = image
        badTrailer[badTrailer.count - 1] ^= 0x01
        #expect(throws: EngineError.self) { try target.installImage(badTrailer, coveringAtLeast: 42) }
        #expect(throws: EngineError.self) { try target.installImage(image, coveringAtLeast: 43) }
        #expect(try contents(target)["root.junk.d.s"] == ["1=1.0"])
        #expect(try FileIO.list(directory + "/segments").sorted() == segmentsBefore)
        // Checksummed, but naming one segment twice (the second copy would overwrite the first).
        let headerBytes = Int(image[8..<12].withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) })
        var header = try RegionImageHeader(decoding: Array(image[12..<(12 + headerBytes)]))
        #expect(header.segments.count >= 2)
        header.segments[1].name = header.segments[0].name
        var twice = header.encodedLead() + image[(12 + headerBytes)..<(image.count - 4)]
        withUnsafeBytes(of: CRC32C.checksum(twice).littleEndian) { twice += $0 }
        let refusal = #expect(throws: EngineError.self) { try target.installImage(twice, coveringAtLeast: 42) }
        #expect(refusal.map { "\($0)".contains("named twice") } == true, "\(String(describing: refusal))")
        // Segment sizes whose sum overflows are refused, not trapped on.
        var huge = try RegionImageHeader(decoding: Array(image[12..<(12 + headerBytes)]))
        for slot in huge.segments.indices { huge.segments[slot].bytes = Int(Int64.max >> 1) }
        let overflowing = huge.encodedLead() + image[(12 + headerBytes)...]
        let overflowRefusal = #expect(throws: EngineError.self) { try target.installImage(Array(overflowing), coveringAtLeast: 42) }
        #expect(overflowRefusal.map { "\($0)".contains("add up to more") } == true, "\(String(describing: overflowRefusal))")
        #expect(try FileIO.list(directory + "/segments").sorted() == segmentsBefore)
        #expect(target.installedImageIndex == 0 && !FileIO.exists(directory + "/installing"))

        try target.installImage(image, coveringAtLeast: 42)
        #expect(try contents(target) == expected)
        #expect(target.databases() == source.databases())
        #expect(target.installedImageIndex == 42)

        // Entries after the image apply on top; all of it is on disk.
        try target.apply(index: 43, record: try #require(try target.prepareWrite(points("root.sg.d2.s", [(300, 3)]))).record)
        var after = expected
        after["root.sg.d2.s"]! += ["300=3.0"]
        #expect(try contents(target) == after)
        try target.flush()
        target.close()
        target = try region(directory, log: .consensus)
        #expect(try contents(target) == after)
        #expect(target.installedImageIndex == 42)
        #expect(target.series("root.junk.d.s") == nil)
    }

    /// An image is read piece by piece from links to the segments taken when the export began:
    /// a compaction that removes those segments meanwhile takes nothing from it, and the
    /// pieces put together are the image, which installs from its file.
    @Test func anImageIsReadInPiecesWhileACompactionRemovesItsSegments() throws {
        let directory = try temporaryDirectory("image-pieces")
        let source = try region(directory, log: .own)
        for part in 0..<3 {
            try source.write(points("root.sg.d\(part).s", (0..<200).map { (Int64($0), Double($0 * part)) }))
            try source.flush()
        }
        let expected = try contents(source)
        #expect(source.stats.segments == 3)
        let export = try source.openImageExport(coveringThrough: 7)
        let whole = try source.exportImage(coveringThrough: 7)
        #expect(export.byteCount == whole.count)
        var pieces: [UInt8] = []
        pieces += try export.read(max: 5)
        // The three segments of partition 0 become one; theirs are gone from the region.
        #expect(try source.compact(partition: 0))
        #expect(source.stats.segments == 1)
        while true {
            let piece = try export.read(max: 777)
            if piece.isEmpty { break }
            #expect(piece.count <= 777)
            pieces += piece
        }
        #expect(pieces == whole)
        #expect(try FileIO.list(directory + "/exports").count == 1)
        export.close()
        #expect(try FileIO.list(directory + "/exports").isEmpty, "closing the export left its links")

        let imagePath = try temporaryDirectory("image-pieces-file") + "/image"
        try FileIO.writeFileAtomically(pieces, to: imagePath, directory: (imagePath as NSString).deletingLastPathComponent)
        let target = try region(try temporaryDirectory("image-pieces-target"), log: .consensus)
        try target.installImage(file: imagePath, coveringAtLeast: 7)
        #expect(try contents(target) == expected)
        #expect(target.installedImageIndex == 7)
    }

    /// An image's segments leave its file from its end a piece at a time, each staged before
    /// the file is cut by it. An install stopped after any piece (a crash) goes on from the
    /// cut file after a restart, also from between the swap's two renames; another image
    /// drops what was staged.
    @Test func anInstallMovesSegmentsOutOfItsFileAndResumesAfterACrashAtAnyStep() throws {
        let source = try region(try temporaryDirectory("image-move-source"), log: .own)
        for part in 0..<4 {
            try source.write(points("root.sg.d\(part).s", (0..<(100 * (part + 1))).map { (Int64($0), Double($0 * part)) }))
            try source.flush()
        }
        let expected = try contents(source)
        let image = try source.exportImage(coveringThrough: 9)
        let segmentBytes = try FileIO.list(source.segmentDirectory).compactMap { sizeOfFile(source.segmentDirectory + "/" + $0) }
        #expect(segmentBytes.count == 4)
        try source.write(points("root.sg.d9.s", [(1, 9)]))
        let newer = try source.exportImage(coveringThrough: 10)
        let newerExpected = try contents(source)
        struct Crash: Error {}
        let pieceBytes = 100
        // The first piece takes the trailer too; a piece never spans two segments.
        let pieces = segmentBytes.reduce(0) { $0 + ($1 + pieceBytes - 1) / pieceBytes }

        for crashAfter in 1...pieces {
            let directory = try temporaryDirectory("image-move-target")
            var target = try region(directory, log: .consensus)
            try target.apply(index: 1, record: try #require(try target.prepareWrite(points("root.junk.d.s", [(1, 1)]))).record)
            try target.flush()
            let file = try temporaryDirectory("image-move-file") + "/image"
            try FileIO.writeFileAtomically(image, to: file, directory: (file as NSString).deletingLastPathComponent)
            let staging = directory + "/installing/segments"
            var moved = 0
            var fileBytes = image.count
            #expect(throws: Crash.self) {
                try target.installImage(file: file, coveringAtLeast: 9, pieceBytes: pieceBytes) {
                    moved += 1
                    let now = sizeOfFile(file)!
                    #expect(now < fileBytes && now >= fileBytes - pieceBytes - (moved == 1 ? 4 : 0), "cut by more than a piece")
                    fileBytes = now
                    if moved == crashAfter { throw Crash() }
                }
            }
            // Until the swap the region is as it was; a restart keeps what was staged.
            #expect(try contents(target)["root.junk.d.s"] == ["1=1.0"])
            target.close()
            target = try region(directory, log: .consensus)
            #expect(try contents(target)["root.junk.d.s"] == ["1=1.0"])
            #expect(try !FileIO.list(staging).isEmpty)
            if crashAfter == pieces {
                // As if the node stopped between the swap's two renames.
                target.close()
                try FileIO.rename(directory + "/segments", directory + "/segments.replaced")
                target = try region(directory, log: .consensus)
            }
            if crashAfter == 2 {
                // The leader sent a newer image meanwhile: what was staged of the old one goes.
                try target.installImage(newer, coveringAtLeast: 10)
                #expect(try contents(target) == newerExpected)
            } else {
                try target.installImage(file: file, coveringAtLeast: 9, pieceBytes: pieceBytes)
                #expect(try contents(target) == expected)
                #expect(sizeOfFile(file)! < image.count - segmentBytes.reduce(0, +), "segments left in the image file")
            }
            #expect(!FileIO.exists(directory + "/installing") && !FileIO.exists(directory + "/segments.replaced"))
            target.close()
            target = try region(directory, log: .consensus)
            #expect(try contents(target) == (crashAfter == 2 ? newerExpected : expected))
            #expect(target.installedImageIndex == (crashAfter == 2 ? 10 : 9))
        }

        // A staged segment damaged while the node was down fails the image's checksum on
        // resuming: nothing is installed and the staging goes.
        let directory = try temporaryDirectory("image-move-damaged")
        let target = try region(directory, log: .consensus)
        let file = try temporaryDirectory("image-move-damaged-file") + "/image"
        try FileIO.writeFileAtomically(image, to: file, directory: (file as NSString).deletingLastPathComponent)
        #expect(throws: Crash.self) { try target.installImage(file: file, coveringAtLeast: 9, pieceBytes: 50) { throw Crash() } }
        let staging = directory + "/installing/segments"
        let stagedPath = staging + "/" + (try FileIO.list(staging)).first!
        var staged = try #require(try FileIO.readFile(stagedPath))
        staged[staged.count - 10] ^= 0x10  // in the piece that was moved
        try FileIO.writeFileAtomically(staged, to: stagedPath, directory: staging)
        let refusal = #expect(throws: EngineError.self) { try target.installImage(file: file, coveringAtLeast: 9) }
        #expect(refusal.map { "\($0)".contains("CRC mismatch") } == true, "\(String(describing: refusal))")
        #expect(!FileIO.exists(directory + "/installing") && target.installedImageIndex == 0)
        #expect(try contents(target).isEmpty)
    }

    /// A replica cannot refuse a committed entry when its flush is behind: past
    /// `sealedMemtablesMax` sealed memtables the applier flushes them itself.
    @Test func anApplierPastTheSealedMemtableBoundFlushesItself() throws {
        var options = EngineOptions()
        options.partitionInterval = 1000
        options.memtableBytesMax = 1  // every entry seals
        options.sealedMemtablesMax = 2
        options.compactionTriggerSegments = 1000
        let engine = try StorageEngine(directory: try temporaryDirectory("image-flush"), options: options, log: .consensus)
        let scheduled = Counter()
        engine.scheduleFlushes { _ in scheduled.add() }  // a flush stage that never gets to it
        // Entries from a leader (prepared before any seal here: a writer would now be refused).
        let records = try (1...6).map { index in try #require(try engine.prepareWrite(points("root.sg.d.s", [(Int64(index), Double(index))]))).record }
        for (offset, record) in records.enumerated() {
            let index = offset + 1
            try engine.apply(index: UInt64(index), record: record)
            #expect(engine.stats.sealedMemtables <= options.sealedMemtablesMax, "sealed memtables grew past the bound at \(index)")
        }
        #expect(scheduled.value == 6)
        #expect(engine.stats.segments >= 4)
        let (timestamps, _) = try engine.scan(path: "root.sg.d.s", range: Int64.min...Int64.max).all()
        #expect(timestamps == [1, 2, 3, 4, 5, 6])
    }
}

private final class Counter: Sendable {
    private let count = Mutex(0)
    func add() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}
