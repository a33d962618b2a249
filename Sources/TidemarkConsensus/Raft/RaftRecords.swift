import TidemarkIO

/// What a node's Raft log file holds, one record at a time (each CRC-checked by the WAL).
enum RaftRecord: Equatable {
    /// Entries of a group; they replace any it had from the first one's index on.
    case entries(GroupID, [RaftEntry])
    case hardState(GroupID, HardState)
    /// `installed`: received from the leader, it replaces the whole log; otherwise it is the
    /// group's own (compaction, checkpoint) and the entries after it stay.
    case snapshot(GroupID, RaftSnapshot, installed: Bool)
    /// The group's entries through this index are in a snapshot and may go.
    case compacted(GroupID, UInt64)
    case removed(GroupID)

    func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: bytesEstimate)
        switch self {
        case .entries(let id, let entries):
            writer.write(1)
            id.write(to: &writer)
            RaftCodec.write(entries, into: &writer)
        case .hardState(let id, let state):
            writer.write(2)
            id.write(to: &writer)
            writer.write(varint: state.term)
            writer.write(varint: state.vote)
            writer.write(varint: state.commit)
        case .snapshot(let id, let snapshot, let installed):
            writer.write(3)
            id.write(to: &writer)
            writer.write(installed ? 1 : 0)
            RaftCodec.write(snapshot, into: &writer)
        case .compacted(let id, let index):
            writer.write(4)
            id.write(to: &writer)
            writer.write(varint: index)
        case .removed(let id):
            writer.write(5)
            id.write(to: &writer)
        }
        assert(writer.count <= bytesEstimate, "the estimate is a bound")
        return writer.bytes
    }

    /// At least the bytes `encoded()` takes: tag, group, then the body.
    private var bytesEstimate: Int {
        let head = 1 + RaftCodec.groupBytesMax, varint = ByteWriter.varintBytesMax
        return switch self {
        case .entries(_, let entries): head + RaftCodec.bytesEstimate(entries)
        case .snapshot(_, let snapshot, _): head + 1 + RaftCodec.bytesEstimate(snapshot)  // installed flag
        case .hardState: head + 3 * varint  // term, vote, commit
        case .compacted: head + varint
        case .removed: head
        }
    }

    static func decode(_ bytes: [UInt8]) throws(CorruptDataError) -> RaftRecord {
        var reader = ByteReader(bytes)
        let kind = try reader.readByte()
        let id = try GroupID(from: &reader)
        let record: RaftRecord
        switch kind {
        case 1: record = .entries(id, try RaftCodec.readEntries(&reader))
        case 2: record = .hardState(id, HardState(term: try reader.readVarint(), vote: try reader.readVarint(), commit: try reader.readVarint()))
        case 3:
            let installed = try reader.readByte() == 1
            record = .snapshot(id, try RaftCodec.readSnapshot(&reader), installed: installed)
        case 4: record = .compacted(id, try reader.readVarint())
        case 5: record = .removed(id)
        default: throw CorruptDataError("raft record: unknown kind \(kind)")
        }
        guard reader.isAtEnd else { throw CorruptDataError("raft record: bytes after the record") }
        return record
    }
}
