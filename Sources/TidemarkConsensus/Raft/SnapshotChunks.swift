import Foundation
import TidemarkIO

/// Splits snapshot messages into chunks on the way out and puts them together on the way in,
/// so a large state-machine image travels in frames of bounded size. A chunk is a snapshot
/// message whose data is one piece; `context` says which: `part << 32 | parts`.
///
/// A snapshot received `spooled` (its state machine installs images from files) has its
/// pieces written to a file in the spool directory as they come (an image may be larger
/// than memory), and the whole message carries `SpooledImage.token` of that file instead of
/// the image; the receiver syncs it before Raft sees the snapshot. Any other is put
/// together in memory.
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
        var bytes: Int
        /// The pieces so far, without a spool.
        var data: [UInt8]
        /// The file they go to, with one.
        var file: String?
        /// Ticks since the last piece came.
        var idleTicks = 0
    }

    /// A snapshot put together in memory larger than this is refused (its assembly dropped)
    /// rather than held; one spooled, larger than `spoolBytesMax`.
    public let bytesMax: Int
    public let spoolDirectory: String?
    public let spoolBytesMax: Int
    private var assembling: [Key: Assembly] = [:]

    public init(bytesMax: Int = RaftCodec.dataBytesMax, spoolDirectory: String? = nil, spoolBytesMax: Int = 1 << 40) {
        precondition(bytesMax > 0 && spoolBytesMax > 0)
        self.bytesMax = bytesMax
        self.spoolDirectory = spoolDirectory
        self.spoolBytesMax = spoolBytesMax
    }

    /// `message` as it should go out: itself, or its chunks of at most `chunkBytes` each.
    public static func split(_ message: GroupMessage, chunkBytes: Int) -> [GroupMessage] {
        precondition(chunkBytes > 0)
        guard let snapshot = message.message.snapshot, snapshot.data.count > chunkBytes else { return [message] }
        let parts = (snapshot.data.count + chunkBytes - 1) / chunkBytes
        return (0..<parts).map { part in
            chunk(of: message, Array(snapshot.data[(part * chunkBytes)..<min(snapshot.data.count, (part + 1) * chunkBytes)]), part: part, parts: parts)
        }
    }

    /// Piece `part` of `parts` of the snapshot `message` carries (one piece goes as a whole message).
    public static func chunk(of message: GroupMessage, _ piece: [UInt8], part: Int, parts: Int) -> GroupMessage {
        precondition(part < parts && parts <= Int(UInt32.max))
        var chunk = message
        chunk.message.snapshot!.data = piece
        chunk.message.context = parts == 1 ? 0 : UInt64(part) << 32 | UInt64(parts)
        return chunk
    }

    /// The whole message once every chunk of it arrived in order; nil while pieces are missing.
    /// A lost piece drops the assembly: the leader sends the snapshot again.
    public mutating func receive(_ message: GroupMessage, spooled: Bool = false) -> GroupMessage? {
        guard message.message.kind == .snapshot, let snapshot = message.message.snapshot else { return message }
        guard message.message.context != 0 else {
            // A spool token names a file of this node: one from elsewhere is no image.
            return SpooledImage.name(in: snapshot.data) == nil ? message : nil
        }
        let part = Int(message.message.context >> 32), parts = Int(message.message.context & 0xFFFF_FFFF)
        let key = Key(group: message.group, from: message.message.from)
        guard parts > 1, part < parts else { return nil }
        if part == 0 {
            drop(key)
            var assembly = Assembly(index: snapshot.index, term: snapshot.term, parts: parts, next: 0, bytes: 0, data: [])
            if spooled, let spoolDirectory {
                assembly.file = spoolDirectory + "/" + SpooledImage.partName(group: message.group, from: message.message.from,
                                                                              index: snapshot.index, term: snapshot.term)
            }
            assembling[key] = assembly
        }
        guard var assembly = assembling[key], assembly.index == snapshot.index, assembly.term == snapshot.term,
              assembly.parts == parts, assembly.next == part,
              assembly.bytes + snapshot.data.count <= (assembly.file == nil ? bytesMax : spoolBytesMax) else {
            drop(key)
            return nil
        }
        if let file = assembly.file {
            guard Self.append(snapshot.data, to: file, creating: part == 0) else {
                drop(key)
                return nil
            }
        } else {
            assembly.data += snapshot.data
        }
        assembly.bytes += snapshot.data.count
        assembly.next += 1
        assembly.idleTicks = 0
        assembling[key] = assembly
        guard part == parts - 1 else { return nil }
        assembling[key] = nil
        var complete = message
        complete.message.snapshot!.data = assembly.file.map { SpooledImage.token(($0 as NSString).lastPathComponent) } ?? assembly.data
        complete.message.context = 0
        return complete
    }

    /// One unit of the Raft clock: an assembly no piece came to for `idleTicksMax` ticks is
    /// dropped with its spool file (its sender stopped, or the stream was cut and will be
    /// sent again from the start).
    public mutating func tick(idleTicksMax: Int) {
        precondition(idleTicksMax > 0)
        for key in Array(assembling.keys) {
            assembling[key]!.idleTicks += 1
            if assembling[key]!.idleTicks >= idleTicksMax { drop(key) }
        }
    }

    /// Snapshots being put together now.
    public var assemblingCount: Int { assembling.count }

    private mutating func drop(_ key: Key) {
        if let file = assembling.removeValue(forKey: key)?.file { try? FileIO.remove(file) }
    }

    private static func append(_ piece: [UInt8], to path: String, creating: Bool) -> Bool {
        guard let descriptor = try? FileIO.open(path, creating ? O_WRONLY | O_CREAT | O_TRUNC : O_WRONLY | O_APPEND) else { return false }
        defer { FileIO.close(descriptor) }
        return (try? FileIO.writeAll(descriptor, piece, path: path)) != nil
    }
}

/// The stand-in for an image that came in pieces and waits in the node's spool directory:
/// `"TMSPOOL1" | file name`. It is what the Raft log keeps as the snapshot's data until the
/// state machine installed the image.
public enum SpooledImage {
    static let magic = Array("TMSPOOL1".utf8)

    public static func token(_ name: String) -> [UInt8] { magic + Array(name.utf8) }

    /// The spooled file `data` names; nil when `data` is not a token.
    public static func name(in data: [UInt8]) -> String? {
        guard data.count > magic.count, data.count < magic.count + 256, data.starts(with: magic),
              let name = String(validating: data[magic.count...], as: UTF8.self),
              !name.contains("/"), !name.hasPrefix(".") else { return nil }
        return name
    }

    /// The file a snapshot's pieces go to while they come.
    static func partName(group: GroupID, from: UInt64, index: UInt64, term: UInt64) -> String {
        "\(group.kind.rawValue)-\(group.number)-\(from)-\(index)-\(term).part"
    }

    /// The snapshot index of a spool file of `group` (a complete image or pieces); nil for
    /// another group's or a name the spool does not make.
    static func index(in name: String, of group: GroupID) -> UInt64? {
        let prefix = "\(group.kind.rawValue)-\(group.number)-"
        guard name.hasPrefix(prefix), name.hasSuffix(".image") || name.hasSuffix(".part") else { return nil }
        let fields = name.dropFirst(prefix.count).split(separator: ".")[0].split(separator: "-")
        return fields.count == 3 ? UInt64(fields[1]) : nil
    }

    /// The name of a complete, synced image.
    static func imageName(ofPart name: String) -> String { String(name.dropLast(".part".count)) + ".image" }
}
