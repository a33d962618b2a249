import Foundation
import Logging
import TidemarkIO

/// A snapshot image on its way to a follower (one at a time per group and follower).
struct ImageStream: Hashable {
    var group: GroupID
    var to: UInt64
    init(_ message: GroupMessage) {
        group = message.group
        to = message.message.to
    }
}

/// Snapshot images: made and sent piece by piece by a leader, put together in a file by a
/// follower whose state machine installs from files, and dropped from the log once installed.
extension RaftConsensus {
    /// What the state machine restores for a snapshot of the log: its data, or the file its
    /// spool token names.
    func stateSnapshot(_ snapshot: RaftSnapshot) -> StateSnapshot {
        if let name = SpooledImage.name(in: snapshot.data) {
            return StateSnapshot(index: snapshot.index, term: snapshot.term, data: [], file: disk.imageDirectory + "/" + name)
        }
        return StateSnapshot(index: snapshot.index, term: snapshot.term, data: snapshot.data)
    }

    /// A snapshot whose pieces all came to a spool file (off the rounds' lock: it syncs the
    /// whole image): Raft sees it, as a token of the file, once the image is durable.
    func takeSpooledImage(_ item: GroupMessage) {
        let part = disk.imageDirectory + "/" + SpooledImage.name(in: item.message.snapshot!.data)!
        let name = SpooledImage.imageName(ofPart: (part as NSString).lastPathComponent)
        let path = disk.imageDirectory + "/" + name
        var message = item
        do {
            let descriptor = try FileIO.open(part, O_RDONLY)
            defer { FileIO.close(descriptor) }
            try FileIO.fsync(descriptor, path: part)
            try FileIO.rename(part, path)
            try FileIO.syncDirectory(disk.imageDirectory)
            message.message.snapshot!.data = SpooledImage.token(name)
        } catch {
            logger.error("a snapshot image that came in pieces could not be taken", metadata: ["group": "\(item.group)", "reason": "\(error)"])
            try? FileIO.remove(part)
            try? FileIO.remove(path)
            return
        }
        try? run { () throws(ConsensusError) in
            guard groups[message.group] != nil else {
                try? FileIO.remove(path)
                return
            }
            groups[message.group]!.core.step(message.message)
            // Not taken (the log had it already, or a newer one): nothing will ask for the file.
            if groups[message.group]!.core.pendingSnapshot?.data != message.message.snapshot!.data { try? FileIO.remove(path) }
        }
    }

    /// Sends a snapshot with the state machine's image in it, read and sent piece by piece
    /// (`ImageSender`). Failing (too large, a piece dropped), it stops: the leader probes the
    /// follower again later and, still too far behind, sends it again.
    func sendImage(_ message: GroupMessage, of machine: StateMachine) {
        let snapshot = message.message.snapshot!
        let to = message.message.to
        let metadata: Logger.Metadata = ["group": "\(message.group)", "to": "\(to)", "index": "\(snapshot.index)"]
        let reader: any ImageReader
        do {
            // Refused past `snapshotBytesMax` before anything is read.
            reader = try machine.openImage(for: StateSnapshot(index: snapshot.index, term: snapshot.term, data: snapshot.data),
                                           bytesMax: settings.snapshotBytesMax)
        } catch {
            logger.error("making a snapshot image failed; the follower cannot catch up from it now",
                         metadata: metadata.merging(["reason": "\(error)"]) { $1 })
            _ = lock.withLock { imageStreams.remove(ImageStream(message)) }
            return
        }
        let transport = transport
        let bytes = reader.byteCount
        logger.notice("sending a snapshot image", metadata: metadata.merging(["bytes": "\(bytes)"]) { $1 })
        let sender = ImageSender(reader: reader, chunkBytes: settings.snapshotChunkBytes, window: settings.snapshotWindowChunks,
                                 send: { piece, part, parts, written in
                                     transport.send(to: to, [SnapshotChunks.chunk(of: message, piece, part: part, parts: parts)], whenWritten: written)
                                 },
                                 schedule: imageOn) { [self] result in
            _ = lock.withLock { imageStreams.remove(ImageStream(message)) }
            switch result {
            // Counted once every piece left; the follower may still lose it.
            case .success:
                snapshotsSent.add(1, ordering: .relaxed)
                snapshotBytesSent.add(bytes, ordering: .relaxed)
                try? run { () throws(ConsensusError) in
                    if groups[message.group] != nil { groups[message.group]!.core.snapshotSent(to: to) }
                }
                logger.notice("sent a snapshot image", metadata: metadata.merging(["bytes": "\(bytes)"]) { $1 })
            case .failure(let error):
                logger.warning("a snapshot image stopped on its way", metadata: metadata.merging(["reason": "\(error)"]) { $1 })
            }
        }
        sender.start()
    }

    /// The state machine holds the image it installed durably: the log keeps the snapshot
    /// without it (a record of a few bytes in every checkpoint, not the whole region), and
    /// the core forgets it. Failing, the image just stays in the log.
    func dropInstalledImage(of id: GroupID, _ snapshot: RaftSnapshot) {
        lock.withLock {
            guard !closed else { return }
            dropInstalledImageLocked(of: id, snapshot)
        }
    }

    /// The caller holds `lock`. A spooled image goes once the log no longer names it.
    func dropInstalledImageLocked(of id: GroupID, _ snapshot: RaftSnapshot) {
        guard groups[id] != nil, groups[id]!.core.dropSnapshotImage(at: snapshot.index) else { return }
        var bare = snapshot
        bare.data = []
        do { try disk.compact(id, snapshot: bare) } catch {
            logger.warning("could not drop an installed image from the raft log", metadata: ["group": "\(id)", "reason": "\(error)"])
            return
        }
        // This image, and any older one of the group a newer snapshot overtook on its way in.
        for name in (try? FileIO.list(disk.imageDirectory)) ?? [] {
            if let index = SpooledImage.index(in: name, of: id), index <= snapshot.index { try? FileIO.remove(disk.imageDirectory + "/" + name) }
        }
    }
}
