import Foundation

/// Sends one snapshot image to another replica in pieces, at most `window` of them not yet
/// written to the connection at a time: each piece written schedules the sending of the
/// next (`schedule`: the node's handoff stage), so no thread waits on the network and the
/// image is never in memory whole. The first piece the transport drops ends the stream;
/// `finished` runs once, with whether every piece left.
final class ImageSender: @unchecked Sendable {
    /// Sends piece `part` of `parts`, then says whether it was written.
    typealias Send = @Sendable (_ piece: [UInt8], _ part: Int, _ parts: Int, _ written: @escaping @Sendable (Bool) -> Void) -> Void
    private let reader: any ImageReader
    private let chunkBytes: Int
    let parts: Int
    private let window: Int
    private let send: Send
    private let schedule: @Sendable (@escaping @Sendable () -> Void) -> Bool
    private let finished: @Sendable (Result<Int, ConsensusError>) -> Void
    private let lock = NSLock()
    // protected by lock:
    private var nextPart = 0
    private var inFlight = 0
    /// One pump at a time reads the image (in order); a pump asked for meanwhile runs again.
    private var pumping = false
    private var done = false

    init(reader: any ImageReader, chunkBytes: Int, window: Int, send: @escaping Send,
         schedule: @escaping @Sendable (@escaping @Sendable () -> Void) -> Bool,
         finished: @escaping @Sendable (Result<Int, ConsensusError>) -> Void) {
        precondition(chunkBytes > 0 && window > 0)
        self.reader = reader
        self.chunkBytes = chunkBytes
        parts = Self.parts(bytes: reader.byteCount, chunkBytes: chunkBytes)
        self.window = window
        self.send = send
        self.schedule = schedule
        self.finished = finished
    }

    /// The pieces an image of `bytes` is cut into (one, even when empty).
    static func parts(bytes: Int, chunkBytes: Int) -> Int { max(1, (bytes + chunkBytes - 1) / chunkBytes) }

    func start() {
        // A chunk's context numbers its pieces in 32 bits.
        guard parts <= Int(UInt32.max) else {
            return end(.failure(.refused("\(reader.byteCount) bytes in pieces of \(chunkBytes) are more than 2^32 - 1 pieces")))
        }
        pump()
    }

    /// Sends pieces while the window has room; ends the stream once the last is written.
    private func pump() {
        lock.lock()
        guard !pumping else { return lock.unlock() }
        pumping = true
        while !done && inFlight < window && nextPart < parts {
            let part = nextPart
            nextPart += 1
            inFlight += 1
            lock.unlock()
            let piece: [UInt8]
            do { piece = try reader.read(max: chunkBytes) } catch {
                lock.withLock { pumping = false }
                return end(.failure(.io("reading the image failed: \(error)")))
            }
            // Every piece but the last is whole: the follower counts on `parts` pieces of the image.
            guard piece.count == min(chunkBytes, reader.byteCount - part * chunkBytes) else {
                lock.withLock { pumping = false }
                return end(.failure(.io("the image gave \(piece.count) bytes for piece \(part) of \(parts)")))
            }
            // May call back at once (a transport that writes in place): `pumping` keeps that out.
            send(piece, part, parts) { [self] written in pieceWritten(written) }
            lock.lock()
        }
        pumping = false
        let complete = nextPart == parts && inFlight == 0
        lock.unlock()
        if complete { end(.success(parts)) }
    }

    private func pieceWritten(_ written: Bool) {
        lock.withLock { inFlight -= 1 }
        guard written else { return end(.failure(.io("the transport dropped a piece"))) }
        if !schedule({ [self] in pump() }) { end(.failure(.busy("no room on the stage to send the next piece"))) }
    }

    /// Ends the stream once: closes the image and tells the owner.
    private func end(_ result: Result<Int, ConsensusError>) {
        let first = lock.withLock { () -> Bool in
            defer { done = true }
            return !done
        }
        guard first else { return }
        reader.close()
        finished(result)
    }
}
