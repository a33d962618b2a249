/// Splits snapshot messages into chunks on the way out and puts them together on the way in,
/// so a large state-machine image travels in frames of bounded size. A chunk is a snapshot
/// message whose data is one piece; `context` says which: `part << 32 | parts`.
public struct SnapshotChunks: Sendable {
    /// One snapshot at a time from each sender of each group: a new one replaces the old.
    private struct Key: Hashable {
        var group: GroupID
        var from: UInt64
    }

    private struct Assembly {
        var index: UInt64
        var term: UInt64
        var parts: Int
        var next: Int
        var data: [UInt8]
    }

    /// A snapshot larger than this is refused (its assembly dropped) rather than held.
    public let bytesMax: Int
    private var assembling: [Key: Assembly] = [:]

    public init(bytesMax: Int = RaftCodec.dataBytesMax) {
        precondition(bytesMax > 0)
        self.bytesMax = bytesMax
    }

    /// `message` as it should go out: itself, or its chunks of at most `chunkBytes` each.
    public static func split(_ message: GroupMessage, chunkBytes: Int) -> [GroupMessage] {
        precondition(chunkBytes > 0)
        guard let snapshot = message.message.snapshot, snapshot.data.count > chunkBytes else { return [message] }
        let parts = (snapshot.data.count + chunkBytes - 1) / chunkBytes
        return (0..<parts).map { part in
            var chunk = message
            chunk.message.snapshot!.data = Array(snapshot.data[(part * chunkBytes)..<min(snapshot.data.count, (part + 1) * chunkBytes)])
            chunk.message.context = UInt64(part) << 32 | UInt64(parts)
            return chunk
        }
    }

    /// The whole message once every chunk of it arrived in order; nil while pieces are missing.
    /// A lost piece drops the assembly: the leader sends the snapshot again.
    public mutating func receive(_ message: GroupMessage) -> GroupMessage? {
        guard message.message.kind == .snapshot, let snapshot = message.message.snapshot, message.message.context != 0 else { return message }
        let part = Int(message.message.context >> 32), parts = Int(message.message.context & 0xFFFF_FFFF)
        let key = Key(group: message.group, from: message.message.from)
        guard parts > 1, part < parts else { return nil }
        if part == 0 {
            assembling[key] = Assembly(index: snapshot.index, term: snapshot.term, parts: parts, next: 1, data: snapshot.data)
        } else {
            guard var assembly = assembling[key], assembly.index == snapshot.index, assembly.term == snapshot.term,
                  assembly.parts == parts, assembly.next == part, assembly.data.count + snapshot.data.count <= bytesMax else {
                assembling[key] = nil
                return nil
            }
            assembly.data += snapshot.data
            assembly.next += 1
            assembling[key] = assembly
        }
        guard part == parts - 1, let whole = assembling.removeValue(forKey: key) else { return nil }
        var complete = message
        complete.message.snapshot!.data = whole.data
        complete.message.context = 0
        return complete
    }
}
