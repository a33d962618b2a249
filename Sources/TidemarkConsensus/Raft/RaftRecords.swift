import TidemarkStorage

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

    static let entriesPerRecordMax = 1 << 20
    static let dataBytesMax = 64 << 20

    func encoded() -> [UInt8] {
        var writer = ByteWriter()
        func group(_ id: GroupID) {
            writer.write(id.kind.rawValue)
            writer.write(varint: UInt64(id.number))
        }
        switch self {
        case .entries(let id, let entries):
            writer.write(1)
            group(id)
            writer.write(varint: UInt64(entries.count))
            for entry in entries {
                writer.write(varint: entry.index)
                writer.write(varint: entry.term)
                writer.write(entry.kind.rawValue)
                writer.write(lengthPrefixed: entry.data)
            }
        case .hardState(let id, let state):
            writer.write(2)
            group(id)
            writer.write(varint: state.term)
            writer.write(varint: state.vote)
            writer.write(varint: state.commit)
        case .snapshot(let id, let snapshot, let installed):
            writer.write(3)
            group(id)
            writer.write(installed ? 1 : 0)
            writer.write(varint: snapshot.index)
            writer.write(varint: snapshot.term)
            for members in [snapshot.membership.voters, snapshot.membership.learners] {
                writer.write(varint: UInt64(members.count))
                for member in members.sorted() { writer.write(varint: member) }
            }
            writer.write(lengthPrefixed: snapshot.data)
        case .compacted(let id, let index):
            writer.write(4)
            group(id)
            writer.write(varint: index)
        case .removed(let id):
            writer.write(5)
            group(id)
        }
        return writer.bytes
    }

    static func decode(_ bytes: [UInt8]) throws(CorruptDataError) -> RaftRecord {
        var reader = ByteReader(bytes)
        let kind = try reader.readByte()
        guard let groupKind = GroupKind(rawValue: try reader.readByte()) else { throw CorruptDataError("raft record: unknown group kind") }
        let number = try reader.readVarint()
        guard number <= UInt64(UInt32.max) else { throw CorruptDataError("raft record: group number \(number) out of range") }
        let id = GroupID(kind: groupKind, number: UInt32(number))
        let record: RaftRecord
        switch kind {
        case 1:
            var entries: [RaftEntry] = []
            for _ in 0..<(try reader.readCount(max: min(entriesPerRecordMax, reader.remaining), what: "entries")) {
                let index = try reader.readVarint(), term = try reader.readVarint()
                guard let entryKind = RaftEntry.Kind(rawValue: try reader.readByte()) else { throw CorruptDataError("raft record: unknown entry kind") }
                let data = Array(try reader.readLengthPrefixed(max: dataBytesMax))
                guard index > 0, entries.last.map({ $0.index + 1 == index }) ?? true else {
                    throw CorruptDataError("raft record: entries out of order at \(index)")
                }
                entries.append(RaftEntry(index: index, term: term, kind: entryKind, data: data))
            }
            record = .entries(id, entries)
        case 2:
            record = .hardState(id, HardState(term: try reader.readVarint(), vote: try reader.readVarint(), commit: try reader.readVarint()))
        case 3:
            let installed = try reader.readByte() == 1
            let index = try reader.readVarint(), term = try reader.readVarint()
            var sets: [Set<UInt64>] = []
            for _ in 0..<2 {
                var members = Set<UInt64>()
                for _ in 0..<(try reader.readCount(max: min(1 << 16, reader.remaining), what: "members")) { members.insert(try reader.readVarint()) }
                sets.append(members)
            }
            guard sets[0].isDisjoint(with: sets[1]) else { throw CorruptDataError("raft record: a member is both voter and learner") }
            let data = Array(try reader.readLengthPrefixed(max: dataBytesMax))
            record = .snapshot(id, RaftSnapshot(index: index, term: term, membership: RaftMembership(voters: sets[0], learners: sets[1]), data: data),
                               installed: installed)
        case 4:
            record = .compacted(id, try reader.readVarint())
        case 5:
            record = .removed(id)
        default:
            throw CorruptDataError("raft record: unknown kind \(kind)")
        }
        guard reader.isAtEnd else { throw CorruptDataError("raft record: bytes after the record") }
        return record
    }
}
