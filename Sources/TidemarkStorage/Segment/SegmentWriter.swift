import TidemarkCore
import TidemarkIO

/// Builds a segment file: chunks of sorted, de-duplicated series, then the footer index.
///
/// Series must be added in ascending path order, each once, each with timestamps strictly
/// increasing; the writer asserts it. `write(to:)` makes the file durable atomically.
public struct SegmentWriter {
    private var body = ByteWriter(capacity: 1 << 16)
    private var index: [(path: String, chunks: [ChunkLocation])] = []
    private let info: SegmentInfo
    private let compressor: ZstdCompressor
    /// Reused for every chunk: its plain encoding, then its zstd frame.
    private var plain = ByteWriter(capacity: 1 << 12)
    private var compressed: [UInt8] = []

    public init(info: SegmentInfo, compressionLevel: Int32 = 3) {
        self.info = info
        compressor = ZstdCompressor(level: compressionLevel)
        body.write(bytes: SegmentFormat.headerMagic)
        body.write(littleEndian: SegmentFormat.version)
        body.write(littleEndian: CRC32C.checksum(SegmentFormat.headerMagic + withUnsafeBytes(of: SegmentFormat.version.littleEndian, Array.init)))
        precondition(body.count == SegmentFormat.headerSize)
    }

    public var isEmpty: Bool { index.isEmpty }
    public var byteCount: Int { body.count }

    /// Adds points of one series, cut into chunks of at most `SegmentFormat.chunkPointsMax`.
    /// A series may be added in several calls (so a merge never holds it whole), each
    /// continuing after the last timestamp of the one before.
    public mutating func add(path: String, timestamps: [Int64], values: Column) {
        precondition(!timestamps.isEmpty && timestamps.count == values.count)
        let continuing = index.last?.path == path
        precondition(continuing || index.last.map { $0.path < path } ?? true, "series must be added in ascending order")
        precondition(!continuing || index.last!.chunks.last!.stats.maxTime < timestamps[0], "a continued series must move forward in time")
        precondition(timestamps.withUnsafeBufferPointer { times in
            var increasing = true
            for index in 1..<max(times.count, 1) { increasing = increasing && times[index - 1] < times[index] }
            return increasing
        }, "timestamps must strictly increase")
        var chunks: [ChunkLocation] = continuing ? index.removeLast().chunks : []
        var start = 0
        while start < timestamps.count {
            let end = min(start + SegmentFormat.chunkPointsMax, timestamps.count)
            let chunkTimes = Array(timestamps[start..<end])
            let chunkValues = start == 0 && end == timestamps.count ? values : values.gathered(start..<end)
            chunks.append(appendChunk(timestamps: chunkTimes, values: chunkValues))
            start = end
        }
        index.append((path, chunks))
    }

    /// Chunk: stats, sizes, zstd(timestamps ‖ values), CRC32C of all of it.
    private mutating func appendChunk(timestamps: [Int64], values: Column) -> ChunkLocation {
        let stats = ChunkStats(timestamps: timestamps, values: values)
        plain.removeAll()
        TimestampCodec.encode(timestamps, into: &plain)
        ColumnCodec.encode(values, into: &plain)
        compressed.removeAll(keepingCapacity: true)
        plain.bytes.withUnsafeBytes { _ = compressor.compress($0, appendingTo: &compressed) }
        let offset = body.count
        stats.encode(into: &body)
        body.write(varint: UInt64(plain.count))
        body.write(varint: UInt64(compressed.count))
        body.write(bytes: compressed)
        let crc = body.bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[offset...])) }
        body.write(littleEndian: crc)
        return ChunkLocation(offset: offset, length: body.count - offset, stats: stats)
    }

    /// The whole file's bytes: body, footer with its CRC, trailer.
    public func finish() -> [UInt8] { body.bytes + tail() }

    /// What follows the body: the footer with its CRC, then the trailer.
    private func tail() -> [UInt8] {
        var file = ByteWriter()
        let footerOffset = body.count
        var footer = ByteWriter()
        footer.write(signedVarint: info.partition)
        footer.write(varint: info.maxSequence)
        footer.write(varint: UInt64(info.level))
        footer.write(varint: UInt64(info.replaces.count))
        for name in info.replaces { footer.write(lengthPrefixed: name) }
        footer.write(varint: UInt64(index.count))
        for (path, chunks) in index {
            footer.write(lengthPrefixed: path)
            footer.write(varint: UInt64(chunks.count))
            for chunk in chunks {
                footer.write(varint: UInt64(chunk.offset))
                footer.write(varint: UInt64(chunk.length))
                chunk.stats.encode(into: &footer)
            }
        }
        // The index repeats path prefixes and similar statistics: zstd takes most of it away.
        var stored = ByteWriter()
        stored.write(varint: UInt64(footer.count))
        stored.write(bytes: compressor.compress(footer.bytes))
        stored.write(littleEndian: CRC32C.checksum(stored.bytes))
        file.write(bytes: stored.bytes)
        file.write(littleEndian: UInt64(footerOffset))
        file.write(littleEndian: UInt32(stored.count))
        file.write(littleEndian: SegmentFormat.version)
        file.write(bytes: SegmentFormat.trailerMagic)
        return file.bytes
    }

    /// Writes the file durably under `name` in `directory` (temporary name, fsync, rename,
    /// directory fsync): the body as it is, then the tail, never joined in memory.
    public func write(to directory: String, name: String) throws(StorageIOError) {
        try FileIO.writeFileAtomically(parts: [body.bytes, tail()], to: directory + "/" + name, directory: directory)
    }
}
