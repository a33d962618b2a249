import Logging
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
    /// Connections this node made to its peers (one per pair of nodes, again after a loss).
    public let connectionsDialed = Atomic<Int>(0)
    /// Connections closed for bad input, by `FrameError.label`.
    private let refused = Mutex<[String: Int]>(Dictionary(uniqueKeysWithValues: FrameError.labels.map { ($0, 0) }))

    public init() {}

    func refuse(_ error: FrameError) { refused.withLock { $0[error.label, default: 0] += 1 } }

    public func refusedFrames(_ label: String) -> Int { refused.withLock { $0[label] ?? 0 } }

    /// Refusals by label, every label present.
    public var refusedByLabel: [String: Int] { refused.withLock { $0 } }
}

/// Raft messages between nodes over TCP (DESIGN.md section 2, internal RPC): one connection
/// per pair of nodes, carrying frames both ways (every group's messages of a round in one
/// frame, heartbeats coalesced), versioned, checksummed and signed with the cluster secret.
/// The node with the smaller ID dials (and redials every `redialMs` while the link is down);
/// its first frame, a signed hello, tells the other side whose connection it is. Each side
/// of a connection sends a hello with its cluster name, its client address (peers keep it
/// for leader hints) and a fresh random nonce. A hello naming another cluster, or a node the
/// two configs do not agree on, is refused (`PeerIdentity`) and both sides log why. Every
/// later frame carries the receiver's nonce and its place on the connection (`FrameSeal`),
/// so a recorded frame played again (on this connection or another) is refused. A link
/// that carried nothing for `pingMs` carries a hello again (the pair's one heartbeat, however
/// many groups sleep); a link silent for `silenceMs` is cut and its peer reported down, so
/// groups asleep under a leader that vanished wake up and elect another. Incoming
/// bytes that do not decode or authenticate close their connection and are counted (and the
/// failed authentications logged, rate-limited); they never reach Raft. A node that hears
/// no authenticated frame from any peer for `silenceMs` says so in its log. Sends are best
/// effort: Raft retries what is lost.
///
/// Runs on the event loop; `send` may be called from any thread.
public final class PeerTransport: RaftTransport, ReplicationTransport, @unchecked Sendable {
    public let nodeID: UInt64
    public let metrics: PeerMetrics
    let loop: EventLoop
    private var peers: [UInt64: ListenAddress]
    let authenticator: FrameAuthenticator
    private let frameBytesMax: Int
    /// Unsent bytes to one peer past which new frames are dropped (a slow or dead peer).
    private let backlogBytesMax: Int
    /// Incoming connections open at once (peers reconnect; anything else is refused).
    private let incomingMax: Int
    /// Bytes of partial frames held for all connections together: a frame is authenticated
    /// only once whole, so a stranger announcing big frames must not make the node buffer
    /// `incomingMax × frameBytesMax`.
    private let incomingBufferedBytesMax: Int
    private let redialMs: UInt64
    private let pingMs: UInt64
    private let silenceMs: UInt64
    private let identity: PeerIdentity
    /// Client addresses (`HOST:PORT` of the HTTP edge) of this node and of each peer that said
    /// hello, for leader hints: written on the loop, read from any thread.
    private let clientAddresses = Mutex<[UInt64: String]>([:])
    /// Since when (monotonic ns) each peer has had no link, for the meta group's health:
    /// written on the loop, read from any thread. A peer never reached counts from `start`.
    private let linkDownSinceNs = Mutex<[UInt64: UInt64]>([:])
    private let deliver: @Sendable ([GroupMessage]) -> Void
    private let deliverReplication: @Sendable ([ReplicationMessage]) -> Void
    /// Told (on the loop) when the link to a peer goes down.
    private let peerDown: @Sendable (UInt64) -> Void
    // Loop thread only:
    /// What this node's hellos say of it; the client address is known once `start` ran.
    private var ownHello: PeerHello
    private let warnings: PeerWarnings
    private var authentication: AuthenticationSilence
    private var listener: TCPListener?
    private var redialTimer: LoopTimer?
    /// The one connection to each peer, once up (and, when accepted, identified by its hello).
    private var links: [UInt64: TCPStream] = [:]
    private var dialing: Set<UInt64> = []
    private var lastDialNs: [UInt64: UInt64] = [:]
    /// When each link last carried a frame out, and one in.
    private var lastSentNs: [UInt64: UInt64] = [:]
    private var lastHeardNs: [UInt64: UInt64] = [:]
    /// Frames waiting for the link to a peer and its hello, by peer (bounded by
    /// `backlogBytesMax`, and dropped when no link came within a housekeeping period).
    private var waiting: [UInt64: [PreparedFrame]] = [:]
    /// Each open connection's nonces and sequences.
    private var sessions: [ObjectIdentifier: Session] = [:]
    private var waitingBytes: [UInt64: Int] = [:]
    /// Accepted connections that have not said who they are yet, with when they came.
    private var unidentifiedSinceNs: [ObjectIdentifier: UInt64] = [:]
    private(set) var stopped = false
    /// Calls waiting for answers, and who answers calls (`PeerCalls.swift`).
    let calls = PeerCallTable()
    /// Accepted connections, identified or not.
    private var incoming: [ObjectIdentifier: TCPStream] = [:]
    private var bufferedBytes = 0

    /// `clusterName` goes in every hello (a peer with another is refused); `logger` hears of
    /// refused peers (rate-limited).
    public init(loop: EventLoop, nodeID: UInt64, peers: [UInt64: ListenAddress], clusterSecret: String, clusterName: String = "tidemark",
                logger: Logger = Logger(label: "tidemark.peers"),
                frameBytesMax: Int = 64 << 20, backlogBytesMax: Int = 64 << 20, incomingMax: Int = 64, incomingBufferedBytesMax: Int = 256 << 20,
                redialMs: UInt64 = 200, pingMs: UInt64 = 100, silenceMs: UInt64 = 1000, metrics: PeerMetrics = PeerMetrics(),
                peerDown: @escaping @Sendable (UInt64) -> Void = { _ in },
                deliverReplication: @escaping @Sendable ([ReplicationMessage]) -> Void = { _ in },
                deliver: @escaping @Sendable ([GroupMessage]) -> Void) {
        precondition(redialMs > 0 && pingMs > 0 && silenceMs > pingMs, "periods: a silence spans several pings")
        self.loop = loop
        self.nodeID = nodeID
        self.peers = peers
        authenticator = FrameAuthenticator(clusterSecret: clusterSecret)
        self.frameBytesMax = frameBytesMax
        self.backlogBytesMax = backlogBytesMax
        self.incomingMax = incomingMax
        self.incomingBufferedBytesMax = incomingBufferedBytesMax
        self.redialMs = redialMs
        self.pingMs = pingMs
        self.silenceMs = silenceMs
        identity = PeerIdentity(nodeID: nodeID, clusterName: clusterName)
        ownHello = PeerHello(clusterName: clusterName, clientAddress: "")
        warnings = PeerWarnings(logger: logger)
        authentication = AuthenticationSilence(silenceMs: silenceMs, nowNs: monotonicNowNs())
        self.metrics = metrics
        self.peerDown = peerDown
        self.deliver = deliver
        self.deliverReplication = deliverReplication
    }

    /// Listens for peers and starts dialing the ones this node dials (on the loop); returns
    /// the bound address. `clientAddress` (`HOST:PORT` where clients reach this node, see
    /// `ClusterIdentity.clientAddress`) goes in its hellos; throws when it, or the cluster
    /// name, is longer than a hello carries.
    public func start(listen address: ListenAddress, clientAddress: String = "") throws -> ListenAddress {
        ownHello.clientAddress = clientAddress
        for (field, value, max) in [("cluster_name", ownHello.clusterName, ClusterIdentity.nameBytesMax),
                                    ("the client address", clientAddress, ClusterIdentity.clientAddressBytesMax)] where value.utf8.count > max {
            throw HelloFieldTooLong(field: field, bytes: value.utf8.count, max: max)
        }
        if !clientAddress.isEmpty { clientAddresses.withLock { $0[nodeID] = clientAddress } }
        let startedNs = monotonicNowNs()
        linkDownSinceNs.withLock { down in for peer in peers.keys where links[peer] == nil { down[peer] = down[peer] ?? startedNs } }
        authentication = AuthenticationSilence(silenceMs: silenceMs, nowNs: startedNs)
        let listener = try TCPListener(loop: loop, address: address) { [unowned self] stream in accept(stream) }
        self.listener = listener
        redialTimer = LoopTimer(loop: loop, delayMs: 0, repeatMs: min(pingMs, redialMs)) { [unowned self] in housekeeping() }
        return listener.address
    }

    /// Sets (or moves) a peer's internal address (on the loop).
    public func setAddress(of node: UInt64, to address: ListenAddress) {
        peers[node] = address
        clientAddresses.withLock { $0[node] = nil }  // the node there says its own in its hello
        linkDownSinceNs.withLock { $0[node] = $0[node] ?? monotonicNowNs() }
        links[node]?.close()
    }

    /// Takes the internal addresses of registered nodes (from the meta state) that it does not
    /// know yet, or knows elsewhere. Any thread.
    public func learnAddresses(_ addresses: [UInt64: ListenAddress]) {
        loop.execute { [self] in
            for (node, address) in addresses where node != nodeID && peers[node] != address && !stopped { setAddress(of: node, to: address) }
        }
    }

    /// Closes the listener and every connection (on the loop).
    public func stop() {
        stopped = true
        redialTimer?.cancel()
        redialTimer = nil
        listener?.close()
        listener = nil
        for stream in Array(links.values) + Array(incoming.values) { stream.close() }
    }

    /// Where clients reach `node` (`HOST:PORT` of its HTTP edge), as its hello said; this
    /// node's own for `nodeID`. Nil until the node said hello (or when it did not know its
    /// own). The last one heard stays after its link is lost: a hint, which may be stale.
    /// Any thread.
    public func clientAddress(of node: UInt64) -> String? { clientAddresses.withLock { $0[node] } }

    /// How long (ms) `node` has had no link to this node; nil while one is up. Any thread.
    public func linkDownMs(of node: UInt64, nowNs: UInt64 = monotonicNowNs()) -> UInt64? {
        linkDownSinceNs.withLock { $0[node] }.map { nowNs >= $0 ? (nowNs - $0) / 1_000_000 : 0 }
    }

    /// Whether `node` is a peer this node knows the address of (on the loop).
    func hasAddress(of node: UInt64) -> Bool { peers[node] != nil }

    /// Whether the link to `node` is up (on the loop).
    public func isConnected(to node: UInt64) -> Bool { links[node]?.isOpen == true }

    public func send(to node: UInt64, _ messages: [GroupMessage]) {
        guard !messages.isEmpty else { return }
        let frame = FrameCodec.prepare(RaftFrame(from: nodeID, to: node, messages: messages), authenticator: authenticator)
        loop.execute { [self] in write(frame, to: node) }
    }

    /// Only over a link that is up: a frame that would wait for one is dropped (false).
    public func send(to node: UInt64, _ messages: [GroupMessage], whenWritten: @escaping @Sendable (Bool) -> Void) {
        guard !messages.isEmpty else { return whenWritten(true) }
        let frame = FrameCodec.prepare(RaftFrame(from: nodeID, to: node, messages: messages), authenticator: authenticator)
        loop.execute { [self] in write(frame, to: node, done: whenWritten) }
    }

    public func send(to node: UInt64, _ messages: [ReplicationMessage]) {
        guard !messages.isEmpty else { return }
        let frame = FrameCodec.prepare(RaftFrame(from: nodeID, to: node, messages: [], replication: messages), authenticator: authenticator)
        loop.execute { [self] in write(frame, to: node) }
    }

    /// Only over a link that is up, as for Raft's pieces.
    public func send(to node: UInt64, _ messages: [ReplicationMessage], whenWritten: @escaping @Sendable (Bool) -> Void) {
        guard !messages.isEmpty else { return whenWritten(true) }
        let frame = FrameCodec.prepare(RaftFrame(from: nodeID, to: node, messages: [], replication: messages), authenticator: authenticator)
        loop.execute { [self] in write(frame, to: node, done: whenWritten) }
    }

    /// One connection's side of the replay check (loop thread only).
    private final class Session {
        /// What the other side must put in its frames to this node.
        let ownNonce = UInt64.random(in: 1...UInt64.max)
        /// What this node puts in its frames to the other side, once its hello said so.
        var peerNonce: UInt64?
        var lastSequenceIn: UInt64 = 0
        var nextSequenceOut: UInt64 = 1
        /// Refused for its hello: closing once this node's answer left; nothing more is read.
        var refused = false
    }

    // MARK: - Loop thread

    /// The smaller ID dials, so a pair never makes two connections. A joining node (a
    /// provisional ID, `PeerIdentity.isProvisional`) dials every member it asks and is never dialed.
    private func dials(_ peer: UInt64) -> Bool {
        if PeerIdentity.isProvisional(nodeID) { return true }
        return !PeerIdentity.isProvisional(peer) && nodeID < peer
    }

    /// Every `pingMs`: pings idle links, cuts silent ones, redials lost ones.
    private func housekeeping() {
        let now = monotonicNowNs()
        expireCalls(nowNs: now)
        for (peer, link) in links {
            if now - (lastHeardNs[peer] ?? now) >= silenceMs * 1_000_000 {
                link.close()  // reports the peer down
            } else if now - (lastSentNs[peer] ?? 0) >= pingMs * 1_000_000, let session = sessions[ObjectIdentifier(link)] {
                link.write(hello(to: peer, session: session))
                lastSentNs[peer] = now
            }
        }
        // Frames wait for a link one period at most: stale ones are no use (Raft resends).
        for (peer, frames) in waiting where links[peer] == nil && !dialing.contains(peer) {
            metrics.framesDropped.add(frames.count, ordering: .relaxed)
            waiting[peer] = nil
            waitingBytes[peer] = nil
        }
        // A connection that has not said who it is within a silence holds no slot longer.
        for (key, sinceNs) in unidentifiedSinceNs where now - sinceNs >= silenceMs * 1_000_000 {
            metrics.refuse(.unauthenticated)
            incoming[key]?.close()
        }
        for peer in peers.keys where dials(peer) && now - (lastDialNs[peer] ?? 0) >= redialMs * 1_000_000 { dial(peer) }
        warnIfDeaf(nowNs: now)
    }

    /// Logs (rate-limited) that no peer has been heard for an election timeout: with another
    /// `cluster_secret`, this node would otherwise sit as a pre-candidate with nothing said.
    private func warnIfDeaf(nowNs: UInt64) {
        guard !stopped, authentication.isDeaf(nowNs: nowNs, hasPeers: !peers.isEmpty) else { return }
        let tried = peers.sorted { $0.key < $1.key }.map { "node \($0.key) at \($0.value)" }.joined(separator: ", ")
        let failures = authentication.failuresSinceHeard
        let hint = failures > 0
            ? "\(failures) connections failed authentication meanwhile: cluster_secret probably differs between the nodes"
            : "check that they run and are reachable, and that every node has the same cluster_secret"
        warnings.warn(peer: "every peer", reason: "no_authenticated_peer",
                      "no authenticated frame from any peer for \(silenceMs) ms (tried \(tried)); \(hint)",
                      metadata: ["silence_ms": "\(silenceMs)", "failed_authentications": "\(failures)"], nowNs: nowNs)
    }

    /// A signed hello with this side's nonce, cluster name and client address: names this
    /// node on a new link, and keeps an idle one alive.
    private func hello(to peer: UInt64, session: Session) -> [UInt8] {
        FrameCodec.prepare(RaftFrame(from: nodeID, to: peer, hello: ownHello), authenticator: authenticator)
            .sealed(FrameSeal(session: session.ownNonce, sequence: 0))
    }

    /// Seals `frame` for the link's next place and writes it; false when the link cannot
    /// take it yet (no link, or no hello from the other side).
    private func writeSealed(_ frame: PreparedFrame, on link: TCPStream, done: ((Bool) -> Void)? = nil) -> Bool {
        guard link.isOpen, let session = sessions[ObjectIdentifier(link)], let peerNonce = session.peerNonce else { return false }
        // One write, so the frame leaves in one system call and the peer reads it whole.
        link.write(parts: [frame.body, frame.trailer(for: FrameSeal(session: peerNonce, sequence: session.nextSequenceOut))], done: done)
        session.nextSequenceOut += 1
        return true
    }

    /// Writes `frame` to `node`'s link, or keeps it until the link is up. `done`, when given,
    /// hears whether it was written; such a frame does not wait for a link.
    func write(_ frame: PreparedFrame, to node: UInt64, done: ((Bool) -> Void)? = nil) {
        guard !stopped else {
            done?(false)
            return
        }
        if let link = links[node], link.isOpen, link.pendingWriteBytes >= backlogBytesMax {
            metrics.framesDropped.add(1, ordering: .relaxed)
            done?(false)
            return
        }
        if let link = links[node], writeSealed(frame, on: link, done: done) {
            lastSentNs[node] = monotonicNowNs()
            metrics.framesSent.add(1, ordering: .relaxed)
            return
        }
        guard peers[node] != nil, done == nil else {
            metrics.framesDropped.add(1, ordering: .relaxed)
            done?(false)
            return
        }
        // No link (or no hello on it) yet: the frame waits for it (a few, bounded); Raft resends the rest.
        guard waitingBytes[node, default: 0] + frame.count <= backlogBytesMax else {
            metrics.framesDropped.add(1, ordering: .relaxed)
            return
        }
        waiting[node, default: []].append(frame)
        waitingBytes[node, default: 0] += frame.count
        if dials(node) { dial(node) }
    }

    /// Connects to `node`, at most once per `redialMs` (a peer that refuses is not hammered).
    private func dial(_ node: UInt64) {
        let now = monotonicNowNs()
        guard !stopped, links[node] == nil, !dialing.contains(node), let address = peers[node],
              now - (lastDialNs[node] ?? 0) >= redialMs * 1_000_000 else { return }
        dialing.insert(node)
        lastDialNs[node] = now
        TCPStream.connect(loop: loop, to: address) { [self] stream, _ in
            dialing.remove(node)
            guard let stream else { return }  // the redial timer tries again
            guard !stopped else { return stream.close() }
            let session = Session()
            sessions[ObjectIdentifier(stream)] = session
            stream.write(hello(to: node, session: session))
            metrics.connectionsDialed.add(1, ordering: .relaxed)
            read(stream, peer: node)
            adopt(stream, as: node)
        }
    }

    /// Makes `stream` the link to `peer` (a peer that restarted replaces its old one).
    private func adopt(_ stream: TCPStream, as peer: UInt64) {
        if let old = links[peer], old !== stream { old.close() }
        links[peer] = stream
        linkDownSinceNs.withLock { $0[peer] = nil }
        let now = monotonicNowNs()
        lastHeardNs[peer] = now
        lastSentNs[peer] = now
        sendWaiting(to: peer)
    }

    /// Sends what waited for the link to `peer`, once the other side's hello came.
    private func sendWaiting(to peer: UInt64) {
        guard let link = links[peer], sessions[ObjectIdentifier(link)]?.peerNonce != nil else { return }
        let queued = waiting.removeValue(forKey: peer) ?? []
        waitingBytes[peer] = nil
        for frame in queued { _ = writeSealed(frame, on: link) }
        metrics.framesSent.add(queued.count, ordering: .relaxed)
    }

    private func accept(_ stream: TCPStream) {
        guard incoming.count < incomingMax else {
            metrics.connectionsRefused.add(1, ordering: .relaxed)
            stream.close()
            return
        }
        incoming[ObjectIdentifier(stream)] = stream
        unidentifiedSinceNs[ObjectIdentifier(stream)] = monotonicNowNs()
        sessions[ObjectIdentifier(stream)] = Session()
        read(stream, peer: nil)
    }

    /// Reads frames from `stream`: from `peer` when this node dialed it, else from whichever
    /// smaller node its first frame (its hello) names.
    private func read(_ stream: TCPStream, peer dialed: UInt64?) {
        let key = ObjectIdentifier(stream)
        var peer = dialed
        var buffer: [UInt8] = []
        stream.onClose = { [unowned self] in
            incoming[key] = nil
            sessions[key] = nil
            unidentifiedSinceNs[key] = nil
            bufferedBytes -= buffer.count
            buffer = []
            if let peer, links[peer] === stream {
                links[peer] = nil
                linkDownSinceNs.withLock { $0[peer] = $0[peer] ?? monotonicNowNs() }
                failCalls(to: peer)
                peerDown(peer)
            }
        }
        stream.onBytes = { [unowned self] bytes in
            guard sessions[key]?.refused != true else { return }  // closing once its answer left
            guard bufferedBytes + bytes.count <= incomingBufferedBytesMax else {
                metrics.refuse(.tooLarge(bytes: bufferedBytes + bytes.count, max: incomingBufferedBytesMax))
                stream.close()
                return
            }
            buffer.append(contentsOf: bytes)
            bufferedBytes += bytes.count
            // A link busy with a big frame is not silent.
            if let peer { lastHeardNs[peer] = monotonicNowNs() }
            var consumed = 0
            defer {
                buffer.removeFirst(consumed)
                bufferedBytes -= consumed
            }
            do {
                // Until it has said who it is, a connection may send nothing bigger than a hello.
                while let (frame, seal, used) = try FrameCodec.decodeSealed(buffer[consumed...],
                                                                             frameBytesMax: peer == nil ? FrameCodec.helloBytesMax : frameBytesMax,
                                                                             verify: authenticator.verify) {
                    consumed += used
                    authentication.heard(nowNs: monotonicNowNs())
                    guard let session = sessions[key] else { return }  // closed meanwhile
                    // The first hello says who calls, from which cluster: checked before anything from it counts.
                    if seal.isHello, session.peerNonce == nil, !identify(frame, on: stream, session: session, dialed: dialed) { return }
                    // A frame must be for this node, from the node at the other end.
                    guard frame.to == nodeID, peers[frame.from] != nil || PeerIdentity.isProvisional(frame.from), peer == nil || frame.from == peer else {
                        throw FrameError.malformed("frame from node \(frame.from) for node \(frame.to) reached node \(nodeID)")
                    }
                    if seal.isHello {
                        // The first hello sets the other side's nonce; a ping repeats it, any other is a replay.
                        if let known = session.peerNonce {
                            guard known == seal.session else { throw FrameError.replayed }
                        } else {
                            session.peerNonce = seal.session
                            if peer == nil {
                                guard !dials(frame.from) else {
                                    throw FrameError.malformed("node \(frame.from) dialed node \(nodeID), which dials it")
                                }
                                peer = frame.from
                                unidentifiedSinceNs[key] = nil
                                learnClientAddress(from: frame)
                                stream.write(hello(to: frame.from, session: session))
                                adopt(stream, as: frame.from)
                            } else {
                                learnClientAddress(from: frame)
                                sendWaiting(to: frame.from)
                            }
                        }
                    } else {
                        guard peer != nil, seal.session == session.ownNonce, seal.sequence > session.lastSequenceIn else {
                            throw FrameError.replayed
                        }
                        session.lastSequenceIn = seal.sequence
                    }
                    lastHeardNs[frame.from] = monotonicNowNs()
                    guard !frame.isEmpty else { continue }  // a hello or a ping
                    metrics.framesReceived.add(1, ordering: .relaxed)
                    let messages = frame.allMessages
                    if !messages.isEmpty { deliver(messages) }
                    if !frame.replication.isEmpty { deliverReplication(frame.replication) }
                    if !frame.calls.isEmpty { receive(frame.calls, from: frame.from) }
                }
            } catch let error as FrameError {
                refuse(error, on: stream, dialed: dialed)
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

    // MARK: - Identity and refusals (loop thread)

    /// Checks the first hello on a connection (`PeerIdentity`): a refused one is counted,
    /// logged (rate-limited) and its connection closed. False when refused.
    private func identify(_ frame: RaftFrame, on stream: TCPStream, session: Session, dialed: UInt64?) -> Bool {
        let address = describe(stream, dialed: dialed)
        guard let refusal = identity.refusal(of: frame, dialed: dialed, address: address, peers: peers) else { return true }
        metrics.refuse(.identity(refusal.message))
        // A dialed peer is known by its address; an accepted one dials from a new port each
        // time, so by its host and the node it says it is.
        let peerKey = dialed == nil ? "\(stream.remoteAddress?.host ?? address) node \(frame.from)" : address
        warnings.warn(peer: peerKey, reason: refusal.kind, "refused the internal connection with \(address): \(refusal.message)",
                      metadata: ["peer": "\(address)", "peer_says_node": "\(frame.from)", "node": "\(nodeID)"], nowNs: monotonicNowNs())
        session.refused = true
        if dialed == nil {
            // The accepting side answers with its own hello before it closes (a hello says
            // nothing a peer with the secret may not know), so the dialer finds the mismatch as
            // well (another cluster name, or not the node it dialed) and logs it on its side.
            stream.write(hello(to: frame.from, session: session)) { _ in stream.close() }
        } else {
            stream.close()
        }
        return false
    }

    /// Counts a connection's bad input and logs (rate-limited) what an operator must fix: a
    /// peer with another `cluster_secret`, or a build with another frame version.
    private func refuse(_ error: FrameError, on stream: TCPStream, dialed: UInt64?) {
        metrics.refuse(error)
        let address = describe(stream, dialed: dialed)
        // Nothing authenticated says who an accepted connection is: known by its host only.
        let peerKey = dialed == nil ? stream.remoteAddress?.host ?? address : address
        switch error {
        case .unauthenticated:
            authentication.failed()
            warnings.warn(peer: peerKey, reason: error.label,
                          "frames from \(address) fail authentication: cluster_secret probably differs between this node and that one",
                          metadata: ["peer": "\(address)"], nowNs: monotonicNowNs())
        case .unsupportedVersion(let version):
            warnings.warn(peer: peerKey, reason: error.label,
                          "the node at \(address) speaks internal frame version \(version), this node \(FrameCodec.version): every node must run a build of the same frame version",
                          metadata: ["peer": "\(address)"], nowNs: monotonicNowNs())
        default:
            break
        }
    }

    /// The other end of `stream` for a log line: the address dialed, or where an accepted
    /// connection comes from.
    private func describe(_ stream: TCPStream, dialed: UInt64?) -> String {
        (dialed.flatMap { peers[$0] } ?? stream.remoteAddress).map { "\($0)" } ?? "an unknown address"
    }

    /// Keeps the client address a peer's accepted first hello names, for leader hints.
    private func learnClientAddress(from frame: RaftFrame) {
        guard let address = frame.hello?.clientAddress, !address.isEmpty else { return }
        clientAddresses.withLock { $0[frame.from] = address }
    }
}
