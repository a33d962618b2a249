import Foundation
import Logging
import TidemarkIO

/// How a new replica joins a multi-leader group (DESIGN.md section 5):
/// 1. every member adds it (`addPeer`): from then on each keeps its own entries for it;
/// 2. the new node calls `joinGroup` naming one member, the donor; it asks every member
///    whether it added it and, once all did, asks the donor for an image (a member that had
///    not could let go of entries the image lacks);
/// 3. the donor notes, with every ready handled, per source the next write it has not
///    applied, pauses the group's rounds while it takes its state machine's image (off the
///    rounds' lock: the node's other groups go on), and sends it in pieces;
/// 4. the new replica spools the pieces to a file, restores its state machine from it, and
///    starts a log after the image's index holding that vector; each source's dispatcher
///    then ships it everything after (what a source released, the donor had applied).
/// A join survives restarts: `<group>/joining` names the donor until the replica runs.
extension MultiLeaderConsensus {
    /// An image on its way from this node.
    struct ImageStream: Hashable {
        var group: GroupID
        var to: UInt64
    }

    /// A replica of this node waiting for its image.
    final class Joining: @unchecked Sendable {
        let group: GroupID
        let donor: UInt64
        let peers: [UInt64]
        let machine: StateMachine
        let directory: String
        private let lock = NSLock()
        // protected by lock:
        private let spool: ImageSpool
        /// Ticks since a piece came; asks again at the bound (the first tick asks at once).
        private var idleTicks: Int
        private var installing = false
        /// Members that said they added this replica.
        private var accepted: Set<UInt64> = []

        /// What a tick asks of the host.
        enum Ask: Equatable {
            case nothing
            /// Ask these members whether they added this replica.
            case probe([UInt64])
            /// Ask the donor for the image.
            case image
        }

        private static let markerName = "joining"

        private init(group: GroupID, donor: UInt64, peers: [UInt64], machine: StateMachine, directory: String, settings: Settings) {
            self.group = group
            self.donor = donor
            self.peers = peers
            self.machine = machine
            self.directory = directory
            spool = ImageSpool(path: directory + "/image.part", bytesMax: settings.imageBytesMax)
            idleTicks = settings.imageIdleTicks
        }

        /// Starts a join: the marker is durable before anything is asked.
        static func start(_ group: GroupID, directory: String, donor: UInt64, peers: [UInt64], machine: StateMachine,
                          settings: Settings) throws -> Joining {
            try FileIO.makeDirectory(directory)
            try FileIO.writeFileAtomically(Array("\(donor)\n".utf8), to: directory + "/" + markerName, directory: directory)
            return Joining(group: group, donor: donor, peers: peers, machine: machine, directory: directory, settings: settings)
        }

        /// The join a restart finds unfinished, if any.
        static func resume(_ group: GroupID, directory: String, peers: [UInt64], machine: StateMachine,
                           settings: Settings) throws -> Joining? {
            guard let marker = try FileIO.readFile(directory + "/" + markerName) else { return nil }
            let text = String(decoding: marker, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard let donor = UInt64(text), donor > 0 else {
                throw CorruptDataError("\(directory)/\(markerName): \"\(text)\" does not name a donor node")
            }
            let join = Joining(group: group, donor: donor, peers: peers, machine: machine, directory: directory, settings: settings)
            try join.spool.reset()  // what came before the restart is asked for again
            return join
        }

        /// One tick: every `idleTicksMax` without a piece, the members not heard yet are asked
        /// whether they added this replica or, all having said so, the donor for the image.
        func tick(idleTicksMax: Int) -> Ask {
            lock.withLock {
                guard !installing else { return .nothing }
                idleTicks += 1
                guard idleTicks > idleTicksMax else { return .nothing }
                idleTicks = 0
                let unheard = peers.filter { !accepted.contains($0) }
                guard unheard.isEmpty else { return .probe(unheard) }
                try? spool.reset()  // a stream that stopped halfway starts again from its first piece
                return .image
            }
        }

        /// `member` added this replica; the image is asked for at once when it was the last.
        func accept(_ member: UInt64) {
            lock.withLock {
                guard peers.contains(member), accepted.insert(member).inserted else { return }
                if accepted.count == peers.count { idleTicks = Int.max - 1 }
            }
        }

        /// Takes one piece; returns the finished image's header once the last one is synced.
        func take(_ piece: [UInt8], part: UInt64, header: MultiLeaderImageHeader) throws -> MultiLeaderImageHeader? {
            try lock.withLock {
                guard !installing else { return nil }
                do {
                    guard try spool.take(piece, part: part, header: header) == .complete else {
                        idleTicks = 0
                        return nil
                    }
                } catch {
                    try? spool.reset()
                    throw error
                }
                installing = true
                return header
            }
        }

        /// The state machine takes the image; the group's log starts after it with the
        /// image's vector; the marker goes last, so a crash before it joins again.
        func install(_ header: MultiLeaderImageHeader, syncPolicy: WALSyncPolicy) throws {
            let snapshot = machine.keepsInstalledImages
                ? StateSnapshot(index: header.index, term: 1, data: [], file: spool.path)
                : StateSnapshot(index: header.index, term: 1, data: try FileIO.readFile(spool.path) ?? [])
            try machine.restore(snapshot)
            let logDirectory = directory + "/log"
            try FileWAL.makeEmpty(directory: logDirectory, firstSequence: header.index + 1)
            let log = try FileWAL(directory: logDirectory, policy: syncPolicy)
            defer { log.close() }
            _ = try log.replay { _, _ in }
            let progress = MultiLeaderRecord(shipped: Dictionary(uniqueKeysWithValues: peers.map { ($0, 1) }), applied: header.applied)
            try log.waitDurable(try log.append([progress.encoded]))
            try FileIO.remove(directory + "/" + Self.markerName)
            try FileIO.syncDirectory(directory)
            try lock.withLock { try spool.reset() }
        }

        /// An install failed: ask again at the next tick.
        func failed() {
            lock.withLock {
                installing = false
                idleTicks = Int.max - 1
                try? spool.reset()
            }
        }

        /// The group is deleted before it joined.
        func abandon() throws {
            try lock.withLock { try spool.reset() }
            try FileManager.default.removeItem(atPath: directory)
        }
    }

    /// Starts this node's replica of a group that other nodes run: it takes no writes until
    /// `donor` (a member) has sent it an image and it has installed it. Every member must
    /// have added this node first (`addPeer`): a member that has not refuses the image
    /// request, and one that adds it later may have let go of entries the image lacks.
    public func joinGroup(_ group: GroupID, peers: [Peer], stateMachine: StateMachine, donor: UInt64) throws {
        let peerIDs = peers.map(\.id).filter { $0 != nodeID }
        guard peerIDs.contains(donor) else { throw ConsensusError.refused("\(group): the donor, node \(donor), is not one of the peers") }
        try run { () throws(ConsensusError) in
            guard groups[group] == nil, joining[group] == nil else { throw .groupExists(group) }
            let groupDirectory = directory + "/\(group)"
            guard !FileManager.default.fileExists(atPath: groupDirectory + "/log") else {
                throw .refused("\(group): this node holds a log of the group already; create it instead of joining")
            }
            do {
                joining[group] = try Joining.start(group, directory: groupDirectory, donor: donor, peers: peerIDs, machine: stateMachine,
                                                   settings: settings)
            } catch {
                throw .io("\(group): \(error)")
            }
        }
    }

    /// Whether this node's replica of `group` still waits for its image.
    public func isJoining(_ group: GroupID) -> Bool { lock.withLock { joining[group] != nil } }

    /// Sends what a joining replica's tick asks for.
    func ask(_ ask: Joining.Ask, for join: Joining) {
        let targets: [(UInt64, MultiLeaderMessage.Kind)]
        switch ask {
        case .nothing: return
        case .probe(let members): targets = members.map { ($0, .joinProbe) }
        case .image: targets = [(join.donor, .imageRequest)]
        }
        for (member, kind) in targets {
            transport.send(to: member, [ReplicationMessage(group: join.group, message: MultiLeaderMessage(
                kind: kind, from: nodeID, to: member, source: nodeID, sequence: 0))])
        }
    }

    /// A member answers a joining replica's probe when it added it (under the lock).
    func answerProbeLocked(_ probe: ReplicationMessage) {
        guard groups[probe.group]?.core.peers.contains(probe.message.from) == true else { return }
        transport.send(to: probe.message.from, [ReplicationMessage(group: probe.group, message: MultiLeaderMessage(
            kind: .joinAccepted, from: nodeID, to: probe.message.from, source: nodeID, sequence: 0))])
    }

    // MARK: - Donor

    /// Answers a joining replica's request. Under the lock, with no ready pending, it notes
    /// the applied index and vector and pauses the group's rounds, so the state machine holds
    /// exactly what the vector says; the image is then taken off the lock (a region flushes
    /// its memtable first, which must not stall the node's other groups), the group resumes,
    /// and the image goes piece by piece.
    func serveImage(_ request: ReplicationMessage) {
        let to = request.message.from
        let stream = ImageStream(group: request.group, to: to)
        let metadata: Logger.Metadata = ["group": "\(request.group)", "to": "\(to)"]
        let paused = lock.withLock { () -> Result<(Group, UInt64, [UInt64: UInt64]), ConsensusError>? in
            guard !closed, let group = groups[request.group], !imageStreams.contains(stream) else { return nil }
            guard group.core.peers.contains(to) else {
                return .failure(.refused("node \(to) is not a peer here: add it on every replica before it joins"))
            }
            guard !group.core.hasReady else { return .failure(.busy("a round of the group is unfinished")) }
            guard !group.imaging else { return .failure(.busy("the group is taking an image for another replica")) }
            group.imaging = true
            imageStreams.insert(stream)
            return .success((group, group.applied, group.core.diskState.applied))
        }
        let refuse = { @Sendable (error: ConsensusError) in
            self.logger.warning("a joining replica's image request is refused", metadata: metadata.merging(["reason": "\(error)"]) { $1 })
        }
        switch paused {
        case nil:
            return
        case .failure(let error)?:
            refuse(error)
        case .success(let (group, index, vector))?:
            let scheduled = imageOn { [self] in
                let taken = Result { () throws(ConsensusError) in try takeImage(of: group, index: index, vector: vector) }
                let running = resume(group, request.group)
                switch taken {
                case .success(let (reader, header)) where running:
                    send(reader, header, for: stream, metadata: metadata)
                case .success(let (reader, _)):
                    reader.close()
                    _ = lock.withLock { imageStreams.remove(stream) }
                case .failure(let error):
                    _ = lock.withLock { imageStreams.remove(stream) }
                    refuse(error)
                }
            }
            if !scheduled {
                _ = resume(group, request.group)
                _ = lock.withLock { imageStreams.remove(stream) }
            }
        }
    }

    /// The paused group's image (off the lock: nothing applies to its state machine meanwhile).
    private func takeImage(of group: Group, index: UInt64, vector: [UInt64: UInt64]) throws(ConsensusError)
        -> (any ImageReader, MultiLeaderImageHeader) {
        let reader: any ImageReader
        do {
            let machine = group.machine  // a `let`: read off the lock
            let snapshot = StateSnapshot(index: index, term: 1, data: try machine.snapshot().data)
            reader = try machine.openImage(for: snapshot, bytesMax: settings.imageBytesMax)
        } catch let error as ConsensusError {
            throw error
        } catch {
            throw .io("making the image failed: \(error)")
        }
        let parts = ImageSender.parts(bytes: reader.byteCount, chunkBytes: settings.imageChunkBytes)
        guard parts <= Int(UInt32.max) else {
            reader.close()
            throw .refused("an image of \(reader.byteCount) bytes needs more than 2^32 - 1 pieces")
        }
        return (reader, MultiLeaderImageHeader(index: index, bytes: UInt64(reader.byteCount), parts: UInt32(parts), applied: vector))
    }

    /// Lets the paused group's rounds run again and handles what waited meanwhile; false when
    /// the group was deleted (or the node closed) while its image was taken.
    private func resume(_ group: Group, _ id: GroupID) -> Bool {
        var running = false
        try? run { () throws(ConsensusError) in
            group.imaging = false
            running = groups[id] === group
        }
        return running
    }

    /// Sends a taken image to the joining replica, a window of pieces at a time.
    private func send(_ reader: any ImageReader, _ header: MultiLeaderImageHeader, for stream: ImageStream, metadata: Logger.Metadata) {
        logger.notice("sending an image to a joining replica",
                      metadata: metadata.merging(["index": "\(header.index)", "bytes": "\(header.bytes)"]) { $1 })
        let transport = transport, nodeID = nodeID, headerBytes = header.encoded, to = stream.to
        let sender = ImageSender(reader: reader, chunkBytes: settings.imageChunkBytes, window: settings.imageWindowChunks,
                                 send: { piece, part, _, written in
                                     let message = MultiLeaderMessage(kind: .imagePiece, from: nodeID, to: to, source: header.index,
                                                                      sequence: UInt64(part), entries: [piece, headerBytes])
                                     transport.send(to: to, [ReplicationMessage(group: stream.group, message: message)], whenWritten: written)
                                 },
                                 schedule: imageOn) { [self] result in
            _ = lock.withLock { imageStreams.remove(stream) }
            if case .failure(let error) = result {
                logger.warning("an image to a joining replica stopped on its way", metadata: metadata.merging(["reason": "\(error)"]) { $1 })
            }
        }
        sender.start()
    }

    // MARK: - Joining replica

    /// Spools one piece from the donor (off the rounds' lock); the last one installs the image.
    func takePiece(_ item: ReplicationMessage) {
        let found = lock.withLock { closed ? nil : joining[item.group] }
        guard let join = found, item.message.from == join.donor else { return }
        let metadata: Logger.Metadata = ["group": "\(item.group)", "from": "\(join.donor)"]
        let finished: MultiLeaderImageHeader?
        do {
            guard item.message.entries.count == 2 else { throw CorruptDataError("an image piece without its header") }
            let header = try MultiLeaderImageHeader(decoding: item.message.entries[1])
            guard header.index == item.message.source else { throw CorruptDataError("an image piece names two images") }
            finished = try join.take(item.message.entries[0], part: item.message.sequence, header: header)
        } catch {
            // Asked for again once the stream is idle.
            return logger.warning("an image piece is dropped", metadata: metadata.merging(["reason": "\(error)"]) { $1 })
        }
        guard let header = finished else { return }
        if !imageOn({ [self] in install(join, header) }) { join.failed() }
    }

    /// Installs a whole image, then runs the replica as if the node had restarted.
    private func install(_ join: Joining, _ header: MultiLeaderImageHeader) {
        let metadata: Logger.Metadata = ["group": "\(join.group)", "from": "\(join.donor)", "index": "\(header.index)"]
        do {
            try join.install(header, syncPolicy: settings.syncPolicy)
            try run { () throws(ConsensusError) in
                guard joining[join.group] === join else {
                    // Deleted meanwhile: what the install wrote goes too, or a restart would run it.
                    try? FileManager.default.removeItem(atPath: join.directory)
                    return
                }
                joining[join.group] = nil
                do { groups[join.group] = try recover(join.group, peers: join.peers, machine: join.machine) } catch {
                    throw .io("\(join.group): \(error)")
                }
            }
            logger.notice("a joining replica installed its image", metadata: metadata.merging(["bytes": "\(header.bytes)"]) { $1 })
        } catch {
            logger.error("installing a joining replica's image failed; it asks again", metadata: metadata.merging(["reason": "\(error)"]) { $1 })
            join.failed()
        }
    }
}
