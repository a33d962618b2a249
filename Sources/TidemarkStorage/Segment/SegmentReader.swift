#if canImport(Glibc)
import Glibc
#endif
import TidemarkCore
import TidemarkIO

/// Why a segment cannot be used: unreadable, or its bytes fail a check.
public enum SegmentError: Error, Sendable, CustomStringConvertible {
    case io(StorageIOError)
    case corrupt(path: String, reason: String)

    public var description: String {
        switch self {
        case .io(let error): "\(error)"
        case .corrupt(let path, let reason): "\(path): corrupt segment: \(reason)"
        }
    }
}

/// An open segment file: its footer index in memory, chunks read on demand with their CRC checked.
///
/// Thread-safe: reads use `pread`, and the index is immutable after `init`.
public final class SegmentReader: Sendable {
    public let path: String
    public let info: SegmentInfo
    /// Chunks of each series, in time order.
    public let index: [String: [ChunkLocation]]
    public let fileBytes: Int
    private let descriptor: Int32

    /// Opens and checks header, trailer and footer; chunk CRCs are checked as chunks are read.
    public init(path: String) throws(SegmentError) {
        self.path = path
        let descriptor: Int32
        do {
            descriptor = try FileIO.open(path, O_RDONLY)
        } catch {
            throw .io(error)
        }
        do throws(SegmentError) {
            let size = try Self.io { () throws(StorageIOError) in try FileIO.size(descriptor, path: path) }
            guard size >= SegmentFormat.headerSize + SegmentFormat.trailerSize else {
                throw SegmentError.corrupt(path: path, reason: "file of \(size) bytes is too short")
            }
            let header = try Self.io { () throws(StorageIOError) in try FileIO.read(descriptor, count: SegmentFormat.headerSize, at: 0, path: path) }
            let trailer = try Self.io { () throws(StorageIOError) in
                try FileIO.read(descriptor, count: SegmentFormat.trailerSize, at: size - SegmentFormat.trailerSize, path: path)
            }
            let (footerOffset, footerLength) = try Self.checkEnds(header: header, trailer: trailer, size: size, path: path)
            let footer = try Self.io { () throws(StorageIOError) in try FileIO.read(descriptor, count: footerLength, at: footerOffset, path: path) }
            (info, index) = try Self.parseFooter(footer, bodyEnd: footerOffset, path: path)
            fileBytes = size
            self.descriptor = descriptor
        } catch {
            FileIO.close(descriptor)
            throw error
        }
    }

    deinit { FileIO.close(descriptor) }

    /// The points of one chunk, after checking its CRC and its invariants.
    public func read(_ chunk: ChunkLocation) throws(SegmentError) -> (timestamps: [Int64], values: Column) {
        try decode(try rawBytes(chunk), of: chunk)
    }

    /// A chunk's bytes as stored, unchecked (benchmarks time `decode` on them apart from I/O).
    public func rawBytes(_ chunk: ChunkLocation) throws(SegmentError) -> [UInt8] {
        try Self.io { () throws(StorageIOError) in try FileIO.read(descriptor, count: chunk.length, at: chunk.offset, path: path) }
    }

    /// Checks a chunk's CRC and invariants and decodes its points.
    public func decode(_ bytes: [UInt8], of chunk: ChunkLocation) throws(SegmentError) -> (timestamps: [Int64], values: Column) {
        guard bytes.count == chunk.length, chunk.length >= 4 else { throw corrupt("chunk at \(chunk.offset) runs past the end") }
        let stored = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: chunk.length - 4, as: UInt32.self) }
        let computed = bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[..<(chunk.length - 4)])) }
        guard UInt32(littleEndian: stored) == computed else { throw corrupt("chunk at \(chunk.offset) fails its CRC") }
        do {
            var reader = ByteReader(bytes, end: chunk.length - 4)
            let stats = try ChunkStats.decode(from: &reader, countMax: SegmentFormat.chunkPointsMax)
            guard stats.encoded == chunk.stats.encoded else { throw CorruptDataError("chunk header differs from the index") }
            let plainSize = try reader.readCount(max: SegmentFormat.chunkBytesMax, what: "chunk size")
            let compressed = try reader.readLengthPrefixed(max: SegmentFormat.chunkBytesMax)
            guard reader.isAtEnd else { throw CorruptDataError("bytes after the chunk payload") }
            var plain = ByteReader(try Zstd.decompress(compressed, size: plainSize))
            let timestamps = try TimestampCodec.decode(count: stats.count, from: &plain)
            let values = try ColumnCodec.decode(stats.dataType, count: stats.count, from: &plain)
            guard plain.isAtEnd else { throw CorruptDataError("bytes after the chunk's values") }
            let increasing = timestamps.withUnsafeBufferPointer { times in
                var ok = true
                for index in 1..<max(times.count, 1) { ok = ok && times[index - 1] < times[index] }
                return ok
            }
            guard timestamps.first == stats.minTime, timestamps.last == stats.maxTime, increasing else {
                throw CorruptDataError("chunk timestamps are not strictly increasing within its range")
            }
            return (timestamps, values)
        } catch {
            throw corrupt("chunk at \(chunk.offset): \(error)")
        }
    }

    /// Reads every chunk, so a damaged file is found before it is trusted (recovery, quarantine checks).
    public func verifyAll() throws(SegmentError) {
        for chunks in index.values {
            for chunk in chunks { _ = try read(chunk) }
        }
    }

    private func corrupt(_ reason: String) -> SegmentError { .corrupt(path: path, reason: reason) }

    private static func io<T>(_ body: () throws(StorageIOError) -> T) throws(SegmentError) -> T {
        do { return try body() } catch { throw .io(error) }
    }

    private static func checkEnds(header: [UInt8], trailer: [UInt8], size: Int, path: String) throws(SegmentError) -> (Int, Int) {
        var headerReader = ByteReader(header)
        var trailerReader = ByteReader(trailer)
        do {
            guard Array(try headerReader.readBytes(8)) == SegmentFormat.headerMagic else { throw CorruptDataError("not a segment file (bad magic)") }
            let version = try headerReader.read(littleEndian: UInt32.self)
            guard version == SegmentFormat.version else { throw CorruptDataError("format version \(version) is not \(SegmentFormat.version)") }
            let crc = try headerReader.read(littleEndian: UInt32.self)
            guard crc == CRC32C.checksum(Array(header[0..<12])) else { throw CorruptDataError("header fails its CRC") }
            let footerOffset = Int(clamping: try trailerReader.read(littleEndian: UInt64.self))
            let footerLength = Int(try trailerReader.read(littleEndian: UInt32.self))
            _ = try trailerReader.read(littleEndian: UInt32.self)
            guard Array(try trailerReader.readBytes(8)) == SegmentFormat.trailerMagic else { throw CorruptDataError("bad trailer magic (torn file?)") }
            guard footerOffset >= SegmentFormat.headerSize, footerLength >= 4, footerLength <= SegmentFormat.footerBytesMax,
                  footerOffset == size - SegmentFormat.trailerSize - footerLength else {  // no sum: the offset may be Int.max
                throw CorruptDataError("footer position \(footerOffset)+\(footerLength) does not fit a file of \(size) bytes")
            }
            return (footerOffset, footerLength)
        } catch {
            throw .corrupt(path: path, reason: "\(error)")
        }
    }

    private static func parseFooter(_ footer: [UInt8], bodyEnd: Int, path: String) throws(SegmentError) -> (SegmentInfo, [String: [ChunkLocation]]) {
        do {
            let stored = footer.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: footer.count - 4, as: UInt32.self)) }
            guard stored == footer.withUnsafeBytes({ CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[..<(footer.count - 4)])) }) else {
                throw CorruptDataError("footer fails its CRC")
            }
            var compressed = ByteReader(footer, end: footer.count - 4)
            let plainSize = try compressed.readCount(max: SegmentFormat.footerBytesMax, what: "footer size")
            var reader = ByteReader(try Zstd.decompress(try compressed.readBytes(compressed.remaining), size: plainSize))
            let partition = try reader.readSignedVarint()
            let maxSequence = try reader.readVarint()
            let level = try reader.readCount(max: 64, what: "level")
            var replaces: [String] = []
            for _ in 0..<(try reader.readCount(max: 100_000, what: "replaced segments")) {
                guard let name = try reader.readText(max: 255),
                      !name.contains("/") else { throw CorruptDataError("bad replaced segment name") }
                replaces.append(name)
            }
            let seriesCount = try reader.readCount(max: SegmentFormat.seriesMax, what: "series count")
            var index: [String: [ChunkLocation]] = [:]
            var previousPath: String?
            for _ in 0..<seriesCount {
                guard let seriesPath = try reader.readText(max: SegmentFormat.pathBytesMax) else {
                    throw CorruptDataError("series path is not UTF-8")
                }
                guard previousPath.map({ $0 < seriesPath }) ?? true else { throw CorruptDataError("series out of order in the index") }
                previousPath = seriesPath
                let chunkCount = try reader.readCount(max: SegmentFormat.chunksPerSeriesMax, what: "chunk count")
                var chunks: [ChunkLocation] = []
                for _ in 0..<chunkCount {
                    let offset = try reader.readCount(max: bodyEnd, what: "chunk offset")
                    let length = try reader.readCount(max: bodyEnd - offset, what: "chunk length")
                    guard offset >= SegmentFormat.headerSize else { throw CorruptDataError("chunk offset inside the header") }
                    let stats = try ChunkStats.decode(from: &reader, countMax: SegmentFormat.chunkPointsMax)
                    if let previous = chunks.last, previous.stats.maxTime >= stats.minTime {
                        throw CorruptDataError("chunks of \(seriesPath) overlap in time")
                    }
                    chunks.append(ChunkLocation(offset: offset, length: length, stats: stats))
                }
                index[seriesPath] = chunks
            }
            guard reader.isAtEnd else { throw CorruptDataError("bytes after the footer index") }
            return (SegmentInfo(partition: partition, maxSequence: maxSequence, level: level, replaces: replaces), index)
        } catch {
            throw .corrupt(path: path, reason: "\(error)")
        }
    }
}
