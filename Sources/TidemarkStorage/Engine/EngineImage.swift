import Foundation
import TidemarkCore

/// A region's durable state as one byte string, for a replica that fell behind its group's
/// compacted log: the schema, the tombstones and every segment file, covering the log
/// through `index`. Layout: `"TMIMAGE1" | u64 index | varint databases, each text |
/// varint series, each schema record | tombstone file (length-prefixed) | varint segments,
/// each name and file (length-prefixed) | u32 CRC32C of all before it`.
struct RegionImage {
    static let magic = Array("TMIMAGE1".utf8)
    var index: UInt64
    var databases: [String]
    var series: [SeriesSchema]
    var tombstoneFile: [UInt8]
    var segments: [(name: String, bytes: [UInt8])]

    func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: segments.reduce(4096) { $0 + $1.bytes.count + 64 })
        writer.write(bytes: Self.magic)
        writer.write(littleEndian: index)
        writer.write(varint: UInt64(databases.count))
        for database in databases { writer.write(lengthPrefixed: database) }
        writer.write(varint: UInt64(series.count))
        for one in series { writer.write(lengthPrefixed: SchemaRecord.createSeries(one).encoded()) }
        writer.write(lengthPrefixed: tombstoneFile)
        writer.write(varint: UInt64(segments.count))
        for segment in segments {
            writer.write(lengthPrefixed: segment.name)
            writer.write(lengthPrefixed: segment.bytes)
        }
        writer.write(littleEndian: CRC32C.checksum(writer.bytes))
        return writer.bytes
    }

    /// Checks the whole image before anything of it is used: a bad one changes nothing.
    init(decoding bytes: [UInt8]) throws(CorruptDataError) {
        guard bytes.count >= Self.magic.count + 12, Array(bytes.prefix(Self.magic.count)) == Self.magic else {
            throw CorruptDataError("region image: bad magic (not an image, or another version)")
        }
        let stored = bytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: bytes.count - 4, as: UInt32.self)) }
        guard CRC32C.checksum(bytes.withUnsafeBytes { UnsafeRawBufferPointer(rebasing: $0[..<(bytes.count - 4)]) }) == stored else {
            throw CorruptDataError("region image: CRC mismatch")
        }
        var reader = ByteReader(bytes, offset: Self.magic.count, end: bytes.count - 4)
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
            segments.append((name, Array(try reader.readLengthPrefixed(max: Int(UInt32.max)))))
        }
    }

    init(index: UInt64, databases: [String], series: [SeriesSchema], tombstoneFile: [UInt8], segments: [(name: String, bytes: [UInt8])]) {
        self.index = index
        self.databases = databases
        self.series = series
        self.tombstoneFile = tombstoneFile
        self.segments = segments
    }
}

extension StorageEngine {
    var installedPath: String { directory + "/installed-image" }

    /// The log index of the last region image installed here (0 for none): the region holds
    /// everything through it even where its own segments say less.
    public var installedImageIndex: UInt64 {
        guard let bytes = try? FileIO.readFile(installedPath), bytes.count == 8 else { return 0 }
        return bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
    }

    /// Everything applied so far, as an image for another replica, stamped as covering the
    /// log through `index` (what the caller has applied). Flushes first, so the segments
    /// hold it all; compaction waits meanwhile, so no file goes while it is read. Segments
    /// over `bytesMax` together are refused before any is read.
    public func exportImage(coveringThrough index: UInt64, bytesMax: Int = .max) throws -> [UInt8] {
        try flush()
        return try maintenanceLock.withLock {
            let everything = try PathPattern(parsing: "root.**")
            let (databases, series, handles) = state.withLock { (schema.databases, schema.series(matching: everything), segments) }
            let segmentBytes = handles.reduce(0) { $0 + $1.reader.fileBytes }
            guard segmentBytes <= bytesMax else {
                throw EngineError.tooLarge("the region's \(handles.count) segments take \(segmentBytes) bytes, more than the \(bytesMax) an image may carry")
            }
            let tombstoneFile = try FileIO.readFile(tombstonePath) ?? []
            var files: [(name: String, bytes: [UInt8])] = []
            for handle in handles {
                guard let bytes = try FileIO.readFile(segmentDirectory + "/" + handle.name) else {
                    throw EngineError.io("\(handle.name) vanished while the region image was taken")
                }
                files.append((handle.name, bytes))
            }
            return RegionImage(index: index, databases: databases, series: series, tombstoneFile: tombstoneFile, segments: files).encoded()
        }
    }

    /// Replaces everything this region holds by `bytes` (from `exportImage` on another
    /// replica). The image is checked whole first; a crash midway leaves the marker behind,
    /// so the caller installs the same image again after the restart. An image short of
    /// `index` is refused.
    public func installImage(_ bytes: [UInt8], coveringAtLeast index: UInt64) throws {
        let image: RegionImage
        do { image = try RegionImage(decoding: bytes) } catch { throw EngineError.corrupt("\(error)") }
        guard image.index >= index else {
            throw EngineError.corrupt("the region image covers the log through \(image.index), short of \(index)")
        }
        try maintenanceLock.withLock {
            try writeLock.withLock {
                for name in try FileIO.list(segmentDirectory) { try FileIO.remove(segmentDirectory + "/" + name) }
                for segment in image.segments {
                    try FileIO.writeFileAtomically(segment.bytes, to: segmentDirectory + "/" + segment.name, directory: segmentDirectory)
                }
                if image.tombstoneFile.isEmpty {
                    if FileManager.default.fileExists(atPath: tombstonePath) { try FileIO.remove(tombstonePath) }
                } else {
                    try FileIO.writeFileAtomically(image.tombstoneFile, to: tombstonePath, directory: directory)
                }
                // The schema log gets the change as records, so its replay ends where memory does.
                var records = state.withLock { schema.databases }.map { SchemaRecord.deleteDatabase($0) }
                records += image.databases.map { SchemaRecord.createDatabase($0) } + image.series.map { SchemaRecord.createSeries($0) }
                if !records.isEmpty { _ = try schemaLog.append(records.map { $0.encoded() }) }
                // Readers wait for the swap as a whole (it reopens the segments under `state`,
                // the one place that reads files under it): an install is rare, a half-swapped
                // region must never be read.
                try state.withLock {
                    for database in schema.databases { try? schema.deleteDatabase(database) }
                    for database in image.databases { try? schema.createDatabase(database) }
                    for series in image.series { try? schema.createSeries(series) }
                    seriesDirectory = SeriesDirectory(entriesMax: options.seriesDirectoryEntriesMax)
                    active = Memtable(createdNs: monotonicNowNs())
                    sealed = []
                    tombstones = []
                    flushedThrough = [:]
                    flushedThroughMax = 0
                    try loadTombstones()
                    try openSegments()
                }
                try FileIO.writeFileAtomically(withUnsafeBytes(of: image.index.littleEndian, Array.init), to: installedPath, directory: directory)
            }
        }
        logger.notice("installed a region image", metadata: ["index": "\(image.index)", "segments": "\(image.segments.count)",
                                                             "series": "\(image.series.count)", "bytes": "\(bytes.count)"])
    }
}
