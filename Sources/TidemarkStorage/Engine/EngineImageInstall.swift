import Foundation
import TidemarkCore
import TidemarkIO

/// Installing a region image from a file (a follower behind its leader's compacted log, a
/// multi-leader replica joining), so that the disk holds it about once and a crash at any
/// point resumes:
/// 1. the file's lead (magic, header) and sizes are checked, then the lead and the file's
///    checksum are staged in `installing/`;
/// 2. the segments leave the file from its end, a piece at a time: each piece is written at
///    its place in its segment under `installing/segments/` and synced, then the file is cut
///    to where the piece began. The file's length is the install's progress: what lies past
///    it is staged. So file and staged segments hold the image once, plus one piece; the
///    pieces' checksums, combined, must be the file's, or nothing is installed;
/// 3. under the write lock, `segments/` is renamed to `segments.replaced/` and the staged
///    directory into its place; tombstones, schema and memory follow; the `installed-image`
///    marker goes last, then the leftovers.
/// A restart with the same (possibly cut) file finds the staged lead and goes on from there.
extension StorageEngine {
    /// What an install goes by: the image's lead (everything before its segments), the
    /// header decoded from it, and the checksum the image's trailer gives.
    private struct ImageLead {
        var bytes: [UInt8]
        var header: RegionImageHeader
        var checksum: UInt32
        /// Where the image's segments start in its file.
        var segmentsStart: Int { bytes.count }
    }

    var installingDirectory: String { directory + "/installing" }
    private var stagedSegmentDirectory: String { installingDirectory + "/segments" }
    private var stagedLeadPath: String { installingDirectory + "/lead" }
    private var replacedSegmentDirectory: String { directory + "/segments.replaced" }

    /// `installImage(file:coveringAtLeast:)` for an image in memory.
    public func installImage(_ bytes: [UInt8], coveringAtLeast index: UInt64) throws {
        let path = directory + "/image-\(UInt64.random(in: 0...UInt64.max)).tmp"
        let descriptor = try FileIO.open(path, O_WRONLY | O_CREAT | O_TRUNC)
        defer { try? FileIO.remove(path) }
        do { try FileIO.writeAll(descriptor, bytes, path: path) } catch {
            FileIO.close(descriptor)
            throw error
        }
        FileIO.close(descriptor)
        try installImage(file: path, coveringAtLeast: index)
    }

    /// Replaces everything this region holds by the image in the file at `path` (from
    /// `openImageExport` on another replica), moving its segments out of the file (which it
    /// cuts short as it goes: the caller deletes it afterwards), reading it once. An image
    /// whose checksum does not hold changes nothing in the region; a crash midway leaves the
    /// staged lead behind, so installing the same file after the restart goes on where it
    /// stopped. An image short of `index` is refused. `afterEachPiece` runs each time a piece
    /// of at most `pieceBytes` has left the file.
    public func installImage(file path: String, coveringAtLeast index: UInt64, pieceBytes: Int = 8 << 20,
                             afterEachPiece: (() throws -> Void)? = nil) throws {
        precondition(pieceBytes > 0, "pieces hold bytes")
        try maintenanceLock.withLock {
            let descriptor = try FileIO.open(path, O_RDWR)
            defer { FileIO.close(descriptor) }
            let resumed = try stagedInstall(of: descriptor, path: path)
            let lead = try resumed ?? checkImage(descriptor, path: path)
            let header = lead.header, segmentsStart = lead.segmentsStart
            guard header.index >= index else {
                throw EngineError.corrupt("the region image covers the log through \(header.index), short of \(index)")
            }
            if resumed == nil { try stage(lead) }
            if FileIO.exists(stagedSegmentDirectory) {
                var starts: [Int] = []
                var start = segmentsStart
                for segment in header.segments {
                    starts.append(start)
                    start += segment.bytes
                }
                var parts: [UInt32] = []
                var cut = try FileIO.size(descriptor, path: path)
                for (segment, start) in zip(header.segments, starts).reversed() {
                    let staged = stagedSegmentDirectory + "/" + segment.name
                    let output = try FileIO.open(staged, O_RDWR | O_CREAT)
                    defer { FileIO.close(output) }
                    try FileIO.syncDirectory(stagedSegmentDirectory)
                    // What a crash left staged of this segment: everything past the cut.
                    let end = start + segment.bytes
                    let stagedFrom = min(max(cut, start), end)
                    var tail = try checksum(of: output, path: staged, from: stagedFrom - start, count: end - stagedFrom)
                    var from = stagedFrom
                    while from > start {
                        let pieceStart = max(start, from - pieceBytes)
                        let piece = try FileIO.read(descriptor, count: from - pieceStart, at: pieceStart, path: path)
                        guard piece.count == from - pieceStart else { throw EngineError.corrupt("region image: \(path) ends inside a segment") }
                        try FileIO.write(output, piece, at: pieceStart - start, path: staged)
                        try FileIO.fsync(output, path: staged)
                        try FileIO.truncate(descriptor, to: pieceStart, path: path)
                        try FileIO.fsync(descriptor, path: path)
                        tail = CRC32C.combine(CRC32C.checksum(piece), tail, secondBytes: end - from)
                        from = pieceStart
                        cut = pieceStart
                        try afterEachPiece?()
                    }
                    parts.append(tail)
                }
                precondition(parts.count == header.segments.count, "one checksum per segment")
                let combined = zip(header.segments, parts.reversed()).reduce(CRC32C.checksum(lead.bytes)) {
                    CRC32C.combine($0, $1.1, secondBytes: $1.0.bytes)
                }
                guard combined == lead.checksum else {
                    try removeStaging()
                    throw EngineError.corrupt("region image: CRC mismatch")
                }
            }
            try writeLock.withLock { try swapIn(header) }
            if FileIO.exists(replacedSegmentDirectory) { try FileIO.removeDirectory(replacedSegmentDirectory) }
            try removeStaging()
            logger.notice("installed a region image", metadata: ["index": "\(header.index)", "segments": "\(header.segments.count)",
                                                                 "series": "\(header.series.count)", "bytes": "\(segmentsStart)+"])
        }
    }

    /// The header of the image an interrupted install staged, if the file is that image
    /// (its lead is the staged one: the lead is never cut); a staged install of another
    /// image is dropped.
    private func stagedInstall(of descriptor: Int32, path: String) throws -> ImageLead? {
        guard let staged = try FileIO.readFile(stagedLeadPath) else {
            if FileIO.exists(installingDirectory) { try removeStaging() }
            return nil
        }
        let lead = Array(staged.dropFirst(4))
        guard lead.count >= RegionImageHeader.leadBytes,
              try FileIO.read(descriptor, count: lead.count, at: 0, path: path) == lead else {
            try removeStaging()
            return nil
        }
        let checksum = staged.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) }
        do {
            return ImageLead(bytes: lead, header: try RegionImageHeader(decoding: Array(lead[RegionImageHeader.leadBytes...])), checksum: checksum)
        } catch {
            throw EngineError.corrupt("the staged region image: \(error)")
        }
    }

    /// Starts staging an image: its checksum (`u32`) and lead are durable before a segment
    /// leaves the file.
    private func stage(_ lead: ImageLead) throws {
        try FileIO.makeDirectory(stagedSegmentDirectory)
        try FileIO.writeFileAtomically(withUnsafeBytes(of: lead.checksum.littleEndian, Array.init) + lead.bytes, to: stagedLeadPath,
                                       directory: installingDirectory)
        try FileIO.syncDirectory(directory)
    }

    private func removeStaging() throws {
        if FileIO.exists(stagedSegmentDirectory) { try FileIO.removeDirectory(stagedSegmentDirectory) }
        if FileIO.exists(installingDirectory) { try FileIO.removeDirectory(installingDirectory) }
    }

    /// What a crash left of an install that is of no more use: the replaced segments (the
    /// staged ones replace them either way) and a staged image no newer than the installed one.
    func removeInstallLeftovers() throws {
        if FileIO.exists(replacedSegmentDirectory) { try FileIO.removeDirectory(replacedSegmentDirectory) }
        guard let lead = try FileIO.readFile(stagedLeadPath) else { return }
        let indexOffset = 4 + RegionImageHeader.leadBytes
        guard lead.count >= indexOffset + 8 else { return try removeStaging() }
        let staged = lead.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: indexOffset, as: UInt64.self)) }
        if staged <= installedImageIndex { try removeStaging() }
    }

    /// The staged segments replace the region's (the caller holds `maintenanceLock` and
    /// `writeLock`); then its tombstones, schema and memory. Run again after a crash, it
    /// finds the segments swapped and redoes the rest.
    private func swapIn(_ header: RegionImageHeader) throws {
        if FileIO.exists(stagedSegmentDirectory) {
            if FileIO.exists(replacedSegmentDirectory) { try FileIO.removeDirectory(replacedSegmentDirectory) }
            if FileIO.exists(segmentDirectory) { try FileIO.rename(segmentDirectory, replacedSegmentDirectory) }
            try FileIO.rename(stagedSegmentDirectory, segmentDirectory)
            try FileIO.syncDirectory(directory)
            try FileIO.syncDirectory(installingDirectory)
        }
        if header.tombstoneFile.isEmpty {
            if FileIO.exists(tombstonePath) { try FileIO.remove(tombstonePath) }
        } else {
            try FileIO.writeFileAtomically(header.tombstoneFile, to: tombstonePath, directory: directory)
        }
        // The schema log gets the change as records, so its replay ends where memory does.
        var records = state.withLock { schema.databases }.map { SchemaRecord.deleteDatabase($0) }
        records += header.databases.map { SchemaRecord.createDatabase($0) } + header.series.map { SchemaRecord.createSeries($0) }
        // The image's schema is every change through its index: a replay of those entries leaves it be.
        records.append(.appliedThrough(header.index))
        unloggedSchema = []  // changes the image replaces
        _ = try schemaLog.append(records.map { $0.encoded() })
        schemaIndex = max(schemaIndex, header.index)
        // Readers wait for the swap as a whole (it reopens the segments under `state`, the
        // one place that reads files under it): an install is rare, a half-swapped region
        // must never be read.
        try state.withLock {
            for database in schema.databases { try? schema.deleteDatabase(database) }
            for database in header.databases { try? schema.createDatabase(database) }
            for series in header.series { try? schema.createSeries(series) }
            seriesDirectory = SeriesDirectory(entriesMax: options.seriesDirectoryEntriesMax)
            active = Memtable(createdNs: monotonicNowNs())
            sealed = []
            tombstones = []
            flushedThrough = [:]
            flushedThroughMax = 0
            try loadTombstones()
            try openSegments()
        }
        try FileIO.writeFileAtomically(header.extras, to: installedExtrasPath, directory: directory)
        try FileIO.writeFileAtomically(withUnsafeBytes(of: header.index.littleEndian, Array.init), to: installedPath, directory: directory)
    }

    /// Checks an image file's magic and sizes; returns its lead, read once (the checksum is
    /// checked as the segments move).
    private func checkImage(_ descriptor: Int32, path: String) throws -> ImageLead {
        let size = try FileIO.size(descriptor, path: path)
        guard size >= RegionImageHeader.leadBytes + 4 else { throw EngineError.corrupt("region image: \(size) bytes is too short") }
        let trailer = try FileIO.read(descriptor, count: 4, at: size - 4, path: path)
        guard trailer.count == 4 else { throw EngineError.corrupt("region image: \(path) shrank while read") }
        let checksum = trailer.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) }
        let magicAndLength = try FileIO.read(descriptor, count: RegionImageHeader.leadBytes, at: 0, path: path)
        guard Array(magicAndLength.prefix(RegionImageHeader.magic.count)) == RegionImageHeader.magic else {
            throw EngineError.corrupt("region image: bad magic (not an image, or another version)")
        }
        let headerBytes = Int(magicAndLength.withUnsafeBytes {
            UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: RegionImageHeader.magic.count, as: UInt32.self))
        })
        let segmentsStart = RegionImageHeader.leadBytes + headerBytes
        guard headerBytes <= RegionImageHeader.headerBytesMax, segmentsStart <= size - 4 else {
            throw EngineError.corrupt("region image: a header of \(headerBytes) bytes does not fit")
        }
        let bytes = magicAndLength + (try FileIO.read(descriptor, count: headerBytes, at: RegionImageHeader.leadBytes, path: path))
        guard bytes.count == segmentsStart else { throw EngineError.corrupt("region image: \(path) shrank while read") }
        let header: RegionImageHeader
        do {
            header = try RegionImageHeader(decoding: Array(bytes[RegionImageHeader.leadBytes...]))
        } catch {
            throw EngineError.corrupt("\(error)")
        }
        // Each size is checked against the file before it is added: sizes from a damaged
        // header must not overflow the sum.
        var segmentBytes = 0
        for segment in header.segments {
            guard segment.bytes <= size - segmentsStart - segmentBytes else {
                throw EngineError.corrupt("region image: its segment sizes add up to more than its \(size) bytes")
            }
            segmentBytes += segment.bytes
        }
        guard segmentsStart + segmentBytes + 4 == size else {
            throw EngineError.corrupt("region image: its segment sizes do not add up to its \(size) bytes")
        }
        // The second copy would overwrite the first: the region would silently lose its points.
        guard Set(header.segments.map(\.name)).count == header.segments.count else {
            throw EngineError.corrupt("region image: a segment is named twice")
        }
        return ImageLead(bytes: bytes, header: header, checksum: checksum)
    }

    static var copyPieceBytes: Int { 1 << 20 }

    /// The checksum of `count` bytes at `offset` of an open file.
    private func checksum(of descriptor: Int32, path: String, from offset: Int, count: Int) throws -> UInt32 {
        var crc: UInt32 = 0
        var done = 0
        while done < count {
            let piece = try FileIO.read(descriptor, count: min(Self.copyPieceBytes, count - done), at: offset + done, path: path)
            guard !piece.isEmpty else { throw EngineError.corrupt("region image: \(path) is shorter than staged") }
            crc = CRC32C.checksum(piece, continuing: crc)
            done += piece.count
        }
        return crc
    }
}
