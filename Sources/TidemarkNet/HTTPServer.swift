import CLibUV
import TidemarkCore
#if canImport(Glibc)
import Glibc
#endif

/// What the request handler did with a request.
public enum HandOff: Sendable {
    /// Taken; the handler answers later through the responder.
    case accepted
    /// Refused now with this response (e.g. 503 when a stage is full under `reject`).
    case rejected(HTTPResponse)
    /// Not taken yet: the stage is full under `block`. The edge stops reading the
    /// connection and offers the request again when `whenSpace` is called.
    case deferred
}

/// What the handler decided about a request from its head, before its body is read.
public enum Admission: Sendable {
    /// Read the body and hand the request on; `as` is the caller found behind its credentials.
    case admit(as: String?)
    /// Answer this instead. A request whose body has not been read is answered with
    /// `Connection: close`; one without a body keeps the connection.
    case refuse(HTTPResponse)
    /// Deciding takes work elsewhere: the connection reads nothing more until the decision
    /// arrives through the `HTTPAdmissionDecision`.
    case pending
}

/// Receives every request on the loop thread; it must not block.
public protocol HTTPRequestHandler: Sendable {
    /// Called with a request's head (its body empty) once its headers are in, before any
    /// of its body is read. `client` is the peer's IPv4 address, or its IPv6 /64 prefix
    /// (`TCPAddress.peerHost`), for per-client limits.
    func admit(_ head: HTTPRequest, client: String, decision: HTTPAdmissionDecision) -> Admission
    /// Called with each whole request that was admitted.
    func handle(_ request: HTTPRequest, responder: HTTPResponder, whenSpace: @escaping @Sendable () -> Void) -> HandOff
}

extension HTTPRequestHandler {
    /// By default every request is read whole and handed on.
    public func admit(_ head: HTTPRequest, client: String, decision: HTTPAdmissionDecision) -> Admission { .admit(as: nil) }
}

/// Sends the decision about one pending head (`Admission.pending`), from any thread, once.
public struct HTTPAdmissionDecision: Sendable {
    let server: HTTPServer
    let connectionID: UInt64
    let sequence: UInt64

    public func admit(as user: String?) { send(.admit(as: user)) }

    public func refuse(_ response: HTTPResponse) { send(.refuse(response)) }

    private func send(_ admission: Admission) {
        let server = server, connectionID = connectionID, sequence = sequence
        server.loop.execute { server.decided(admission, connectionID: connectionID, sequence: sequence) }
    }
}

/// Sends the one response for one request, from any thread.
public struct HTTPResponder: Sendable {
    let server: HTTPServer
    let connectionID: UInt64
    let sequence: UInt64

    public func respond(_ response: HTTPResponse) {
        let server = server, connectionID = connectionID, sequence = sequence
        server.loop.execute { server.deliver(response, connectionID: connectionID, sequence: sequence) }
    }
}

/// The HTTP/1.1 server of the libuv edge: accepts connections, frames requests,
/// hands them to the handler, and writes responses in request order.
///
/// `@unchecked Sendable`: everything but `loop` and `metrics` is touched only on
/// the loop thread; other threads reach it through `HTTPResponder` and `loop.execute`.
public final class HTTPServer: @unchecked Sendable {
    /// Route label for responses the edge makes itself (400, 408, 413, 431, connection limit).
    public static let edgeRoute = "edge"

    public let loop: EventLoop
    public let settings: HTTPSettings
    public let metrics: HTTPMetrics
    let handler: HTTPRequestHandler

    private var listener: UnsafeMutablePointer<uv_tcp_t>?
    private var sweepTimer: UnsafeMutablePointer<uv_timer_t>?
    private var connections: [UInt64: HTTPConnection] = [:]
    private var nextConnectionID: UInt64 = 1
    /// Request body bytes reserved by connections now; at most `settings.bodyBytesInFlightMax`.
    private var bodyBytesInFlight = 0
    /// Reply bytes waiting to be sent on every connection.
    private(set) var replyBytesPending = 0
    private(set) var draining = false
    private var whenClosed: (() -> Void)?
    /// Shared by every read: callbacks run one at a time on the loop thread, and what a
    /// connection cannot decode at once it copies out.
    let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
    /// The Date header value, refreshed by the sweep timer.
    private(set) var httpDate: [UInt8] = []

    public init(loop: EventLoop, settings: HTTPSettings, metrics: HTTPMetrics = HTTPMetrics(), handler: HTTPRequestHandler) {
        self.loop = loop
        self.settings = settings
        self.metrics = metrics
        self.handler = handler
    }

    deinit { readBuffer.deallocate() }

    /// Binds and listens; returns the bound address (the real port when 0 was asked for).
    public func start() throws(UVError) -> ListenAddress {
        let address = try bind()
        try listen()
        return address
    }

    /// Binds the port without taking connections yet (they are refused until `listen`), so
    /// the address is known, and taken, before the node is ready to answer.
    public func bind() throws(UVError) -> ListenAddress {
        loop.assertInLoop()
        precondition(listener == nil, "bind() called twice")
        let tcp = UnsafeMutablePointer<uv_tcp_t>.allocate(capacity: 1)
        guard uv_tcp_init(loop.loop, tcp) == 0 else {
            tcp.deallocate()
            throw UVError(code: UV_ENOMEM.rawValue, operation: "uv_tcp_init")
        }
        tcp.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        do throws(UVError) {
            try TCPAddress.bind(tcp, settings.listen)
            // libuv reports a taken port late (at listen or here): name the address it is about.
            let address: ListenAddress
            do throws(UVError) { address = try boundAddress(tcp) } catch { throw UVError(code: error.code, operation: "bind \(settings.listen)") }
            listener = tcp
            return address
        } catch {
            closeAndFree(tcp)
            throw error
        }
    }

    /// Starts taking connections on the bound port.
    public func listen() throws(UVError) {
        loop.assertInLoop()
        guard let tcp = listener else { preconditionFailure("listen() before bind()") }
        try uvCheck("listen \(settings.listen)", uv_listen(UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_stream_t.self), 511) { stream, status in
            Unmanaged<HTTPServer>.fromOpaque(stream!.pointee.data).takeUnretainedValue().accept(status: status)
        })
        startSweep()
    }

    /// Stops accepting, lets in-flight requests finish, closes idle connections;
    /// `whenClosed` runs on the loop once every connection is closed.
    public func shutdown(whenClosed: @escaping () -> Void) {
        loop.assertInLoop()
        guard !draining else { return }
        draining = true
        self.whenClosed = whenClosed
        if let listener {
            closeAndFree(listener)
            self.listener = nil
        }
        for connection in Array(connections.values) { connection.beginDrain() }
        finishShutdownIfDone()
    }

    /// Closes every connection at once, answered or not (the shutdown bound has passed).
    public func closeAllConnections() {
        loop.assertInLoop()
        for connection in Array(connections.values) { connection.close() }
    }

    public var connectionCount: Int { connections.count }

    // MARK: - Loop-thread internals

    func deliver(_ response: HTTPResponse, connectionID: UInt64, sequence: UInt64) {
        // The connection may have closed meanwhile; its answer then has nowhere to go.
        connections[connectionID]?.deliver(response, sequence: sequence)
    }

    func retryDeferred(connectionID: UInt64) {
        connections[connectionID]?.retryDeferred()
    }

    func decided(_ admission: Admission, connectionID: UInt64, sequence: UInt64) {
        connections[connectionID]?.decided(admission, sequence: sequence)
    }

    // MARK: - Node-wide byte budgets (loop thread)

    /// Reserves `count` body bytes from the node's budget; false when they do not fit.
    func reserveBodyBytes(_ count: Int) -> Bool {
        guard count <= settings.bodyBytesInFlightMax - bodyBytesInFlight else { return false }
        bodyBytesInFlight += count
        metrics.bodyBytesInFlight.store(bodyBytesInFlight, ordering: .relaxed)
        return true
    }

    func releaseBodyBytes(_ count: Int) {
        precondition(count >= 0 && count <= bodyBytesInFlight, "releasing body bytes never reserved")
        bodyBytesInFlight -= count
        metrics.bodyBytesInFlight.store(bodyBytesInFlight, ordering: .relaxed)
    }

    func addReplyBytes(_ count: Int) {
        replyBytesPending += count
        metrics.replyBytesPending.store(replyBytesPending, ordering: .relaxed)
    }

    func removeReplyBytes(_ count: Int) {
        precondition(count >= 0 && count <= replyBytesPending, "removing reply bytes never added")
        replyBytesPending -= count
        metrics.replyBytesPending.store(replyBytesPending, ordering: .relaxed)
    }

    func connectionClosed(_ id: UInt64) {
        guard connections.removeValue(forKey: id) != nil else { return }
        metrics.openConnections.subtract(1, ordering: .relaxed)
        finishShutdownIfDone()
    }

    private func finishShutdownIfDone() {
        guard draining, connections.isEmpty, let whenClosed else { return }
        self.whenClosed = nil
        if let sweepTimer {
            uv_timer_stop(sweepTimer)
            closeAndFree(sweepTimer)
            self.sweepTimer = nil
        }
        whenClosed()
    }

    private func accept(status: Int32) {
        guard status >= 0, let listener, !draining else { return }
        let id = nextConnectionID
        nextConnectionID += 1
        let overLimit = connections.count >= settings.connectionsMax
        guard let connection = HTTPConnection(server: self, id: id, listener: listener) else { return }
        connections[id] = connection
        metrics.openConnections.add(1, ordering: .relaxed)
        metrics.acceptedConnections.add(1, ordering: .relaxed)
        if overLimit {
            metrics.refusedConnections.add(1, ordering: .relaxed)
            connection.refuse(HTTPResponse.error(503, "too many connections (connections_max is \(settings.connectionsMax))", route: Self.edgeRoute))
        } else {
            connection.startReading()
        }
    }

    private func startSweep() {
        let timer = UnsafeMutablePointer<uv_timer_t>.allocate(capacity: 1)
        uv_timer_init(loop.loop, timer)
        timer.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        sweepTimer = timer
        refreshDate()
        // Often enough to hold a timeout within a quarter of itself, and to keep the Date header current.
        let intervalMs = UInt64(max(10, min(1000, min(settings.idleTimeoutMs, settings.requestTimeoutMs) / 4)))
        uv_timer_start(timer, { timer in
            Unmanaged<HTTPServer>.fromOpaque(timer!.pointee.data).takeUnretainedValue().sweep()
        }, intervalMs, intervalMs)
    }

    private func sweep() {
        refreshDate()
        let nowMs = loop.nowMs
        for connection in Array(connections.values) { connection.checkTimeouts(nowMs: nowMs) }
    }

    private func refreshDate() {
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        var buffer = [CChar](repeating: 0, count: 64)
        let count = strftime(&buffer, buffer.count, "%a, %d %b %Y %H:%M:%S GMT", &parts)
        httpDate = buffer[0..<count].map { UInt8(bitPattern: $0) }
    }

    private func boundAddress(_ tcp: UnsafeMutablePointer<uv_tcp_t>) throws(UVError) -> ListenAddress {
        try TCPAddress.bound(tcp, host: settings.listen.host)
    }
}
