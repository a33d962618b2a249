import Foundation
import TidemarkCore
import TidemarkIO

/// What a region image holds besides its segment files: the log index it covers, the schema,
/// the tombstones, the segments' names and sizes, and the state the group's state machine
/// keeps beside the region (the node's users), opaque to the engine.
///
/// A region image is the region's durable state as one byte string, for a replica that fell
/// behind its group's compacted log. It is made and installed piece by piece, since a
/// region's segments need not fit in memory. Layout: `"TMIMAGE3" | u32 header bytes | header
/// | every segment file, in the header's order | u32 CRC32C of all before it`; the header:
/// `u64 index | varint databases, each text | varint series, each schema record | tombstone
/// file (length-prefixed) | varint segments, each name (text) and varint size | extras
/// (length-prefixed)`.
struct RegionImageHeader {
    static let magic = Array("TMIMAGE3".utf8)
    /// Magic and header length.
    static let leadBytes = magic.count + 4
    static let headerBytesMax = 1 << 30
    var index: UInt64
    var databases: [String]
    var series: [SeriesSchema]
    var tombstoneFile: [UInt8]
    var segments: [(name: String, bytes: Int)]
    var extras: [UInt8]

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
        header.write(lengthPrefixed: extras)
        var lead = ByteWriter(capacity: header.bytes.count + Self.leadBytes)
        lead.write(bytes: Self.magic)
        lead.write(littleEndian: UInt32(header.bytes.count))
        lead.write(bytes: header.bytes)
        return lead.bytes
    }

    init(index: UInt64, databases: [String], series: [SeriesSchema], tombstoneFile: [UInt8], segments: [(name: String, bytes: Int)],
         extras: [UInt8] = []) {
        self.extras = extras
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
        extras = Array(try reader.readLengthPrefixed(max: 1 << 28))
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
    var installedExtrasPath: String { directory + "/installed-extras" }

    /// The extras of the last image installed here (empty for none): written before the
    /// `installed-image` marker, so a crash after the marker still finds them.
    public func installedImageExtras() throws -> [UInt8] { try FileIO.readFile(installedExtrasPath) ?? [] }
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
    /// segment is read. `extras` rides along, for the state machine's `installedImageExtras`.
    public func openImageExport(coveringThrough index: UInt64, bytesMax: Int = .max, extras: [UInt8] = []) throws -> RegionImageExport {
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
                                           segments: handles.map { ($0.name, $0.reader.fileBytes) }, extras: extras)
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
}
