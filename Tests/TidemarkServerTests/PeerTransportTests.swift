import Foundation
import InMemoryLogging
import Logging
import Synchronization
import Testing
import TidemarkConsensus
import TidemarkCore
import TidemarkNet
import TidemarkServer
import TidemarkTestSupport

/// What one transport received.
private final class Inbox: Sendable {
    let messages = Mutex<[GroupMessage]>([])
    let arrived = DispatchSemaphore(value: 0)

    func take(_ batch: [GroupMessage]) {
        messages.withLock { $0 += batch }
        arrived.signal()
    }
}

private let group = GroupID(kind: .data, number: 4)

/// A plain connection the test makes on the loop (touched only there).
private final class RawClient: @unchecked Sendable {
    var stream: TCPStream?
    /// What came in (read on the loop, looked at by the test).
    let received = Mutex<[UInt8]>([])
}

/// A logger whose lines the test reads, and how many of them contain `text`.
private struct CapturedLog {
    let handler = InMemoryLogHandler()
    var logger: Logger { Logger(label: "peers") { [handler] _ in handler } }

    func count(_ text: String) -> Int { handler.entries.filter { "\($0.message)".contains(text) }.count }
}

/// Runs `loop` on a thread of its own; the returned semaphore is signalled once it stopped.
private func runInBackground(_ loop: EventLoop) -> DispatchSemaphore {
    let stopped = DispatchSemaphore(value: 0)
    Thread.detachNewThread {
        loop.run()
        stopped.signal()
    }
    return stopped
}

@Suite(.serialized) struct PeerTransportTests {
    @Test func framesFlowBetweenNodesAndBadPeersAreCountedAndCut() throws {
        let loop = try EventLoop()
        let inboxA = Inbox(), inboxB = Inbox(), inboxC = Inbox()
        let loopback = ListenAddress(host: "127.0.0.1", port: 0)
        let a = PeerTransport(loop: loop, nodeID: 1, peers: [:], clusterSecret: "cluster-secret") { inboxA.take($0) }
        // A long silence: the idle connection below must keep its slot for the limit to show.
        let b = PeerTransport(loop: loop, nodeID: 2, peers: [:], clusterSecret: "cluster-secret", incomingMax: 2, silenceMs: 600_000) { inboxB.take($0) }
        // Node 1 again, without the secret (the smaller node dials, so it must be below 2).
        let intruder = PeerTransport(loop: loop, nodeID: 1, peers: [:], clusterSecret: "wrong-secret") { inboxC.take($0) }
        // A node that holds at most 40 bytes of partial frames.
        let small = PeerTransport(loop: loop, nodeID: 4, peers: [:], clusterSecret: "cluster-secret", incomingBufferedBytesMax: 40) { _ in }
        let addressSmall = try small.start(listen: loopback)
        let addressA = try a.start(listen: loopback)
        let addressB = try b.start(listen: loopback)
        a.setAddress(of: 2, to: addressB)
        b.setAddress(of: 1, to: addressA)
        intruder.setAddress(of: 2, to: addressB)
        let stopped = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            loop.run()
            stopped.signal()
        }

        var append = RaftMessage(kind: .append, from: 1, to: 2, term: 2)
        append.entries = [RaftEntry(index: 1, term: 2, data: Array("x=1".utf8))]
        let heartbeat = RaftMessage(kind: .heartbeat, from: 1, to: 2, term: 2)
        a.send(to: 2, [GroupMessage(group: group, message: append), GroupMessage(group: GroupID(kind: .meta, number: 0), message: heartbeat)])
        #expect(inboxB.arrived.wait(timeout: .now() + 10) == .success)
        #expect(inboxB.messages.withLock { $0.map(\.message) } == [append, heartbeat])
        b.send(to: 1, [GroupMessage(group: group, message: RaftMessage(kind: .appendResponse, from: 2, to: 1, term: 2))])
        #expect(inboxA.arrived.wait(timeout: .now() + 10) == .success)
        #expect(inboxA.messages.withLock { $0.first?.message.kind } == .appendResponse)

        // A node without the cluster secret is not heard, only counted.
        intruder.send(to: 2, [GroupMessage(group: group, message: RaftMessage(kind: .vote, from: 1, to: 2, term: 99))])
        #expect(eventually { b.metrics.refusedFrames("unauthenticated") == 1 })
        // Neither is something that is not a frame at all.
        let raw = RawClient()
        loop.execute {
            TCPStream.connect(loop: loop, to: addressB) { stream, _ in
                raw.stream = stream
                stream?.write(Array("GET / HTTP/1.1\r\n\r\n".utf8))
            }
        }
        #expect(eventually { b.metrics.refusedFrames("bad_magic") == 1 })
        #expect(inboxB.messages.withLock { $0.count } == 2)

        // A stranger announcing a big frame and trickling it is cut once it holds too much.
        let trickle = RawClient()
        loop.execute {
            TCPStream.connect(loop: loop, to: addressSmall) { stream, _ in
                trickle.stream = stream
                var header = Array("TMRF".utf8) + [FrameCodec.version, 0] + Array(repeating: 0, count: 16)
                header += withUnsafeBytes(of: UInt32(1 << 20).littleEndian, Array.init)
                stream?.write(header + Array(repeating: 7, count: 30))
            }
        }
        #expect(eventually { small.metrics.refusedFrames("too_large") == 1 })

        // Past `incomingMax` open connections, more are refused at once.
        let idle = RawClient(), extra = RawClient()
        loop.execute {
            TCPStream.connect(loop: loop, to: addressB) { stream, _ in idle.stream = stream }
            TCPStream.connect(loop: loop, to: addressB) { stream, _ in extra.stream = stream }
        }
        #expect(eventually { b.metrics.connectionsRefused.load(ordering: .relaxed) == 1 })

        // Frames still flow after the bad peers were cut.
        a.send(to: 2, [GroupMessage(group: group, message: heartbeat)])
        #expect(eventually { inboxB.messages.withLock { $0.count } == 3 })
        #expect(a.metrics.framesSent.load(ordering: .relaxed) == 2 && b.metrics.framesReceived.load(ordering: .relaxed) == 2)
        // Both directions used the one connection node 1 made.
        #expect(a.metrics.connectionsDialed.load(ordering: .relaxed) == 1 && b.metrics.connectionsDialed.load(ordering: .relaxed) == 0)

        loop.execute {
            raw.stream?.close()
            trickle.stream?.close()
            small.stop()
            idle.stream?.close()
            extra.stream?.close()
            a.stop()
            b.stop()
            intruder.stop()
            loop.close()
        }
        #expect(stopped.wait(timeout: .now() + 10) == .success)
    }

    /// Frames are sealed for their connection: a signed frame recorded from another
    /// connection, or played twice on this one, is refused as a replay and never delivered.
    @Test func aRecordedFramePlayedAgainIsRefused() throws {
        let loop = try EventLoop()
        let inbox = Inbox()
        let b = PeerTransport(loop: loop, nodeID: 2, peers: [1: ListenAddress(host: "127.0.0.1", port: 9)], clusterSecret: "cluster-secret",
                              silenceMs: 600_000) { inbox.take($0) }
        let address = try b.start(listen: ListenAddress(host: "127.0.0.1", port: 0))
        let stopped = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            loop.run()
            stopped.signal()
        }
        let secret = FrameAuthenticator(clusterSecret: "cluster-secret")
        let vote = RaftFrame(from: 1, to: 2, messages: [GroupMessage(group: group, message: RaftMessage(kind: .vote, from: 1, to: 2, term: 7))])
        /// Connects as node 1 (it knows the secret) and says hello with nonce 5.
        func connect(_ client: RawClient) {
            loop.execute {
                TCPStream.connect(loop: loop, to: address) { stream, _ in
                    client.stream = stream
                    stream?.onBytes = { bytes in client.received.withLock { $0 += Array(bytes) } }
                    stream?.startReading()
                    let hello = RaftFrame(from: 1, to: 2, hello: PeerHello(clusterName: "tidemark", clientAddress: ""))
                    stream?.write(FrameCodec.encode(hello, seal: FrameSeal(session: 5, sequence: 0), sign: secret.sign))
                }
            }
        }
        /// Node 2's nonce, from the hello it answers with.
        func nonce(from client: RawClient) -> UInt64? {
            let bytes = client.received.withLock { $0 }
            guard let (_, seal, _) = try? FrameCodec.decodeSealed(bytes[...], frameBytesMax: 1 << 20, verify: secret.verify), seal.isHello else { return nil }
            return seal.session
        }

        // A genuine exchange: the frame sealed with node 2's nonce is delivered once; the same bytes again are a replay.
        let genuine = RawClient()
        connect(genuine)
        #expect(eventually { nonce(from: genuine) != nil }, "node 2 did not answer the hello")
        let session = try #require(nonce(from: genuine))
        let first = FrameCodec.encode(vote, seal: FrameSeal(session: session, sequence: 1), sign: secret.sign)
        loop.execute { genuine.stream?.write(first) }
        #expect(inbox.arrived.wait(timeout: .now() + 10) == .success)
        loop.execute { genuine.stream?.write(first) }
        #expect(eventually { b.metrics.refusedFrames("replayed") == 1 })

        // On a new connection, a frame recorded from the old one carries the old nonce: refused too.
        let replayer = RawClient()
        connect(replayer)
        #expect(eventually { nonce(from: replayer) != nil })
        #expect(try #require(nonce(from: replayer)) != session)
        loop.execute { replayer.stream?.write(first) }
        #expect(eventually { b.metrics.refusedFrames("replayed") == 2 })
        #expect(inbox.messages.withLock { $0.map(\.message.kind) } == [.vote])

        loop.execute {
            genuine.stream?.close()
            replayer.stream?.close()
            b.stop()
            loop.close()
        }
        #expect(stopped.wait(timeout: .now() + 10) == .success)
    }

    /// One connection per pair: the smaller node dials even when only the larger one has
    /// something to say, and a restarted node's new connection replaces its old one.
    @Test func onePairOneConnectionDialedByTheSmallerNode() throws {
        let loop = try EventLoop()
        let inboxLow = Inbox(), inboxHigh = Inbox(), inboxRestarted = Inbox()
        let loopback = ListenAddress(host: "127.0.0.1", port: 0)
        let low = PeerTransport(loop: loop, nodeID: 5, peers: [:], clusterSecret: "s", redialMs: 20) { inboxLow.take($0) }
        let high = PeerTransport(loop: loop, nodeID: 6, peers: [:], clusterSecret: "s") { inboxHigh.take($0) }
        let addressLow = try low.start(listen: loopback)
        let addressHigh = try high.start(listen: loopback)
        low.setAddress(of: 6, to: addressHigh)
        high.setAddress(of: 5, to: addressLow)
        let stopped = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            loop.run()
            stopped.signal()
        }
        // The larger node speaks first: its frame waits (a housekeeping period at most; Raft
        // would send again, as this loop does) until the smaller one dials.
        #expect(eventually {
            high.send(to: 5, [GroupMessage(group: group, message: RaftMessage(kind: .heartbeat, from: 6, to: 5, term: 3))])
            return inboxLow.arrived.wait(timeout: .now() + 0.05) == .success
        })
        low.send(to: 6, [GroupMessage(group: group, message: RaftMessage(kind: .heartbeatResponse, from: 5, to: 6, term: 3))])
        #expect(inboxHigh.arrived.wait(timeout: .now() + 10) == .success)
        #expect(low.metrics.connectionsDialed.load(ordering: .relaxed) == 1)
        #expect(high.metrics.connectionsDialed.load(ordering: .relaxed) == 0)

        // Node 5 restarts (a new transport, same ID): its connection replaces the old one, and
        // what node 6 sends reaches the new node only.
        let restarted = PeerTransport(loop: loop, nodeID: 5, peers: [6: addressHigh], clusterSecret: "s", redialMs: 20) { inboxRestarted.take($0) }
        loop.execute {
            low.stop()
            _ = try? restarted.start(listen: loopback)
        }
        #expect(eventually { restarted.metrics.connectionsDialed.load(ordering: .relaxed) == 1 })
        // Until the new link is adopted, a frame may still go to the old, closed one: resend as Raft would.
        #expect(eventually {
            high.send(to: 5, [GroupMessage(group: group, message: RaftMessage(kind: .heartbeat, from: 6, to: 5, term: 4))])
            return inboxRestarted.arrived.wait(timeout: .now() + 0.05) == .success
        })

        loop.execute {
            restarted.stop()
            high.stop()
            loop.close()
        }
        #expect(stopped.wait(timeout: .now() + 10) == .success)
    }

    /// A multi-leader image piece travels like a Raft one: the sender hears whether it left
    /// (only over a link that is up), and the receiver gets it whole.
    @Test func multiLeaderPiecesTellWhetherTheyWereWritten() throws {
        let loop = try EventLoop()
        let received = Mutex<[ReplicationMessage]>([])
        let loopback = ListenAddress(host: "127.0.0.1", port: 0)
        let low = PeerTransport(loop: loop, nodeID: 5, peers: [:], clusterSecret: "s", redialMs: 20) { _ in }
        let high = PeerTransport(loop: loop, nodeID: 6, peers: [:], clusterSecret: "s",
                                 deliverReplication: { batch in received.withLock { $0 += batch } }) { _ in }
        let addressHigh = try high.start(listen: loopback)
        let addressLow = try low.start(listen: loopback)
        low.setAddress(of: 6, to: addressHigh)
        high.setAddress(of: 5, to: addressLow)
        let stopped = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            loop.run()
            stopped.signal()
        }
        let piece = ReplicationMessage(group: group, message: MultiLeaderMessage(
            kind: .imagePiece, from: 5, to: 6, source: 42, sequence: 3, entries: [Array(repeating: 9, count: 1000), [1, 2, 3]]))
        func send() -> Bool? {
            let answer = Mutex<Bool?>(nil), answered = DispatchSemaphore(value: 0)
            low.send(to: 6, [piece]) { written in
                answer.withLock { $0 = written }
                answered.signal()
            }
            return answered.wait(timeout: .now() + 10) == .success ? answer.withLock { $0 } : nil
        }
        // Dropped (false) until the link is up (a piece does not wait for one: the plain send dials it), then written.
        #expect(eventually {
            low.send(to: 6, [piece])
            return send() == true
        })
        #expect(eventually { received.withLock { $0.contains(piece) } })
        loop.execute { low.stop() }
        #expect(eventually { send() == false })

        loop.execute {
            high.stop()
            loop.close()
        }
        #expect(stopped.wait(timeout: .now() + 10) == .success)
    }

    /// A connection that never says who it is loses its slot after a silence.
    @Test func aConnectionWithoutHelloIsCut() throws {
        let loop = try EventLoop()
        let node = PeerTransport(loop: loop, nodeID: 7, peers: [:], clusterSecret: "s", pingMs: 10, silenceMs: 50) { _ in }
        let address = try node.start(listen: ListenAddress(host: "127.0.0.1", port: 0))
        let stopped = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            loop.run()
            stopped.signal()
        }
        let mute = RawClient()
        loop.execute { TCPStream.connect(loop: loop, to: address) { stream, _ in mute.stream = stream } }
        #expect(eventually { node.metrics.refusedFrames("unauthenticated") == 1 })
        loop.execute {
            mute.stream?.close()
            node.stop()
            loop.close()
        }
        #expect(stopped.wait(timeout: .now() + 10) == .success)
    }

    /// Two nodes that share the secret but not the cluster name never mix: each refuses the
    /// other's hello, counts it under `identity` and logs why (once per peer and reason per
    /// `PeerWarnings.intervalMs`, however often the pair redials), and no frame is delivered.
    @Test func nodesOfAnotherClusterAreRefusedAndBothSidesSayWhy() throws {
        let loop = try EventLoop()
        let inboxA = Inbox(), inboxB = Inbox(), logA = CapturedLog(), logB = CapturedLog()
        let loopback = ListenAddress(host: "127.0.0.1", port: 0)
        let a = PeerTransport(loop: loop, nodeID: 1, peers: [:], clusterSecret: "s", clusterName: "tidemark", logger: logA.logger,
                              redialMs: 20) { inboxA.take($0) }
        let b = PeerTransport(loop: loop, nodeID: 2, peers: [:], clusterSecret: "s", clusterName: "other", logger: logB.logger) { inboxB.take($0) }
        let addressA = try a.start(listen: loopback, clientAddress: "127.0.0.1:18081")
        let addressB = try b.start(listen: loopback, clientAddress: "127.0.0.1:18082")
        a.setAddress(of: 2, to: addressB)
        b.setAddress(of: 1, to: addressA)
        let stopped = runInBackground(loop)

        // Raft would send again and again; so does this loop, until each side refused a few hellos.
        #expect(eventually {
            a.send(to: 2, [GroupMessage(group: group, message: RaftMessage(kind: .vote, from: 1, to: 2, term: 5))])
            b.send(to: 1, [GroupMessage(group: group, message: RaftMessage(kind: .vote, from: 2, to: 1, term: 5))])
            return a.metrics.refusedFrames("identity") >= 3 && b.metrics.refusedFrames("identity") >= 3
        })
        #expect(logA.count(#"cluster name "other" differs from this node's "tidemark""#) == 1)
        #expect(logA.count("refused the internal connection with \(addressB)") == 1)
        #expect(logB.count(#"cluster name "tidemark" differs from this node's "other""#) == 1)
        #expect(inboxA.messages.withLock { $0.isEmpty } && inboxB.messages.withLock { $0.isEmpty })
        #expect(a.metrics.framesReceived.load(ordering: .relaxed) == 0 && b.metrics.framesReceived.load(ordering: .relaxed) == 0)
        // A refused hello teaches nothing; each node knows its own client address.
        #expect(a.clientAddress(of: 2) == nil && b.clientAddress(of: 1) == nil)
        #expect(a.clientAddress(of: 1) == "127.0.0.1:18081" && b.clientAddress(of: 2) == "127.0.0.1:18082")

        loop.execute {
            a.stop()
            b.stop()
            loop.close()
        }
        #expect(stopped.wait(timeout: .now() + 10) == .success)
    }

    /// Node 1 lists node 3 where node 2 should be: node 3 finds the hello is meant for node 2,
    /// node 1 that the node it dialed as node 2 says it is node 3; both refuse and log it.
    @Test func aNodeListedInAnotherPlaceIsRefusedOnBothSides() throws {
        let loop = try EventLoop()
        let logLow = CapturedLog(), logOther = CapturedLog()
        let loopback = ListenAddress(host: "127.0.0.1", port: 0)
        let low = PeerTransport(loop: loop, nodeID: 1, peers: [:], clusterSecret: "s", logger: logLow.logger, redialMs: 20) { _ in }
        let other = PeerTransport(loop: loop, nodeID: 3, peers: [:], clusterSecret: "s", logger: logOther.logger) { _ in }
        let addressLow = try low.start(listen: loopback)
        let addressOther = try other.start(listen: loopback)
        low.setAddress(of: 2, to: addressOther)
        other.setAddress(of: 1, to: addressLow)
        let stopped = runInBackground(loop)

        #expect(eventually {
            low.send(to: 2, [GroupMessage(group: group, message: RaftMessage(kind: .vote, from: 1, to: 2, term: 5))])
            return low.metrics.refusedFrames("identity") >= 1 && other.metrics.refusedFrames("identity") >= 1
        })
        #expect(logLow.count("the node at \(addressOther) says it is node 3; meta_peers lists it as node 2") == 1)
        #expect(logOther.count("takes this node for node 2; meta_peers lists this node as node 3") == 1)
        #expect(other.metrics.framesReceived.load(ordering: .relaxed) == 0)

        loop.execute {
            low.stop()
            other.stop()
            loop.close()
        }
        #expect(stopped.wait(timeout: .now() + 10) == .success)
    }

    /// Each side of a link learns the other's client address from its hello (for leader
    /// hints), and a healthy pair logs nothing.
    /// Control-plane calls: answered once each, with the peer's answer, its failure, a
    /// timeout, or the loss of the link; a node without a handler says so.
    @Test func callsAreAnsweredOnceWithTheAnswerOrWhyThereIsNone() throws {
        let loop = try EventLoop()
        let loopback = ListenAddress(host: "127.0.0.1", port: 0)
        let a = PeerTransport(loop: loop, nodeID: 1, peers: [:], clusterSecret: "s", silenceMs: 600_000) { _ in }
        let b = PeerTransport(loop: loop, nodeID: 2, peers: [:], clusterSecret: "s", silenceMs: 600_000) { _ in }
        b.handleCalls { _, method, body, reply in
            switch method {
            case 7: reply(.success(body.reversed()))
            case 8: reply(.failure(.failed("no such database root.x")))
            default: break  // never answers
            }
        }
        let addressA = try a.start(listen: loopback)
        let addressB = try b.start(listen: loopback)
        a.setAddress(of: 2, to: addressB)
        b.setAddress(of: 1, to: addressA)
        let stopped = runInBackground(loop)

        /// Calls and waits (bounded) for the one answer.
        func call(_ from: PeerTransport, _ node: UInt64, _ method: UInt16, _ body: [UInt8] = [], timeoutMs: UInt64 = 10_000) -> Result<[UInt8], PeerCallError>? {
            let answers = Mutex<[Result<[UInt8], PeerCallError>]>([]), done = DispatchSemaphore(value: 0)
            from.call(node, method: method, body: body, timeoutMs: timeoutMs) { result in
                answers.withLock { $0.append(result) }
                done.signal()
            }
            guard done.wait(timeout: .now() + 20) == .success else { return nil }
            return answers.withLock { $0.first }
        }
        #expect(call(a, 2, 7, [1, 2, 3]) == .success([3, 2, 1]))
        #expect(call(a, 2, 7, Array(repeating: 9, count: 1 << 20)) == .success(Array(repeating: 9, count: 1 << 20)))
        #expect(call(a, 2, 8) == .failure(.failed("no such database root.x")))
        #expect(call(a, 2, 9, timeoutMs: 300) == .failure(.timedOut(ms: 300)))
        #expect(call(a, 5, 7) == .failure(.unreachable("node 5 is not a known peer")))
        #expect(call(b, 1, 7) == .failure(.failed("node 1 takes no calls")))
        // A call in flight when the link goes down fails then, not at its deadline.
        let lost = Mutex<Result<[UInt8], PeerCallError>?>(nil), failed = DispatchSemaphore(value: 0)
        let sentBefore = a.metrics.framesSent.load(ordering: .relaxed)
        a.call(2, method: 9, body: [], timeoutMs: 600_000) { result in
            lost.withLock { $0 = result }
            failed.signal()
        }
        #expect(eventually { a.metrics.framesSent.load(ordering: .relaxed) > sentBefore }, "the call left")
        loop.execute { b.stop() }
        #expect(failed.wait(timeout: .now() + 20) == .success)
        #expect(lost.withLock { $0 } == .failure(.unreachable("the link to node 2 went down")))

        loop.execute {
            a.stop()
            loop.close()
        }
        #expect(stopped.wait(timeout: .now() + 10) == .success)
    }

    @Test func aPeersClientAddressIsLearnedFromItsHello() throws {
        let loop = try EventLoop()
        let inboxB = Inbox(), logA = CapturedLog(), logB = CapturedLog()
        let loopback = ListenAddress(host: "127.0.0.1", port: 0)
        // A long silence: a slow machine must not make this pair look deaf.
        let a = PeerTransport(loop: loop, nodeID: 1, peers: [:], clusterSecret: "s", logger: logA.logger, silenceMs: 600_000) { _ in }
        let b = PeerTransport(loop: loop, nodeID: 2, peers: [:], clusterSecret: "s", logger: logB.logger, silenceMs: 600_000) { inboxB.take($0) }
        let addressA = try a.start(listen: loopback, clientAddress: "127.0.0.1:18081")
        let addressB = try b.start(listen: loopback, clientAddress: "[::1]:18082")
        a.setAddress(of: 2, to: addressB)
        b.setAddress(of: 1, to: addressA)
        let stopped = runInBackground(loop)

        a.send(to: 2, [GroupMessage(group: group, message: RaftMessage(kind: .vote, from: 1, to: 2, term: 5))])
        #expect(inboxB.arrived.wait(timeout: .now() + 10) == .success)
        #expect(b.clientAddress(of: 1) == "127.0.0.1:18081")
        #expect(eventually { a.clientAddress(of: 2) == "[::1]:18082" })
        #expect(a.clientAddress(of: 3) == nil)
        #expect(logA.handler.entries.isEmpty && logB.handler.entries.isEmpty)
        // Too long for a hello: the transport does not start.
        let long = PeerTransport(loop: loop, nodeID: 3, peers: [:], clusterSecret: "s", clusterName: String(repeating: "x", count: 65)) { _ in }
        let refused = Mutex<String?>(nil), answered = DispatchSemaphore(value: 0)
        loop.execute {
            do {
                _ = try long.start(listen: loopback)
            } catch {
                refused.withLock { $0 = "\(error)" }
            }
            answered.signal()
        }
        #expect(answered.wait(timeout: .now() + 10) == .success)
        #expect(refused.withLock { $0 }?.contains("cluster_name takes 65 bytes") == true)

        loop.execute {
            a.stop()
            b.stop()
            long.stop()
            loop.close()
        }
        #expect(stopped.wait(timeout: .now() + 10) == .success)
    }

    /// A node with another secret: the side that receives its frames logs that they fail
    /// authentication (once, however often it redials), and a node that hears no peer for a
    /// whole silence says so, naming the peers it tried.
    @Test func aWrongSecretIsLogged() throws {
        let loop = try EventLoop()
        let logLow = CapturedLog(), logHigh = CapturedLog()
        let loopback = ListenAddress(host: "127.0.0.1", port: 0)
        let low = PeerTransport(loop: loop, nodeID: 1, peers: [:], clusterSecret: "one secret", logger: logLow.logger,
                                redialMs: 20, pingMs: 10, silenceMs: 200) { _ in }
        let high = PeerTransport(loop: loop, nodeID: 2, peers: [:], clusterSecret: "another secret", logger: logHigh.logger,
                                 pingMs: 10, silenceMs: 200) { _ in }
        let addressLow = try low.start(listen: loopback)
        let addressHigh = try high.start(listen: loopback)
        low.setAddress(of: 2, to: addressHigh)
        high.setAddress(of: 1, to: addressLow)
        let stopped = runInBackground(loop)

        #expect(eventually { high.metrics.refusedFrames("unauthenticated") >= 3 })
        #expect(logHigh.count("fail authentication: cluster_secret probably differs") == 1)
        // Both are deaf: the receiving side knows why, the dialer only that nobody answers.
        #expect(eventually { logHigh.count("no authenticated frame from any peer for 200 ms (tried node 1 at \(addressLow))") == 1 })
        #expect(eventually { logLow.count("no authenticated frame from any peer for 200 ms (tried node 2 at \(addressHigh))") == 1 })
        #expect(logLow.count("fail authentication") == 0)

        loop.execute {
            low.stop()
            high.stop()
            loop.close()
        }
        #expect(stopped.wait(timeout: .now() + 10) == .success)
    }
}
