import TidemarkIO

/// A record of a multi-leader group's log (one `FileWAL` per group on each node): every
/// entry applied here, this node's own and those shipped from the others, in apply order,
/// and, now and then, the dispatchers' progress. The log is the state machine's WAL, and
/// replaying it rebuilds the group: what each source has applied here, this node's entries
/// that some peer still lacks, and how far each peer has acknowledged them.
public enum MultiLeaderRecord: Sendable, Equatable {
    /// `source`'s write number `sequence`.
    case entry(source: UInt64, sequence: UInt64, data: [UInt8])
    /// Per peer the first own sequence it has not acknowledged; per source the next to apply;
    /// the peers removed from the group (they stay removed whatever the config says).
    case progress(shipped: [UInt64: UInt64], applied: [UInt64: UInt64], removed: Set<UInt64> = [])

    private static let entryTag: UInt8 = 1
    private static let progressTag: UInt8 = 2
    /// Sources or peers in one progress record (nodes of one group).
    private static let nodesMax = 1024

    public var encoded: [UInt8] {
        var writer = ByteWriter(capacity: bytesEstimate)
        switch self {
        case .entry(let source, let sequence, let data):
            writer.write(Self.entryTag)
            writer.write(varint: source)
            writer.write(varint: sequence)
            writer.write(bytes: data)
        case .progress(let shipped, let applied, let removed):
            writer.write(Self.progressTag)
            for map in [shipped, applied] {
                writer.write(varint: UInt64(map.count))
                for (node, sequence) in map.sorted(by: { $0.key < $1.key }) {
                    writer.write(varint: node)
                    writer.write(varint: sequence)
                }
            }
            // Only when there are any: records from before removals existed read the same.
            if !removed.isEmpty {
                writer.write(varint: UInt64(removed.count))
                for node in removed.sorted() { writer.write(varint: node) }
            }
        }
        assert(writer.count <= bytesEstimate, "the estimate is a bound")
        return writer.bytes
    }

    /// At least the bytes `encoded` takes: its buffer is reserved once (a large entry is not
    /// grown and copied again and again).
    private var bytesEstimate: Int {
        let varint = ByteWriter.varintBytesMax
        return switch self {
        case .entry(_, _, let data): 1 + 2 * varint + data.count  // tag, source, sequence, data
        case .progress(let shipped, let applied, let removed):
            // tag, three counts, a pair of varints per node in the maps, one per removed peer
            1 + 3 * varint + 2 * varint * (shipped.count + applied.count) + varint * removed.count
        }
    }

    public init(source: UInt64, sequence: UInt64, data: [UInt8]) {
        self = .entry(source: source, sequence: sequence, data: data)
    }

    public init(shipped: [UInt64: UInt64], applied: [UInt64: UInt64], removed: Set<UInt64> = []) {
        self = .progress(shipped: shipped, applied: applied, removed: removed)
    }

    public init(decoding bytes: [UInt8]) throws(CorruptDataError) {
        var reader = ByteReader(bytes)
        switch try reader.readByte() {
        case Self.entryTag:
            let source = try reader.readVarint()
            let sequence = try reader.readVarint()
            guard source > 0, sequence > 0 else { throw CorruptDataError("a multi-leader entry without source or sequence") }
            self = .entry(source: source, sequence: sequence, data: Array(try reader.readBytes(reader.remaining)))
        case Self.progressTag:
            var maps: [[UInt64: UInt64]] = []
            for _ in 0..<2 {
                var map: [UInt64: UInt64] = [:]
                for _ in 0..<(try reader.readCount(max: Self.nodesMax, what: "nodes")) {
                    map[try reader.readVarint()] = try reader.readVarint()
                }
                maps.append(map)
            }
            var removed: Set<UInt64> = []
            if !reader.isAtEnd {
                for _ in 0..<(try reader.readCount(max: Self.nodesMax, what: "removed peers")) { removed.insert(try reader.readVarint()) }
            }
            guard reader.isAtEnd else { throw CorruptDataError("bytes after a multi-leader progress record") }
            self = .progress(shipped: maps[0], applied: maps[1], removed: removed)
        case let tag:
            throw CorruptDataError("unknown multi-leader record \(tag)")
        }
    }
}
