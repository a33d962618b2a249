import TidemarkIO
/// Constants of the segment file format (docs/segment-format.md).
enum SegmentFormat {
    static let headerMagic: [UInt8] = Array("TMSEG\0\0\0".utf8)
    static let trailerMagic: [UInt8] = Array("TMSEGEND".utf8)
    static let version: UInt32 = 1
    static let headerSize = 16
    static let trailerSize = 24
    /// Bounds checked on read, before anything is allocated for a claimed size.
    static let chunkPointsMax = 1 << 16
    static let chunkBytesMax = 64 << 20
    static let footerBytesMax = 256 << 20
    static let pathBytesMax = 4096
    static let seriesMax = 10_000_000
    static let chunksPerSeriesMax = 1 << 20
}

/// Where one chunk is and what it holds, as the footer index lists it.
public struct ChunkLocation: Sendable, Equatable {
    public let offset: Int
    public let length: Int
    public let stats: ChunkStats
}

/// A segment's own facts, kept in its footer.
public struct SegmentInfo: Sendable, Equatable {
    /// The time partition all its points fall in.
    public var partition: Int64
    /// The highest write sequence (WAL position) of any point in it; tombstones with a
    /// higher sequence apply to it.
    public var maxSequence: UInt64
    /// 0 for a flushed segment, one more than its inputs for a compacted one.
    public var level: Int
    /// File names of the segments a compaction merged into this one; at start-up any of
    /// them still present is deleted, so the inputs and the output are never both counted.
    public var replaces: [String]

    public init(partition: Int64, maxSequence: UInt64, level: Int, replaces: [String] = []) {
        self.partition = partition
        self.maxSequence = maxSequence
        self.level = level
        self.replaces = replaces
    }
}
