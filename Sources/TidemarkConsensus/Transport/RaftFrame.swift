import TidemarkCore
import TidemarkIO

/// A Raft message of one group, as the transport carries it between two nodes.
public struct GroupMessage: Sendable, Equatable {
    public var group: GroupID
    public var message: RaftMessage

    public init(group: GroupID, message: RaftMessage) {
        self.group = group
        self.message = message
    }
}

/// A multi-leader message of one group, as the transport carries it between two nodes.
public struct ReplicationMessage: Sendable, Equatable {
    public var group: GroupID
    public var message: MultiLeaderMessage

    public init(group: GroupID, message: MultiLeaderMessage) {
        self.group = group
        self.message = message
    }
}

/// What a node says of itself when it opens (and pings) a connection: the cluster it belongs
/// to, so nodes of two clusters sharing a secret never mix, and the address its clients reach
/// it at, which peers hand out as a leader hint. Each is at most `ClusterIdentity`'s bound.
public struct PeerHello: Sendable, Equatable {
    public var clusterName: String
    /// `HOST:PORT` of the node's HTTP edge; empty when it is not known.
    public var clientAddress: String

    public init(clusterName: String, clientAddress: String) {
        self.clusterName = clusterName
        self.clientAddress = clientAddress
    }

    /// Whether both fields fit their bounds (a hello that does not is never sent).
    public var isBounded: Bool {
        clusterName.utf8.count <= ClusterIdentity.nameBytesMax && clientAddress.utf8.count <= ClusterIdentity.clientAddressBytesMax
    }
}

/// A request between two nodes' control planes (register, fetch partitions, a route map)
/// or its answer, matched by `id` on the caller's side. `method` is the cluster layer's.
public struct PeerCall: Sendable, Equatable {
    public enum Kind: UInt8, Sendable {
        case request = 1
        /// The answer: `body` is the method's result.
        case response = 2
        /// The callee could not answer: `body` is why, as UTF-8.
        case failure = 3
    }

    public var id: UInt64
    public var kind: Kind
    public var method: UInt16
    public var body: [UInt8]

    public init(id: UInt64, kind: Kind, method: UInt16, body: [UInt8]) {
        self.id = id
        self.kind = kind
        self.method = method
        self.body = body
    }
}

/// Everything one node sends another at once: the messages of all their shared groups in
/// one frame, heartbeats (and their answers) of many groups coalesced into a few bytes each,
/// the multi-leader groups' batches and acknowledgements, and control-plane calls.
public struct RaftFrame: Sendable, Equatable {
    /// A heartbeat or its answer, without what the frame already says (sender, receiver).
    struct Heartbeat: Sendable, Equatable {
        var group: GroupID
        var isResponse: Bool
        var term: UInt64
        var commit: UInt64
        var context: UInt64
    }

    public var from: UInt64
    public var to: UInt64
    private(set) var messages: [GroupMessage] = []
    private(set) var heartbeats: [Heartbeat] = []
    public private(set) var replication: [ReplicationMessage] = []
    public private(set) var calls: [PeerCall] = []
    /// Set in a hello only (a frame sealed with sequence 0), which carries nothing else.
    public private(set) var hello: PeerHello?

    /// A hello from `from` to `to`: who is calling, from which cluster.
    public init(from: UInt64, to: UInt64, hello: PeerHello) {
        precondition(hello.isBounded, "a hello's fields fit their bounds")
        self.from = from
        self.to = to
        self.hello = hello
    }

    /// Packs `messages`, `replication` and `calls` (all from `from` to `to`), coalescing heartbeats.
    public init(from: UInt64, to: UInt64, messages all: [GroupMessage], replication: [ReplicationMessage] = [], calls: [PeerCall] = []) {
        self.from = from
        self.to = to
        self.calls = calls
        for item in replication { precondition(item.message.from == from && item.message.to == to, "one frame, one pair of nodes") }
        self.replication = replication
        for item in all {
            precondition(item.message.from == from && item.message.to == to, "one frame, one pair of nodes")
            let message = item.message
            let plain = message.logTerm == 0 && message.index == 0 && message.entries.isEmpty && !message.reject
                && message.rejectHint == 0 && message.snapshot == nil
            if plain && (message.kind == .heartbeat || message.kind == .heartbeatResponse) {
                heartbeats.append(Heartbeat(group: item.group, isResponse: message.kind == .heartbeatResponse, term: message.term,
                                            commit: message.commit, context: message.context))
            } else {
                messages.append(item)
            }
        }
    }

    init(from: UInt64, to: UInt64, messages: [GroupMessage], heartbeats: [Heartbeat], replication: [ReplicationMessage],
         calls: [PeerCall] = [], hello: PeerHello? = nil) {
        self.from = from
        self.to = to
        self.calls = calls
        self.messages = messages
        self.heartbeats = heartbeats
        self.replication = replication
        self.hello = hello
    }

    /// No messages in it: a hello (or a ping, which is a hello again).
    public var isEmpty: Bool { messages.isEmpty && heartbeats.isEmpty && replication.isEmpty && calls.isEmpty }

    /// The frame's messages, heartbeats expanded again.
    public var allMessages: [GroupMessage] {
        messages + heartbeats.map { beat in
            var message = RaftMessage(kind: beat.isResponse ? .heartbeatResponse : .heartbeat, from: from, to: to, term: beat.term)
            message.commit = beat.commit
            message.context = beat.context
            return GroupMessage(group: beat.group, message: message)
        }
    }
}

/// Why bytes from a peer were dropped; the transport counts each kind and closes the
/// connection (a frame boundary can no longer be trusted).
public enum FrameError: Error, Sendable, Equatable {
    case badMagic
    case unsupportedVersion(UInt8)
    case tooLarge(bytes: Int, max: Int)
    case badChecksum
    case unauthenticated
    /// Signed, but not for this connection or not after the last one (a recorded frame played again).
    case replayed
    case malformed(String)
    /// Signed with the cluster secret, but the hello names another cluster, or not the node
    /// this one dialed, or not this node (the two nodes' configs disagree).
    case identity(String)

    /// Every label, so metrics can list each reason from zero (kept beside `label`).
    public static let labels = ["bad_magic", "unsupported_version", "too_large", "bad_checksum", "unauthenticated", "replayed", "malformed",
                                "identity"]

    /// The metric label of the error.
    public var label: String {
        switch self {
        case .badMagic: "bad_magic"
        case .unsupportedVersion: "unsupported_version"
        case .tooLarge: "too_large"
        case .badChecksum: "bad_checksum"
        case .unauthenticated: "unauthenticated"
        case .replayed: "replayed"
        case .malformed: "malformed"
        case .identity: "identity"
        }
    }
}

/// Where a frame belongs on its connection, so a recorded frame cannot be played again.
/// Each side of a connection picks a random nonce and sends it in its hello (sequence 0,
/// `session` = its own nonce); every later frame carries the receiver's nonce as `session`
/// and a sequence that grows by one per frame on the connection.
public struct FrameSeal: Sendable, Equatable {
    public var session: UInt64
    public var sequence: UInt64

    public init(session: UInt64, sequence: UInt64) {
        self.session = session
        self.sequence = sequence
    }

    /// A hello: names the sender and its nonce; carries nothing else.
    public var isHello: Bool { sequence == 0 }
}

/// The wire format of internal RPC frames:
/// `"TMRF" | u8 version | u8 flags | u64 from | u64 to | u32 payload length | payload |
/// u64 session | u64 sequence | u32 CRC32C(all before) | 32-byte tag` where the tag
/// authenticates all before it with the cluster secret (see `FrameAuthenticator`) and the
/// session and sequence are the frame's `FrameSeal`. Integers are little-endian. The payload
/// lists Raft messages, then coalesced heartbeats, then (only when there are any, or calls)
/// multi-leader messages, then (only when there are any) calls: each an id, a kind, a method
/// and a length-prefixed body. A hello (flag `helloFlag`, sequence 0) has its own payload instead:
/// the sender's cluster name and client address, each a varint length and UTF-8 bytes.
/// Version 3 added the hello's payload (version 2's hello was an empty frame); version 4 the calls.
public enum FrameCodec {
    public static let version: UInt8 = 4
    /// Flags bit: the payload is a `PeerHello`. Set exactly on frames sealed as a hello.
    static let helloFlag: UInt8 = 1
    /// Bytes of a hello frame at most: what a connection may send before it has said who it is.
    public static let helloBytesMax = headerBytes + trailerBytes + 2 * ByteWriter.varintBytesMax
        + ClusterIdentity.nameBytesMax + ClusterIdentity.clientAddressBytesMax
    static let magic: [UInt8] = Array("TMRF".utf8)
    public static let headerBytes = 26
    public static let tagBytes = 32
    static let sealBytes = 16
    public static let trailerBytes = sealBytes + 4 + tagBytes

    /// The frame's bytes with `seal`; `sign` computes the 32-byte tag of the bytes before it
    /// (tests and tools: the transport seals prepared frames).
    public static func encode(_ frame: RaftFrame, seal: FrameSeal = FrameSeal(session: 1, sequence: 1), sign: ([UInt8]) -> [UInt8]) -> [UInt8] {
        var writer = ByteWriter()
        writer.write(bytes: unsealed(frame))
        writer.write(littleEndian: seal.session)
        writer.write(littleEndian: seal.sequence)
        writer.write(littleEndian: CRC32C.checksum(writer.bytes))
        let tag = sign(writer.bytes)
        precondition(tag.count == tagBytes, "a frame tag is \(tagBytes) bytes")
        writer.write(bytes: tag)
        return writer.bytes
    }

    /// Header and payload.
    static func unsealed(_ frame: RaftFrame) -> [UInt8] {
        // The payload goes straight after the header (its length patched in at the end):
        // entries are copied once, not into a payload and then into the frame.
        var writer = ByteWriter(capacity: bytesEstimate(frame))
        writer.write(bytes: magic)
        writer.write(version)
        writer.write(frame.hello == nil ? 0 : helloFlag)
        writer.write(littleEndian: frame.from)
        writer.write(littleEndian: frame.to)
        writer.write(littleEndian: UInt32(0))
        assert(writer.count == headerBytes)
        if let hello = frame.hello {
            writer.write(lengthPrefixed: hello.clusterName)
            writer.write(lengthPrefixed: hello.clientAddress)
            writer.patch(littleEndian: UInt32(writer.count - headerBytes), at: headerBytes - 4)
            assert(writer.count + trailerBytes <= helloBytesMax, "a hello fits its bound")
            return writer.bytes
        }
        writer.write(varint: UInt64(frame.messages.count))
        for item in frame.messages {
            item.group.write(to: &writer)
            writeMessage(item.message, into: &writer)
        }
        writer.write(varint: UInt64(frame.heartbeats.count))
        for beat in frame.heartbeats {
            beat.group.write(to: &writer)
            writer.write(beat.isResponse ? 1 : 0)
            writer.write(varint: beat.term)
            writer.write(varint: beat.commit)
            writer.write(varint: beat.context)
        }
        if !frame.replication.isEmpty || !frame.calls.isEmpty {
            writer.write(varint: UInt64(frame.replication.count))
            for item in frame.replication {
                item.group.write(to: &writer)
                writer.write(item.message.kind.rawValue)
                writer.write(varint: item.message.source)
                writer.write(varint: item.message.sequence)
                writer.write(varint: UInt64(item.message.entries.count))
                for entry in item.message.entries { writer.write(lengthPrefixed: entry) }
            }
        }
        if !frame.calls.isEmpty {
            writer.write(varint: UInt64(frame.calls.count))
            for call in frame.calls {
                writer.write(varint: call.id)
                writer.write(call.kind.rawValue)
                writer.write(varint: UInt64(call.method))
                writer.write(lengthPrefixed: call.body)
            }
        }
        precondition(writer.count - headerBytes <= Int(UInt32.max), "a frame's payload length fits 32 bits")
        writer.patch(littleEndian: UInt32(writer.count - headerBytes), at: headerBytes - 4)
        assert(writer.count <= bytesEstimate(frame), "the estimate is a bound")
        return writer.bytes
    }

    /// The first frame in `bytes` and how many bytes it took, or nil when more bytes are
    /// needed. Throws when the bytes cannot be a valid frame: the stream is then unusable.
    public static func decode(_ bytes: ArraySlice<UInt8>, frameBytesMax: Int,
                              verify: (_ signed: ArraySlice<UInt8>, _ tag: ArraySlice<UInt8>) -> Bool) throws(FrameError) -> (RaftFrame, Int)? {
        try decodeSealed(bytes, frameBytesMax: frameBytesMax, verify: verify).map { ($0.frame, $0.used) }
    }

    /// `decode`, with the frame's seal (what a connection checks against replays).
    public static func decodeSealed(_ bytes: ArraySlice<UInt8>, frameBytesMax: Int,
                                    verify: (_ signed: ArraySlice<UInt8>, _ tag: ArraySlice<UInt8>) -> Bool) throws(FrameError)
        -> (frame: RaftFrame, seal: FrameSeal, used: Int)? {
        let start = bytes.startIndex
        // Reject a wrong magic as soon as its bytes arrive, not after a length's worth.
        for (offset, byte) in bytes.prefix(magic.count).enumerated() where byte != magic[offset] { throw .badMagic }
        guard bytes.count >= headerBytes else { return nil }
        guard bytes[start + 4] == version else { throw .unsupportedVersion(bytes[start + 4]) }
        let flags = bytes[start + 5]
        let payloadBytes = Int(bytes.withContiguousStorageIfAvailable {
            UInt32(littleEndian: UnsafeRawBufferPointer($0).loadUnaligned(fromByteOffset: 22, as: UInt32.self))
        } ?? 0)
        let total = headerBytes + payloadBytes + trailerBytes
        guard total <= frameBytesMax else { throw .tooLarge(bytes: total, max: frameBytesMax) }
        guard bytes.count >= total else { return nil }
        let sealAt = start + headerBytes + payloadBytes
        let checked = bytes[start..<(sealAt + sealBytes)]
        let crcAt = sealAt + sealBytes
        let storedCRC = UInt32(bytes[crcAt]) | UInt32(bytes[crcAt + 1]) << 8 | UInt32(bytes[crcAt + 2]) << 16 | UInt32(bytes[crcAt + 3]) << 24
        guard Array(checked).withUnsafeBytes({ CRC32C.checksum($0) }) == storedCRC else { throw .badChecksum }
        guard verify(bytes[start..<(crcAt + 4)], bytes[(crcAt + 4)..<(start + total)]) else { throw .unauthenticated }
        var header = ByteReader(Array(bytes[start..<(start + headerBytes)]), offset: 6)
        var trailer = ByteReader(Array(bytes[sealAt..<crcAt]))
        let from: UInt64, to: UInt64, seal: FrameSeal
        do {
            from = try header.read(littleEndian: UInt64.self)
            to = try header.read(littleEndian: UInt64.self)
            seal = FrameSeal(session: try trailer.read(littleEndian: UInt64.self), sequence: try trailer.read(littleEndian: UInt64.self))
        } catch { throw .malformed("\(error)") }
        var reader = ByteReader(Array(bytes[(start + headerBytes)..<sealAt]))
        guard flags & ~helloFlag == 0 else { throw .malformed("unknown flags \(flags)") }
        // A hello names its sender only, and only a hello does: it is what a connection's
        // place 0 means, so the two must agree.
        guard (flags == helloFlag) == seal.isHello else { throw .malformed("a hello must be sealed as one (sequence 0), and only a hello") }
        if flags == helloFlag {
            return (RaftFrame(from: from, to: to, messages: [], heartbeats: [], replication: [], hello: try readHello(&reader)), seal, total)
        }
        do {
            var messages: [GroupMessage] = []
            for _ in 0..<(try reader.readCount(max: reader.remaining, what: "messages")) {
                let group = try GroupID(from: &reader)
                messages.append(GroupMessage(group: group, message: try readMessage(&reader, from: from, to: to)))
            }
            var heartbeats: [RaftFrame.Heartbeat] = []
            for _ in 0..<(try reader.readCount(max: reader.remaining, what: "heartbeats")) {
                let group = try GroupID(from: &reader)
                let isResponse = try reader.readByte() == 1
                heartbeats.append(RaftFrame.Heartbeat(group: group, isResponse: isResponse, term: try reader.readVarint(),
                                                      commit: try reader.readVarint(), context: try reader.readVarint()))
            }
            var replication: [ReplicationMessage] = []
            if !reader.isAtEnd {
                for _ in 0..<(try reader.readCount(max: reader.remaining, what: "replication messages")) {
                    let group = try GroupID(from: &reader)
                    guard let kind = MultiLeaderMessage.Kind(rawValue: try reader.readByte()) else {
                        throw FrameError.malformed("unknown multi-leader message kind")
                    }
                    var message = MultiLeaderMessage(kind: kind, from: from, to: to, source: try reader.readVarint(), sequence: try reader.readVarint())
                    for _ in 0..<(try reader.readCount(max: reader.remaining, what: "multi-leader entries")) {
                        message.entries.append(Array(try reader.readLengthPrefixed(max: RaftCodec.dataBytesMax)))
                    }
                    replication.append(ReplicationMessage(group: group, message: message))
                }
            }
            var calls: [PeerCall] = []
            if !reader.isAtEnd {
                for _ in 0..<(try reader.readCount(max: reader.remaining, what: "calls")) {
                    let id = try reader.readVarint()
                    guard let kind = PeerCall.Kind(rawValue: try reader.readByte()) else { throw FrameError.malformed("unknown call kind") }
                    let method = try reader.readVarint()
                    guard method <= UInt64(UInt16.max) else { throw FrameError.malformed("call method \(method) out of range") }
                    calls.append(PeerCall(id: id, kind: kind, method: UInt16(method), body: Array(try reader.readLengthPrefixed(max: reader.remaining))))
                }
                guard reader.isAtEnd else { throw CorruptDataError("bytes after the calls") }
            }
            return (RaftFrame(from: from, to: to, messages: messages, heartbeats: heartbeats, replication: replication, calls: calls), seal, total)
        } catch let error as FrameError {
            throw error
        } catch {
            throw .malformed("\(error)")
        }
    }

    // MARK: - Parts

    private static func readHello(_ reader: inout ByteReader) throws(FrameError) -> PeerHello {
        do {
            guard let name = try reader.readText(max: ClusterIdentity.nameBytesMax),
                  let address = try reader.readText(max: ClusterIdentity.clientAddressBytesMax) else {
                throw FrameError.malformed("a hello's cluster name or address is not UTF-8")
            }
            guard reader.isAtEnd else { throw FrameError.malformed("bytes after a hello") }
            return PeerHello(clusterName: name, clientAddress: address)
        } catch let error as FrameError {
            throw error
        } catch {
            throw .malformed("\(error)")
        }
    }

    /// At least the bytes `unsealed` takes for `frame`: a large frame's buffer is reserved once.
    private static func bytesEstimate(_ frame: RaftFrame) -> Int {
        let varint = ByteWriter.varintBytesMax, group = RaftCodec.groupBytesMax
        var total = headerBytes + 3 * varint  // three counts
        if let hello = frame.hello { total += 2 * varint + hello.clusterName.utf8.count + hello.clientAddress.utf8.count }
        for item in frame.messages {
            // kind, six varints, reject, entries, snapshot flag, snapshot
            total += group + 1 + 6 * varint + 1 + RaftCodec.bytesEstimate(item.message.entries) + 1
            if let snapshot = item.message.snapshot { total += RaftCodec.bytesEstimate(snapshot) }
        }
        total += frame.heartbeats.count * (group + 1 + 3 * varint)  // response flag, term, commit, context
        for item in frame.replication {
            total += group + 1 + 2 * varint + RaftCodec.bytesEstimate(lengthPrefixed: item.message.entries)  // kind, source, sequence
        }
        total += varint + frame.calls.reduce(0) { $0 + 3 * varint + 1 + $1.body.count }  // count; id, kind, method, body length
        return total
    }

    private static func writeMessage(_ message: RaftMessage, into writer: inout ByteWriter) {
        writer.write(message.kind.rawValue)
        for value in [message.term, message.logTerm, message.index, message.commit, message.rejectHint, message.context] {
            writer.write(varint: value)
        }
        writer.write(message.reject ? 1 : 0)
        RaftCodec.write(message.entries, into: &writer)
        if let snapshot = message.snapshot {
            writer.write(1)
            RaftCodec.write(snapshot, into: &writer)
        } else {
            writer.write(0)
        }
    }

    private static func readMessage(_ reader: inout ByteReader, from: UInt64, to: UInt64) throws -> RaftMessage {
        guard let kind = RaftMessage.Kind(rawValue: try reader.readByte()) else { throw FrameError.malformed("unknown message kind") }
        var message = RaftMessage(kind: kind, from: from, to: to, term: try reader.readVarint())
        message.logTerm = try reader.readVarint()
        message.index = try reader.readVarint()
        message.commit = try reader.readVarint()
        message.rejectHint = try reader.readVarint()
        message.context = try reader.readVarint()
        message.reject = try reader.readByte() == 1
        message.entries = try RaftCodec.readEntries(&reader)
        // Appended entries follow the one the message names (the log merges them by index).
        if let first = message.entries.first, first.index != message.index &+ 1 {
            throw FrameError.malformed("entries start at \(first.index) after index \(message.index)")
        }
        if try reader.readByte() == 1 { message.snapshot = try RaftCodec.readSnapshot(&reader) }
        return message
    }
}
