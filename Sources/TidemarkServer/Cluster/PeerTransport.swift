import Synchronization
import TidemarkConsensus
import TidemarkCore
import TidemarkNet

/// Counters of the internal RPC transport, for `/metrics`.
public final class PeerMetrics: Sendable {
    public let framesSent = Atomic<Int>(0)
    public let framesReceived = Atomic<Int>(0)
    /// Frames not sent because the connection to the peer was not up or too far behind.
    public let framesDropped = Atomic<Int>(0)
    /// Incoming connections closed at once because `incomingMax` were open.
    public let connectionsRefused = Atomic<Int>(0)
    /// Connections closed for bad input, by `FrameError.label`.
    private let refused = Mutex<[String: Int]>([:])

    public init() {}

    func refuse(_ error: FrameError) { refused.withLock { $0[error.label, default: 0] += 1 } }

    public func refusedFrames(_ label: String) -> Int { refused.withLock { $0[label] ?? 0 } }
}

/// Raft messages between nodes over TCP (DESIGN.md section 2, internal RPC): per peer one
/// outgoing connection carrying frames (every group's messages of a round in one frame,
/// heartbeats coalesced), versioned, checksummed and signed with the cluster secret.
/// Incoming bytes that do not decode or authenticate close their connection and are
/// counted; they never reach Raft. Sends are best effort: Raft retries what is lost.
///
/// Runs on the event loop; `send` may be called from any thread.
public final class PeerTransport: RaftTransport, @unchecked Sendable {
    public let nodeID: UInt64
    public let metrics: PeerMetrics
    private let loop: EventLoop
    private var peers: [UInt64: ListenAddress]
    private let authenticator: FrameAuthenticator
    private let frameBytesMax: Int
    /// Unsent bytes to one peer past which new frames are dropped (a slow or dead peer).
    private let backlogBytesMax: Int
    /// Incoming connections open at once (peers reconnect; anything else is refused).
    private let incomingMax: Int
    /// Bytes of partial frames held for all incoming connections together: a frame is
    /// authenticated only once whole, so a stranger announcing big frames must not make
    /// the node buffer `incomingMax × frameBytesMax`.
    private let incomingBufferedBytesMax: Int
    private let deliver: @Sendable ([GroupMessage]) -> Void
    // Loop thread only:
    private var listener: TCPListener?
    private var outgoing: [UInt64: TCPStream] = [:]
    /// Frames waiting for a connection being made, by peer.
    private var waiting: [UInt64: [[UInt8]]] = [:]
    private var incoming: [ObjectIdentifier: TCPStream] = [:]
    private var incomingBufferedBytes = 0

    public init(loop: EventLoop, nodeID: UInt64, peers: [UInt64: ListenAddress], clusterSecret: String,
                frameBytesMax: Int = 64 << 20, backlogBytesMax: Int = 64 << 20, incomingMax: Int = 64, incomingBufferedBytesMax: Int = 256 << 20,
                metrics: PeerMetrics = PeerMetrics(),
                deliver: @escaping @Sendable ([GroupMessage]) -> Void) {
        self.loop = loop
        self.nodeID = nodeID
        self.peers = peers
        authenticator = FrameAuthenticator(clusterSecret: clusterSecret)
        self.frameBytesMax = frameBytesMax
        self.backlogBytesMax = backlogBytesMax
        self.incomingMax = incomingMax
        self.incomingBufferedBytesMax = incomingBufferedBytesMax
        self.metrics = metrics
        self.deliver = deliver
    }

    /// Listens for peers (on the loop); returns the bound address.
    public func start(listen address: ListenAddress) throws -> ListenAddress {
        let listener = try TCPListener(loop: loop, address: address) { [unowned self] stream in accept(stream) }
        self.listener = listener
        return listener.address
    }

    /// Sets (or moves) a peer's internal address (on the loop).
    public func setAddress(of node: UInt64, to address: ListenAddress) {
        peers[node] = address
        outgoing[node]?.close()
    }

    /// Closes the listener and every connection (on the loop).
    public func stop() {
        listener?.close()
        listener = nil
        for stream in Array(outgoing.values) + Array(incoming.values) { stream.close() }
    }

    public func send(to node: UInt64, _ messages: [GroupMessage]) {
        guard !messages.isEmpty else { return }
        let frame = FrameCodec.encode(RaftFrame(from: nodeID, to: node, messages: messages), sign: authenticator.sign)
        loop.execute { [self] in write(frame, to: node) }
    }

    // MARK: - Loop thread

    private func write(_ frame: [UInt8], to node: UInt64) {
        if let stream = outgoing[node], stream.isOpen {
            guard stream.pendingWriteBytes < backlogBytesMax else {
                metrics.framesDropped.add(1, ordering: .relaxed)
                return
            }
            stream.write(frame)
            metrics.framesSent.add(1, ordering: .relaxed)
            return
        }
        guard let address = peers[node] else {
            metrics.framesDropped.add(1, ordering: .relaxed)
            return
        }
        // Not connected: the frame waits for the connection (a few, bounded); Raft resends the rest.
        if var queued = waiting[node] {
            if queued.reduce(0, { $0 + $1.count }) + frame.count <= backlogBytesMax {
                queued.append(frame)
                waiting[node] = queued
            } else {
                metrics.framesDropped.add(1, ordering: .relaxed)
            }
            return
        }
        waiting[node] = [frame]
        TCPStream.connect(loop: loop, to: address) { [self] stream, _ in
            let queued = waiting.removeValue(forKey: node) ?? []
            guard let stream else {
                metrics.framesDropped.add(queued.count, ordering: .relaxed)
                return
            }
            outgoing[node] = stream
            for frame in queued { stream.write(frame) }
            metrics.framesSent.add(queued.count, ordering: .relaxed)
            stream.onClose = { [unowned self] in if outgoing[node] === stream { outgoing[node] = nil } }
            // The peer never writes on this connection; reading notices when it goes away.
            stream.onBytes = { _ in stream.close() }
            stream.startReading()
        }
    }

    private func accept(_ stream: TCPStream) {
        guard incoming.count < incomingMax else {
            metrics.connectionsRefused.add(1, ordering: .relaxed)
            stream.close()
            return
        }
        let key = ObjectIdentifier(stream)
        incoming[key] = stream
        var buffer: [UInt8] = []
        stream.onClose = { [unowned self] in
            incoming[key] = nil
            incomingBufferedBytes -= buffer.count
            buffer = []
        }
        stream.onBytes = { [unowned self] bytes in
            guard incomingBufferedBytes + bytes.count <= incomingBufferedBytesMax else {
                metrics.refuse(.tooLarge(bytes: incomingBufferedBytes + bytes.count, max: incomingBufferedBytesMax))
                stream.close()
                return
            }
            buffer.append(contentsOf: bytes)
            incomingBufferedBytes += bytes.count
            var consumed = 0
            defer {
                buffer.removeFirst(consumed)
                incomingBufferedBytes -= consumed
            }
            do {
                while let (frame, used) = try FrameCodec.decode(buffer[consumed...], frameBytesMax: frameBytesMax, verify: authenticator.verify) {
                    consumed += used
                    // A frame must be for this node, from a node of the cluster.
                    guard frame.to == nodeID, peers[frame.from] != nil else {
                        throw FrameError.malformed("frame from node \(frame.from) for node \(frame.to) reached node \(nodeID)")
                    }
                    metrics.framesReceived.add(1, ordering: .relaxed)
                    deliver(frame.allMessages)
                }
            } catch let error as FrameError {
                metrics.refuse(error)
                stream.close()
                return
            } catch {
                metrics.refuse(.malformed("\(error)"))
                stream.close()
                return
            }
        }
        stream.startReading()
    }
}
