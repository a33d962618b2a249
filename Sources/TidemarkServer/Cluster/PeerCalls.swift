import TidemarkConsensus
import TidemarkCore

/// Why a call to a peer got no answer.
public enum PeerCallError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The peer is not known, or its link went down before it answered.
    case unreachable(String)
    /// No answer within the call's time.
    case timedOut(ms: UInt64)
    /// The peer answered that it could not do it, and why.
    case failed(String)
    /// Too many calls wait for answers already; try again later.
    case busy

    public var description: String {
        switch self {
        case .unreachable(let why): "peer unreachable: \(why)"
        case .timedOut(let ms): "no answer within \(ms) ms"
        case .failed(let why): why
        case .busy: "too many calls in flight"
        }
    }
}

/// Answers a peer's call: who called, the method, its body, and how to reply (exactly once,
/// from any thread). Runs on the loop: hand the work to a stage, never block here.
public typealias PeerCallHandler = @Sendable (_ from: UInt64, _ method: UInt16, _ body: [UInt8],
                                              _ reply: @escaping @Sendable (Result<[UInt8], PeerCallError>) -> Void) -> Void

/// The calls this node made that wait for answers (loop thread only), and who answers calls.
final class PeerCallTable: @unchecked Sendable {
    struct Pending {
        let node: UInt64
        let deadlineNs: UInt64
        let timeoutMs: UInt64
        let completion: @Sendable (Result<[UInt8], PeerCallError>) -> Void
    }

    /// Calls that may wait for answers at once; past it a call fails `busy` at once.
    static let pendingMax = 4096
    var pending: [UInt64: Pending] = [:]
    var nextID: UInt64 = 1
    var handler: PeerCallHandler?

    /// Removes and returns the calls to `node` (its link went down: their answers are lost).
    func takeAll(to node: UInt64) -> [Pending] {
        let lost = pending.filter { $0.value.node == node }
        for id in lost.keys { pending[id] = nil }
        return lost.sorted { $0.key < $1.key }.map(\.value)
    }

    /// Removes and returns the calls past their deadline.
    func takeExpired(nowNs: UInt64) -> [Pending] {
        let expired = pending.filter { $0.value.deadlineNs <= nowNs }
        for id in expired.keys { pending[id] = nil }
        return expired.sorted { $0.key < $1.key }.map(\.value)
    }
}

/// Control-plane calls between nodes (register, fetch partitions, a route map): a request
/// rides the link to its peer like Raft's frames, the answer comes back on the peer's link
/// to this node, matched by id. Each call is answered exactly once: with the peer's answer,
/// or with why there is none (timed out, the link went down, too many in flight).
extension PeerTransport {
    /// Answers calls from peers with `handler` (set before `start`).
    public func handleCalls(_ handler: @escaping PeerCallHandler) {
        loop.execute { [self] in calls.handler = handler }
    }

    /// Calls `method` on `node` with `body`; `completion` runs once, on the loop (it must not
    /// block), with the answer or why there is none within `timeoutMs`.
    public func call(_ node: UInt64, method: UInt16, body: [UInt8], timeoutMs: UInt64,
                     completion: @escaping @Sendable (Result<[UInt8], PeerCallError>) -> Void) {
        precondition(timeoutMs > 0, "a call waits a while at most")
        loop.execute { [self] in
            guard !stopped else { return completion(.failure(.unreachable("the transport is stopped"))) }
            guard hasAddress(of: node) else { return completion(.failure(.unreachable("node \(node) is not a known peer"))) }
            guard calls.pending.count < PeerCallTable.pendingMax else { return completion(.failure(.busy)) }
            let id = calls.nextID
            calls.nextID += 1
            calls.pending[id] = PeerCallTable.Pending(node: node, deadlineNs: monotonicNowNs() + timeoutMs * 1_000_000,
                                                      timeoutMs: timeoutMs, completion: completion)
            sendCalls([PeerCall(id: id, kind: .request, method: method, body: body)], to: node)
        }
    }

    /// Frames' calls from `node` (on the loop): requests go to the handler, answers to the calls waiting for them.
    func receive(_ incoming: [PeerCall], from node: UInt64) {
        for item in incoming {
            switch item.kind {
            case .request:
                let reply: @Sendable (Result<[UInt8], PeerCallError>) -> Void = { [self] result in
                    let answer: PeerCall = switch result {
                    case .success(let body): PeerCall(id: item.id, kind: .response, method: item.method, body: body)
                    case .failure(let error): PeerCall(id: item.id, kind: .failure, method: item.method, body: Array("\(error)".utf8))
                    }
                    loop.execute { [self] in sendCalls([answer], to: node) }
                }
                guard let handler = calls.handler else {
                    reply(.failure(.failed("node \(nodeID) takes no calls")))
                    continue
                }
                handler(node, item.method, item.body, reply)
            case .response, .failure:
                // An answer from another node than the one called is not this call's.
                guard let waiting = calls.pending[item.id], waiting.node == node else { continue }
                calls.pending[item.id] = nil
                waiting.completion(item.kind == .response ? .success(item.body) : .failure(.failed(String(decoding: item.body, as: UTF8.self))))
            }
        }
    }

    /// Fails the calls past their time (housekeeping, on the loop).
    func expireCalls(nowNs: UInt64) {
        for call in calls.takeExpired(nowNs: nowNs) { call.completion(.failure(.timedOut(ms: call.timeoutMs))) }
    }

    /// Fails the calls to `node`, whose link went down (on the loop).
    func failCalls(to node: UInt64) {
        for call in calls.takeAll(to: node) { call.completion(.failure(.unreachable("the link to node \(node) went down"))) }
    }

    private func sendCalls(_ items: [PeerCall], to node: UInt64) {
        write(FrameCodec.prepare(RaftFrame(from: nodeID, to: node, messages: [], calls: items), authenticator: authenticator), to: node)
    }
}
