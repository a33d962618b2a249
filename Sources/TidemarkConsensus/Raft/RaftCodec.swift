import TidemarkIO

/// The binary forms of entries and snapshots, shared by the Raft log on disk and the frames
/// between nodes. Counts and lengths are bounded by what is left to read.
public enum RaftCodec {
    static let entriesMax = 1 << 20
    /// Bytes of one entry's or snapshot's data.
    public static let dataBytesMax = 64 << 20

    private static let varint = ByteWriter.varintBytesMax
    /// The most bytes `write(_ group:into:)` takes: kind, number.
    static let groupBytesMax = 1 + varint

    /// At least the bytes `write(_:into:)` takes for `entries` (a buffer's capacity: reserved
    /// once, a large buffer is not grown, copied and faulted in page by page again and again).
    static func bytesEstimate(_ entries: [RaftEntry]) -> Int {
        varint + entries.reduce(0) { $0 + 3 * varint + 1 + $1.data.count }  // count; index, term, kind, length, data
    }

    /// At least the bytes of `blobs` written as a count, then each one length-prefixed.
    static func bytesEstimate(lengthPrefixed blobs: [[UInt8]]) -> Int {
        varint + blobs.reduce(0) { $0 + varint + $1.count }
    }

    /// At least the bytes `write(_:into:)` takes for `snapshot`.
    static func bytesEstimate(_ snapshot: RaftSnapshot) -> Int {
        let members = snapshot.membership.voters.count + snapshot.membership.learners.count
        return 5 * varint + members * varint + snapshot.data.count  // index, term, two counts, length
    }

    static func write(_ entries: [RaftEntry], into writer: inout ByteWriter) {
        let start = writer.count
        writer.write(varint: UInt64(entries.count))
        for entry in entries {
            writer.write(varint: entry.index)
            writer.write(varint: entry.term)
            writer.write(entry.kind.rawValue)
            writer.write(lengthPrefixed: entry.data)
        }
        assert(writer.count - start <= bytesEstimate(entries), "the entries' estimate is a bound")
    }

    /// Entries with consecutive indexes from 1 up.
    static func readEntries(_ reader: inout ByteReader) throws(CorruptDataError) -> [RaftEntry] {
        var entries: [RaftEntry] = []
        for _ in 0..<(try reader.readCount(max: min(entriesMax, reader.remaining), what: "entries")) {
            let index = try reader.readVarint(), term = try reader.readVarint()
            guard let kind = RaftEntry.Kind(rawValue: try reader.readByte()) else { throw CorruptDataError("unknown entry kind") }
            let data = Array(try reader.readLengthPrefixed(max: dataBytesMax))
            guard index > 0, entries.last.map({ $0.index &+ 1 == index }) ?? true else {
                throw CorruptDataError("entries out of order at \(index)")
            }
            entries.append(RaftEntry(index: index, term: term, kind: kind, data: data))
        }
        return entries
    }

    static func write(_ snapshot: RaftSnapshot, into writer: inout ByteWriter) {
        let start = writer.count
        defer { assert(writer.count - start <= bytesEstimate(snapshot), "the snapshot's estimate is a bound") }
        writer.write(varint: snapshot.index)
        writer.write(varint: snapshot.term)
        for members in [snapshot.membership.voters, snapshot.membership.learners] {
            writer.write(varint: UInt64(members.count))
            for member in members.sorted() { writer.write(varint: member) }
        }
        writer.write(lengthPrefixed: snapshot.data)
    }

    static func readSnapshot(_ reader: inout ByteReader) throws(CorruptDataError) -> RaftSnapshot {
        let index = try reader.readVarint(), term = try reader.readVarint()
        var sets: [Set<UInt64>] = []
        for _ in 0..<2 {
            var members = Set<UInt64>()
            for _ in 0..<(try reader.readCount(max: min(1 << 16, reader.remaining), what: "members")) { members.insert(try reader.readVarint()) }
            sets.append(members)
        }
        guard sets[0].isDisjoint(with: sets[1]) else { throw CorruptDataError("a member is both voter and learner") }
        let data = Array(try reader.readLengthPrefixed(max: dataBytesMax))
        return RaftSnapshot(index: index, term: term, membership: RaftMembership(voters: sets[0], learners: sets[1]), data: data)
    }

}
