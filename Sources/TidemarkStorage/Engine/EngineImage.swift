import Foundation
import TidemarkCore

/// What a region image holds besides its segment files: the log index it covers, the schema,
/// the tombstones and the segments' names and sizes.
///
/// A region image is the region's durable state as one byte string, for a replica that fell
/// behind its group's compacted log. It is made and installed piece by piece, since a
/// region's segments need not fit in memory. Layout: `"TMIMAGE2" | u32 header bytes | header
/// | every segment file, in the header's order | u32 CRC32C of all before it`; the header:
/// `u64 index | varint databases, each text | varint series, each schema record | tombstone
/// file (length-prefixed) | varint segments, each name (text) and varint size`.
struct RegionImageHeader {
    static let magic = Array("TMIMAGE2".utf8)
    /// Magic and header length.
    static let leadBytes = magic.count + 4
    static let headerBytesMax = 1 << 30
    var index: UInt64
    var databases: [String]
    var series: [SeriesSchema]
    var tombstoneFile: [UInt8]
    var segments: [(name: String, bytes: Int)]

    /// The magic, the header's length and the header: what comes before the segment files.
    func encodedLead() -> [UInt8] {
        var header = ByteWriter(capacity: 4096 + tombstoneFile.count)
        header.write(littleEndian: index)
        header.write(varint: UInt64(databases.count))
        for database in databases { header.write(lengthPrefixed: database) }
        header.write(varint: UInt64(series.count))
        for one in series { header.write(lengthPrefixed: SchemaRecord.createSeries(one).encoded()) }
        header.write(lengthPrefixed: tombstoneFile)
        header.write(varint: UInt64(segments.count))
        for segment in segments {
            header.write(lengthPrefixed: segment.name)
            header.write(varint: UInt64(segment.bytes))
        }
        var lead = ByteWriter(capacity: header.bytes.count + Self.leadBytes)
        lead.write(bytes: Self.magic)
        lead.write(littleEndian: UInt32(header.bytes.count))
        lead.write(bytes: header.bytes)
        return lead.bytes
    }

    init(index: UInt64, databases: [String], series: [SeriesSchema], tombstoneFile: [UInt8], segments: [(name: String, bytes: Int)]) {
        self.index = index
        self.databases = databases
        self.series = series
        self.tombstoneFile = tombstoneFile
        self.segments = segments
    }

    /// The header alone (after the magic and its length).
    init(decoding bytes: [UInt8]) throws(CorruptDataError) {
        var reader = ByteReader(bytes)
        index = try reader.read(littleEndian: UInt64.self)
        databases = []
        for _ in 0..<(try reader.readCount(max: 1_000_000, what: "image databases")) {
            guard let name = try reader.readText(max: 4096) else { throw CorruptDataError("region image: a database name is not UTF-8") }
            databases.append(name)
        }
        series = []
        for _ in 0..<(try reader.readCount(max: 100_000_000, what: "image series")) {
            guard case .createSeries(let one) = try SchemaRecord.decode(Array(try reader.readLengthPrefixed(max: 1 << 16))) else {
                throw CorruptDataError("region image: a series record is not a series")
            }
            series.append(one)
        }
        tombstoneFile = Array(try reader.readLengthPrefixed(max: 1 << 30))
        segments = []
        for _ in 0..<(try reader.readCount(max: 1_000_000, what: "image segments")) {
            guard let name = try reader.readText(max: 255), name.hasSuffix(".seg"), !name.contains("/"), StorageEngine.segmentID(name) != nil else {
                throw CorruptDataError("region image: bad segment name")
            }
            segments.append((name, try reader.readCount(max: Int(Int64.max >> 1), what: "segment size")))
        }
        guard reader.isAtEnd else { throw CorruptDataError("region image: \(reader.remaining) stray bytes after the header") }
    }
}

/// A region image read piece by piece, in order: the header from memory, the segments from
/// links to their files made when the export began (so a compaction meanwhile cannot take
/// them away), the checksum last. `close()` removes the links.
public final class RegionImageExport: @unchecked Sendable {
    /// The whole image's size.
    public let byteCount: Int
    private let lead: [UInt8]
    private let files: [(path: String, bytes: Int)]
    private let directory: String
    /// Bytes handed out so far, and their checksum.
    private var offset = 0
    private var crc: UInt32 = 0
    /// The file `offset` is in, and where that file starts in the image.
    private var fileIndex = 0
    private var fileStart: Int
    private var closed = false

    init(lead: [UInt8], files: [(path: String, bytes: Int)], directory: String) {
        self.lead = lead
        self.files = files
        self.directory = directory
        fileStart = lead.count
        byteCount = lead.count + files.reduce(0) { $0 + $1.bytes } + 4
    }

    deinit { close() }

    /// The next at most `max` bytes; empty once all were read.
    public func read(max: Int) throws -> [UInt8] {
        precondition(max > 0 && !closed, "read past close")
        var out: [UInt8] = []
        out.reserveCapacity(Swift.min(max, byteCount - offset))
        let trailerStart = byteCount - 4
        while out.count < max && offset < trailerStart {
            let want = max - out.count
            let piece: [UInt8]
            if offset < lead.count {
                piece = Array(lead[offset..<Swift.min(lead.count, offset + want)])
            } else {
                while offset >= fileStart + files[fileIndex].bytes {
                    fileStart += files[fileIndex].bytes
                    fileIndex += 1
                }
                let file = files[fileIndex]
                let count = Swift.min(want, fileStart + file.bytes - offset)
                let descriptor = try FileIO.open(file.path, O_RDONLY)
                defer { FileIO.close(descriptor) }
                piece = try FileIO.read(descriptor, count: count, at: offset - fileStart, path: file.path)
                guard piece.count == count else { throw EngineError.io("\(file.path) is shorter than when the image began") }
            }
            crc = CRC32C.checksum(piece, continuing: crc)
            out += piece
            offset += piece.count
        }
        if out.count < max && offset >= trailerStart && offset < byteCount {
            let trailer = withUnsafeBytes(of: crc.littleEndian, Array.init)
            let taken = trailer[(offset - trailerStart)..<Swift.min(4, offset - trailerStart + max - out.count)]
            out += taken
            offset += taken.count
        }
        return out
    }

    /// Removes the export's links; safe to call more than once.
    public func close() {
        guard !closed else { return }
        closed = true
        try? FileIO.removeDirectory(directory)
    }
}

extension StorageEngine {
    var installedPath: String { directory + "/installed-image" }
    var exportsDirectory: String { directory + "/exports" }

    /// The log index of the last region image installed here (0 for none): the region holds
    /// everything through it even where its own segments say less.
    public var installedImageIndex: UInt64 {
        guard let bytes = try? FileIO.readFile(installedPath), bytes.count == 8 else { return 0 }
        return bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
    }

    /// Exports a crash left behind hold links to segments that may be gone otherwise, and an
    /// image copied to a file for installing is of no use after one.
    func removeStaleExports() throws {
        try FileIO.makeDirectory(exportsDirectory)
        for name in try FileIO.list(exportsDirectory) { try FileIO.removeDirectory(exportsDirectory + "/" + name) }
        for name in try FileIO.list(directory) where name.hasPrefix("image-") && name.hasSuffix(".tmp") {
            try FileIO.remove(directory + "/" + name)
        }
    }

    /// Everything applied so far, as an image for another replica to read piece by piece,
    /// stamped as covering the log through `index` (what the caller has applied). Flushes
    /// first, so the segments hold it all. An image over `bytesMax` is refused before any
    /// segment is read.
    public func openImageExport(coveringThrough index: UInt64, bytesMax: Int = .max) throws -> RegionImageExport {
        try flush()
        // No compaction meanwhile: the links must name the segments the schema goes with.
        return try maintenanceLock.withLock {
            let everything = try PathPattern(parsing: "root.**")
            let (databases, series, handles) = state.withLock { (schema.databases, schema.series(matching: everything), segments) }
            let segmentBytes = handles.reduce(0) { $0 + $1.reader.fileBytes }
            guard segmentBytes <= bytesMax else {
                throw EngineError.tooLarge("the region's \(handles.count) segments take \(segmentBytes) bytes, more than the \(bytesMax) an image may carry")
            }
            let header = RegionImageHeader(index: index, databases: databases, series: series,
                                           tombstoneFile: try FileIO.readFile(tombstonePath) ?? [],
                                           segments: handles.map { ($0.name, $0.reader.fileBytes) })
            let exportDirectory = exportsDirectory + "/\(index)-\(UInt64.random(in: 0...UInt64.max))"
            try FileIO.makeDirectory(exportDirectory)
            let export = RegionImageExport(lead: header.encodedLead(), files: handles.map { (exportDirectory + "/" + $0.name, $0.reader.fileBytes) },
                                           directory: exportDirectory)
            for handle in handles { try FileIO.link(segmentDirectory + "/" + handle.name, exportDirectory + "/" + handle.name) }
            guard export.byteCount <= bytesMax else {
                export.close()
                throw EngineError.tooLarge("the region image takes \(export.byteCount) bytes, more than the \(bytesMax) it may")
            }
            return export
        }
    }

    /// `openImageExport` read whole into memory (tests, small regions).
    public func exportImage(coveringThrough index: UInt64, bytesMax: Int = .max) throws -> [UInt8] {
        let export = try openImageExport(coveringThrough: index, bytesMax: bytesMax)
        defer { export.close() }
        return try export.read(max: export.byteCount)
    }

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
    /// `openImageExport` on another replica), reading it piece by piece. The image is checked
    /// whole first (a bad one changes nothing); a crash midway leaves the marker behind, so
    /// the caller installs the same image again after the restart. An image short of `index`
    /// is refused.
    public func installImage(file path: String, coveringAtLeast index: UInt64) throws {
        let descriptor = try FileIO.open(path, O_RDONLY)
        defer { FileIO.close(descriptor) }
        let (header, segmentsStart) = try checkImage(descriptor, path: path)
        guard header.index >= index else {
            throw EngineError.corrupt("the region image covers the log through \(header.index), short of \(index)")
        }
        try maintenanceLock.withLock {
            try writeLock.withLock {
                for name in try FileIO.list(segmentDirectory) { try FileIO.remove(segmentDirectory + "/" + name) }
                var start = segmentsStart
                for segment in header.segments {
                    try copy(descriptor, from: path, at: start, count: segment.bytes, to: segmentDirectory + "/" + segment.name)
                    start += segment.bytes
                }
                try FileIO.syncDirectory(segmentDirectory)
                if header.tombstoneFile.isEmpty {
                    if FileManager.default.fileExists(atPath: tombstonePath) { try FileIO.remove(tombstonePath) }
                } else {
                    try FileIO.writeFileAtomically(header.tombstoneFile, to: tombstonePath, directory: directory)
                }
                // The schema log gets the change as records, so its replay ends where memory does.
                var records = state.withLock { schema.databases }.map { SchemaRecord.deleteDatabase($0) }
                records += header.databases.map { SchemaRecord.createDatabase($0) } + header.series.map { SchemaRecord.createSeries($0) }
                if !records.isEmpty { _ = try schemaLog.append(records.map { $0.encoded() }) }
                // Readers wait for the swap as a whole (it reopens the segments under `state`,
                // the one place that reads files under it): an install is rare, a half-swapped
                // region must never be read.
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
                try FileIO.writeFileAtomically(withUnsafeBytes(of: header.index.littleEndian, Array.init), to: installedPath, directory: directory)
            }
        }
        logger.notice("installed a region image", metadata: ["index": "\(header.index)", "segments": "\(header.segments.count)",
                                                             "series": "\(header.series.count)", "bytes": "\(segmentsStart)+"])
    }

    /// Checks an image file's checksum, magic and sizes; returns its header and where its
    /// segment files start.
    private func checkImage(_ descriptor: Int32, path: String) throws -> (RegionImageHeader, Int) {
        let size = try FileIO.size(descriptor, path: path)
        guard size >= RegionImageHeader.leadBytes + 4 else { throw EngineError.corrupt("region image: \(size) bytes is too short") }
        var crc: UInt32 = 0
        var offset = 0
        while offset < size - 4 {
            let piece = try FileIO.read(descriptor, count: min(Self.copyPieceBytes, size - 4 - offset), at: offset, path: path)
            guard !piece.isEmpty else { throw EngineError.corrupt("region image: \(path) shrank while read") }
            crc = CRC32C.checksum(piece, continuing: crc)
            offset += piece.count
        }
        let trailer = try FileIO.read(descriptor, count: 4, at: size - 4, path: path)
        guard trailer.count == 4, crc == trailer.withUnsafeBytes({ UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) }) else {
            throw EngineError.corrupt("region image: CRC mismatch")
        }
        let lead = try FileIO.read(descriptor, count: RegionImageHeader.leadBytes, at: 0, path: path)
        guard Array(lead.prefix(RegionImageHeader.magic.count)) == RegionImageHeader.magic else {
            throw EngineError.corrupt("region image: bad magic (not an image, or another version)")
        }
        let headerBytes = Int(lead.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: RegionImageHeader.magic.count, as: UInt32.self)) })
        let segmentsStart = RegionImageHeader.leadBytes + headerBytes
        guard headerBytes <= RegionImageHeader.headerBytesMax, segmentsStart <= size - 4 else {
            throw EngineError.corrupt("region image: a header of \(headerBytes) bytes does not fit")
        }
        let header: RegionImageHeader
        do {
            header = try RegionImageHeader(decoding: try FileIO.read(descriptor, count: headerBytes, at: RegionImageHeader.leadBytes, path: path))
        } catch let error as CorruptDataError {
            throw EngineError.corrupt("\(error)")
        }
        guard segmentsStart + header.segments.reduce(0, { $0 + $1.bytes }) + 4 == size else {
            throw EngineError.corrupt("region image: its segment sizes do not add up to its \(size) bytes")
        }
        // The second copy would overwrite the first: the region would silently lose its points.
        guard Set(header.segments.map(\.name)).count == header.segments.count else {
            throw EngineError.corrupt("region image: a segment is named twice")
        }
        return (header, segmentsStart)
    }

    static var copyPieceBytes: Int { 1 << 20 }

    /// Copies `count` bytes at `offset` of the open file into a new file at `target`, durably
    /// (a temporary name, fsync, rename; the caller syncs the directory).
    private func copy(_ descriptor: Int32, from path: String, at offset: Int, count: Int, to target: String) throws {
        let temporary = target + ".tmp"
        let output = try FileIO.open(temporary, O_WRONLY | O_CREAT | O_TRUNC)
        do {
            var done = 0
            while done < count {
                let piece = try FileIO.read(descriptor, count: min(Self.copyPieceBytes, count - done), at: offset + done, path: path)
                guard !piece.isEmpty else { throw EngineError.corrupt("region image: \(path) ends inside a segment") }
                try FileIO.writeAll(output, piece, path: temporary)
                done += piece.count
            }
            try FileIO.fsync(output, path: temporary)
        } catch {
            FileIO.close(output)
            try? FileIO.remove(temporary)
            throw error
        }
        FileIO.close(output)
        try FileIO.rename(temporary, target)
    }
}
