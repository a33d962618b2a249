import TidemarkIO
import Testing
@testable import TidemarkConsensus
import TidemarkCore
import TidemarkStorage

private let data = GroupID(kind: .data, number: 7)
private let meta = GroupID(kind: .meta, number: 0)
private let cluster = FrameAuthenticator(clusterSecret: "s3cret")

private func message(_ kind: RaftMessage.Kind, term: UInt64 = 3, commit: UInt64 = 0, context: UInt64 = 0) -> RaftMessage {
    var message = RaftMessage(kind: kind, from: 1, to: 2, term: term)
    message.commit = commit
    message.context = context
    return message
}

private func decode(_ bytes: [UInt8], with authenticator: FrameAuthenticator = cluster, max: Int = 1 << 20) throws(FrameError) -> (RaftFrame, Int)? {
    try FrameCodec.decode(bytes[...], frameBytesMax: max, verify: authenticator.verify)
}

@Suite struct RaftFrameTests {
    @Test func framesRoundTripWithHeartbeatsCoalesced() throws {
        var append = message(.append, commit: 4)
        append.index = 4
        append.logTerm = 2
        append.entries = [RaftEntry(index: 5, term: 3, data: [1, 2]), RaftEntry(index: 6, term: 3, kind: .confChange, data: RaftConfChange(.addLearner, node: 9).encoded)]
        var install = message(.snapshot)
        install.snapshot = RaftSnapshot(index: 10, term: 2, membership: RaftMembership(voters: [1, 2, 3], learners: [4]), data: [9, 9])
        var refusal = message(.appendResponse)
        refusal.reject = true
        refusal.index = 8
        refusal.rejectHint = 6
        let heartbeats = (0..<50).map { GroupMessage(group: GroupID(kind: .data, number: UInt32($0)), message: message(.heartbeat, commit: 12, context: 0)) }
        let all = [GroupMessage(group: data, message: append), GroupMessage(group: meta, message: install), GroupMessage(group: data, message: refusal)]
            + heartbeats + [GroupMessage(group: meta, message: message(.heartbeatResponse, context: 77))]
        let frame = RaftFrame(from: 1, to: 2, messages: all)
        let bytes = FrameCodec.encode(frame, sign: cluster.sign)
        // Coalesced, a heartbeat costs a handful of bytes.
        #expect(bytes.count < 600)
        let (decoded, used) = try #require(try decode(bytes + [0xAA]))
        #expect(used == bytes.count)
        #expect(decoded == frame)
        #expect(decoded.allMessages.count == all.count)
        #expect(Set(decoded.allMessages.map { "\($0.group)/\($0.message.kind)/\($0.message.context)" })
            == Set(all.map { "\($0.group)/\($0.message.kind)/\($0.message.context)" }))
        // A partial frame asks for more bytes.
        #expect(try decode(Array(bytes.prefix(bytes.count - 1))) == nil)
        #expect(try decode(Array(bytes.prefix(10))) == nil)
    }

    /// Multi-leader batches and acknowledgements ride after the Raft part; a frame without
    /// them has no trailing list at all.
    @Test func framesCarryMultiLeaderMessages() throws {
        let batch = MultiLeaderMessage(kind: .replicate, from: 1, to: 2, source: 1, sequence: 40, entries: [[1, 2, 3], [], [4]])
        let ack = MultiLeaderMessage(kind: .acknowledge, from: 1, to: 2, source: 2, sequence: 17)
        let replication = [ReplicationMessage(group: data, message: batch), ReplicationMessage(group: meta, message: ack)]
        let frame = RaftFrame(from: 1, to: 2, messages: [GroupMessage(group: data, message: message(.heartbeat))], replication: replication)
        let bytes = FrameCodec.encode(frame, sign: cluster.sign)
        let (decoded, _) = try #require(try decode(bytes))
        #expect(decoded == frame && decoded.replication == replication && !decoded.isEmpty)
        let raftOnly = RaftFrame(from: 1, to: 2, messages: [GroupMessage(group: data, message: message(.heartbeat))])
        #expect(FrameCodec.encode(raftOnly, sign: cluster.sign).count < bytes.count)
        #expect(RaftFrame(from: 1, to: 2, messages: []).isEmpty)
    }

    /// Control-plane calls ride last, with or without multi-leader messages before them; a
    /// damaged call is refused, never half-read.
    @Test func framesCarryCalls() throws {
        let calls = [PeerCall(id: 1, kind: .request, method: 3, body: [1, 2, 3]), PeerCall(id: UInt64.max, kind: .response, method: UInt16.max, body: []),
                     PeerCall(id: 9, kind: .failure, method: 0, body: Array("no such database".utf8))]
        let alone = RaftFrame(from: 1, to: 2, messages: [], calls: calls)
        let (decoded, _) = try #require(try decode(FrameCodec.encode(alone, sign: cluster.sign)))
        #expect(decoded == alone && decoded.calls == calls && !decoded.isEmpty)
        let ack = MultiLeaderMessage(kind: .acknowledge, from: 1, to: 2, source: 2, sequence: 17)
        let mixed = RaftFrame(from: 1, to: 2, messages: [GroupMessage(group: data, message: message(.heartbeat))],
                              replication: [ReplicationMessage(group: meta, message: ack)], calls: calls)
        #expect(try decode(FrameCodec.encode(mixed, sign: cluster.sign))?.0 == mixed)
        // An unknown call kind (the byte after the first call's id) is refused.
        var unsealed = FrameCodec.unsealed(alone)
        let kindAt = FrameCodec.headerBytes + 3 + 1  // message count, heartbeat count, replication count, call count; id 1
        #expect(unsealed[kindAt + 1] == PeerCall.Kind.request.rawValue)
        unsealed[kindAt + 1] = 7
        var writer = ByteWriter()
        writer.write(bytes: unsealed)
        writer.write(littleEndian: UInt64(1))
        writer.write(littleEndian: UInt64(1))
        writer.write(littleEndian: CRC32C.checksum(writer.bytes))
        writer.write(bytes: cluster.sign(writer.bytes))
        #expect(throws: FrameError.malformed("unknown call kind")) { try decode(writer.bytes) }
    }

    /// Every number at its widest (ten-byte varints): the encoders reserve their buffer from an
    /// estimate that they assert (in debug builds, as tests run) is a bound, and it must hold here.
    @Test func framesWithEveryNumberAtItsWidestRoundTrip() throws {
        let widest = UInt64.max, group = GroupID(kind: .data, number: UInt32.max)
        var append = RaftMessage(kind: .append, from: widest, to: widest - 1, term: widest)
        append.index = widest - 2
        append.logTerm = widest
        append.commit = widest
        append.rejectHint = widest
        append.context = widest
        append.entries = [RaftEntry(index: widest - 1, term: widest, data: [1]), RaftEntry(index: widest, term: widest)]
        var install = RaftMessage(kind: .snapshot, from: widest, to: widest - 1, term: widest)
        install.snapshot = RaftSnapshot(index: widest, term: widest, membership: RaftMembership(voters: [widest, widest - 1], learners: [widest - 2]), data: [])
        var beat = RaftMessage(kind: .heartbeat, from: widest, to: widest - 1, term: widest)
        beat.commit = widest
        beat.context = widest
        let batch = MultiLeaderMessage(kind: .replicate, from: widest, to: widest - 1, source: widest, sequence: widest, entries: [[], [7]])
        let frame = RaftFrame(
            from: widest, to: widest - 1,
            messages: [GroupMessage(group: group, message: append), GroupMessage(group: group, message: install), GroupMessage(group: group, message: beat)],
            replication: [ReplicationMessage(group: group, message: batch)])
        let (decoded, _) = try #require(try decode(FrameCodec.encode(frame, sign: cluster.sign)))
        #expect(decoded == frame)
        for record in [MultiLeaderRecord(source: widest, sequence: widest, data: [1]),
                       MultiLeaderRecord(shipped: [widest: widest], applied: [widest - 1: widest], removed: [widest, widest - 2])] {
            #expect(try MultiLeaderRecord(decoding: record.encoded) == record)
        }
    }

    /// Entries that do not follow the index an append names, or whose index would wrap, are
    /// refused before they reach the log.
    @Test func appendsWithEntriesOutOfPlaceAreRefused() throws {
        var gap = message(.append)
        gap.index = 4
        gap.entries = [RaftEntry(index: 9, term: 3, data: [1])]
        var wrap = message(.append)
        wrap.index = UInt64.max - 1
        wrap.entries = [RaftEntry(index: UInt64.max, term: 3, data: [1]), RaftEntry(index: 1, term: 3, data: [2])]
        for bad in [gap, wrap] {
            let bytes = FrameCodec.encode(RaftFrame(from: 1, to: 2, messages: [GroupMessage(group: data, message: bad)]), sign: cluster.sign)
            #expect(throws: FrameError.self) { try decode(bytes) }
        }
    }

    @Test func badFramesAreRefusedWithTheirReason() throws {
        let bytes = FrameCodec.encode(RaftFrame(from: 1, to: 2, messages: [GroupMessage(group: data, message: message(.vote))]), sign: cluster.sign)
        #expect(throws: FrameError.unauthenticated) { try decode(bytes, with: FrameAuthenticator(clusterSecret: "other")) }
        var flipped = bytes
        flipped[30] ^= 0x40
        #expect(throws: FrameError.badChecksum) { try decode(flipped) }
        #expect(throws: FrameError.badMagic) { try decode(Array("GET / HTTP/1.1\r\n".utf8)) }
        var version = bytes
        version[4] = 9
        #expect(throws: FrameError.unsupportedVersion(9)) { try decode(version) }
        #expect(throws: FrameError.tooLarge(bytes: bytes.count, max: 40)) { try decode(bytes, max: 40) }
        // Signed and checksummed, but not a valid payload (a peer with a bug): malformed.
        var garbage = Array(bytes.prefix(22)) + [3, 0, 0, 0] + [0xFF, 0xFF, 0xFF] + [UInt8](repeating: 1, count: 16)
        garbage += withUnsafeBytes(of: CRC32C.checksum(garbage).littleEndian, Array.init)
        garbage += cluster.sign(garbage)
        let error = #expect(throws: FrameError.self) { try decode(garbage) }
        #expect(error?.label == "malformed")
        // The label list metrics start from names every reason, in order.
        let every: [FrameError] = [.badMagic, .unsupportedVersion(9), .tooLarge(bytes: 2, max: 1), .badChecksum, .unauthenticated, .replayed, .malformed("x"),
                                   .identity("x")]
        #expect(every.map(\.label) == FrameError.labels)
    }

    /// A frame prepared on the sender's thread and sealed by its connection is the frame
    /// encoded whole with that seal; the seal is signed, so it cannot be rewritten.
    @Test func aSealedFrameCarriesItsSessionAndSequenceSigned() throws {
        let frame = RaftFrame(from: 1, to: 2, messages: [GroupMessage(group: data, message: message(.vote))])
        let seal = FrameSeal(session: 0xDEAD_BEEF_0123_4567, sequence: 42)
        let sealed = FrameCodec.prepare(frame, authenticator: cluster).sealed(seal)
        #expect(sealed == FrameCodec.encode(frame, seal: seal, sign: cluster.sign))
        let (decoded, decodedSeal, used) = try #require(try FrameCodec.decodeSealed(sealed[...], frameBytesMax: 1 << 20, verify: cluster.verify))
        #expect(decoded == frame && decodedSeal == seal && used == sealed.count && !decodedSeal.isHello)
        // Another sequence with the old tag (CRC fixed up): the signature no longer matches.
        var rewritten = sealed
        let sequenceAt = sealed.count - FrameCodec.tagBytes - 4 - 8
        rewritten[sequenceAt] = 43
        let crc = CRC32C.checksum(Array(rewritten[..<(sealed.count - FrameCodec.tagBytes - 4)]))
        rewritten.replaceSubrange((sealed.count - FrameCodec.tagBytes - 4)..<(sealed.count - FrameCodec.tagBytes),
                                  with: withUnsafeBytes(of: crc.littleEndian, Array.init))
        #expect(throws: FrameError.unauthenticated) { try decode(rewritten) }
        // A hello (sequence 0) names its sender and its cluster only: one with messages, or
        // without its names, is malformed, and so is a hello sealed at another place.
        let greeting = PeerHello(clusterName: "tidemark", clientAddress: "127.0.0.1:18081")
        let hello = FrameCodec.encode(RaftFrame(from: 1, to: 2, hello: greeting), seal: FrameSeal(session: 7, sequence: 0), sign: cluster.sign)
        let decodedHello = try #require(try FrameCodec.decodeSealed(hello[...], frameBytesMax: FrameCodec.helloBytesMax, verify: cluster.verify))
        #expect(decodedHello.seal.isHello && decodedHello.frame.hello == greeting && decodedHello.frame.isEmpty)
        let loudHello = FrameCodec.encode(frame, seal: FrameSeal(session: 7, sequence: 0), sign: cluster.sign)
        #expect(throws: FrameError.self) { try decode(loudHello) }
        let namelessHello = FrameCodec.encode(RaftFrame(from: 1, to: 2, messages: []), seal: FrameSeal(session: 7, sequence: 0), sign: cluster.sign)
        #expect(throws: FrameError.self) { try decode(namelessHello) }
        let misplacedHello = FrameCodec.encode(RaftFrame(from: 1, to: 2, hello: greeting), seal: FrameSeal(session: 7, sequence: 3), sign: cluster.sign)
        #expect(throws: FrameError.self) { try decode(misplacedHello) }
    }

    /// A hello with the longest name and address a config allows fits `helloBytesMax`
    /// (what a connection may send before it said who it is); longer fields do not decode.
    @Test func aHelloIsBounded() throws {
        let longest = PeerHello(clusterName: String(repeating: "n", count: ClusterIdentity.nameBytesMax),
                                clientAddress: String(repeating: "a", count: ClusterIdentity.clientAddressBytesMax))
        let bytes = FrameCodec.encode(RaftFrame(from: 1, to: 2, hello: longest), seal: FrameSeal(session: 7, sequence: 0), sign: cluster.sign)
        #expect(bytes.count <= FrameCodec.helloBytesMax)
        let (decoded, _, _) = try #require(try FrameCodec.decodeSealed(bytes[...], frameBytesMax: FrameCodec.helloBytesMax, verify: cluster.verify))
        #expect(decoded.hello == longest)
        // The bytes a node with a name one byte too long would send (its config refuses it), signed.
        var long = Array(bytes.prefix(FrameCodec.headerBytes))
        long[FrameCodec.headerBytes - 4] = UInt8(2 + ClusterIdentity.nameBytesMax + 1)
        long += [UInt8(ClusterIdentity.nameBytesMax + 1)] + Array(repeating: UInt8(ascii: "n"), count: ClusterIdentity.nameBytesMax + 1) + [0]
        long += withUnsafeBytes(of: UInt64(7).littleEndian, Array.init) + withUnsafeBytes(of: UInt64(0).littleEndian, Array.init)
        long += withUnsafeBytes(of: CRC32C.checksum(long).littleEndian, Array.init)
        long += cluster.sign(long)
        let error = #expect(throws: FrameError.self) { try decode(long) }
        #expect(error?.label == "malformed")
    }
}
