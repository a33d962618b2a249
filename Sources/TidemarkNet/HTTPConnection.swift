import CLibUV
import DequeModule

/// One client connection on the loop thread: reads, frames requests, keeps their
/// responses in request order, writes them, and applies the edge's limits.
///
/// Owns its `uv_tcp_t`: `handle.data` holds a retained reference to self,
/// released in the `uv_close` callback, so the object lives exactly as long as the handle.
final class HTTPConnection {
    /// A request awaiting its response, in arrival order.
    private struct Slot {
        var keepAlive: Bool
        let headOnly: Bool
        let http10: Bool
        var response: HTTPResponse?
        /// Node body budget the request holds until it is answered.
        var bodyBytes = 0
    }

    /// Where the request being decoded stands between its head and its end.
    private enum HeadState {
        /// No head yet, or its body is being read.
        case none
        /// The handler is deciding (`Admission.pending`); nothing more is read meanwhile.
        case awaitingAdmission(head: HTTPRequest, continueRequested: Bool, sequence: UInt64)
        /// Refused, and it has no body: the refusal answers it once its end is decoded.
        case refused(HTTPResponse)
        /// Admitted, but its declared body would take the connection past
        /// `connectionBodyBytesMax`: nothing more is read until earlier requests are answered
        /// and release theirs (`takeBodyRoom`), as past `pipelineDepthMax`. (Refusing it would
        /// turn a client that pipelines large writes into one that gets 503s it did not cause.)
        case awaitingBodyRoom(declared: Int, continueRequested: Bool)
    }

    let id: UInt64
    private unowned let server: HTTPServer
    private let handle: UnsafeMutablePointer<uv_tcp_t>
    private let decoder: HTTPRequestDecoder
    /// The client the peer counts as for the handler's per-client limits (its IPv4 address
    /// or IPv6 /64, set once accepted).
    private var client = ""

    private var slots = Deque<Slot>()
    private var nextSequence: UInt64 = 0  // sequence of the next request to arrive
    private var firstSlotSequence: UInt64 = 0  // sequence of slots.first
    private var pendingInput: [UInt8] = []  // read but not yet decoded
    private var pendingOffset = 0
    private var deferred: (request: HTTPRequest, sequence: UInt64)?
    private var continueOwed = false
    private var reading = false
    private var closing = false
    private var draining = false
    private var peerClosed = false
    /// No more requests will be read; close once every slot is written.
    private var closeAfterWrites = false
    private var writesInFlight = 0
    /// A decode loop is running: a response delivered from inside it (a rejection) must
    /// not start another decode over the same bytes; the loop re-checks when it returns.
    private var decoding = false
    private var lastActivityMs: UInt64
    private var requestStartMs: UInt64?
    private var headState = HeadState.none
    /// The caller the handler admitted the request being decoded as.
    private var admittedAs: String?
    /// Node body budget this connection holds for the request being decoded; once it is
    /// decoded, its slot holds it until the request is answered.
    private var bodyBytesReserved = 0
    /// The request being decoded was admitted with a chunked body, which has no declared
    /// length: it takes budget as its bytes are decoded (`HTTPDecodeStep.bodyBytes`).
    private var bodyChunked = false
    /// Node body budget held by the decoded requests in `slots` (the sum of their `bodyBytes`).
    private var bodyBytesInSlots = 0
    /// Bodies of responses delivered out of order, held in `slots` until their turn.
    private var replyBytesHeld = 0
    /// Bytes handed to libuv and not yet written to the socket.
    private var replyBytesWriting = 0
    /// Reply bytes of this connection waiting to be sent.
    private var replyBytesPending: Int { replyBytesHeld + replyBytesWriting }
    /// When the last answer went out while the client may still be sending a request the
    /// edge will not read (a refused body): input is then dropped until the client closes or
    /// `lingerMsMax` passes, because closing on unread input sends a reset, which can make
    /// the client lose the answer before reading it (nginx's lingering close).
    private var lingerStartMs: UInt64?
    private var lingerBytes = 0

    /// Accepts a pending connection from `listener`; nil if the accept failed.
    init?(server: HTTPServer, id: UInt64, listener: UnsafeMutablePointer<uv_tcp_t>) {
        self.id = id
        self.server = server
        self.decoder = HTTPRequestDecoder(headerBytesMax: server.settings.headerBytesMax, bodyBytesMax: server.settings.bodyBytesMax)
        self.lastActivityMs = server.loop.nowMs
        handle = .allocate(capacity: 1)
        uv_tcp_init(server.loop.loop, handle)
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
        guard uv_accept(Self.stream(listener), stream) == 0 else {
            closing = true
            uv_close(handlePointer, Self.onClose)
            return nil
        }
        uv_tcp_nodelay(handle, 1)
        client = TCPAddress.peerHost(handle)
    }

    private var stream: UnsafeMutablePointer<uv_stream_t> { Self.stream(handle) }
    private var handlePointer: UnsafeMutablePointer<uv_handle_t> {
        UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self)
    }
    private static func stream(_ tcp: UnsafeMutablePointer<uv_tcp_t>) -> UnsafeMutablePointer<uv_stream_t> {
        UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_stream_t.self)
    }
    private static func connection(_ handle: UnsafeMutableRawPointer) -> HTTPConnection {
        Unmanaged<HTTPConnection>.fromOpaque(handle.assumingMemoryBound(to: uv_handle_t.self).pointee.data).takeUnretainedValue()
    }

    func startReading() { updateReading() }

    /// Answers with `response` and closes, reading nothing (connection limit).
    func refuse(_ response: HTTPResponse) {
        closeAfterWrites = true
        replyBytesHeld += response.body.count
        server.addReplyBytes(response.body.count)
        slots.append(Slot(keepAlive: false, headOnly: false, http10: false, response: response))
        nextSequence += 1
        flushWrites()
    }

    /// Shutdown: read no more requests; finish the ones in flight, then close.
    func beginDrain() {
        draining = true
        closeAfterWrites = true
        if slots.isEmpty && deferred == nil { close() } else { updateReading() }
    }

    func deliver(_ response: HTTPResponse, sequence: UInt64) {
        guard !closing, sequence >= firstSlotSequence, sequence < firstSlotSequence + UInt64(slots.count) else { return }
        let index = Int(sequence - firstSlotSequence)
        precondition(slots[index].response == nil, "two responses for one request")
        var response = response
        let settings = server.settings
        let overConnection = replyBytesPending + response.body.count > settings.connectionReplyBytesMax
        let overNode = server.replyBytesPending > 0 && server.replyBytesPending + response.body.count > settings.replyBytesPendingMax
        if replyBytesPending > 0 && (overConnection || overNode) {
            // It pipelines faster than it reads, and the node would hold every reply: cut it.
            // A client that reads each answer before asking again never has bytes waiting here.
            server.metrics.replyBudgetCloses.add(1, ordering: .relaxed)
            close()
            return
        }
        if overNode && response.body.count > Self.replyBytesAlwaysSent {
            // Other connections hold the node's reply budget: a large answer (a query's, which
            // changes nothing, so it may simply be asked again) is refused instead of held.
            server.metrics.replyBudgetRefusals.add(1, ordering: .relaxed)
            response = .error(503, "the node holds too many unsent replies (http.reply_bytes_pending_max is \(settings.replyBytesPendingMax)); retry later",
                              route: response.route)
        }
        let bytes = response.body.count
        slots[index].response = response
        replyBytesHeld += bytes
        server.addReplyBytes(bytes)
        flushWrites()
    }

    func retryDeferred() {
        guard !closing, let pending = deferred else { return }
        deferred = nil
        dispatch(pending.request, sequence: pending.sequence)
        updateReading()
    }

    /// The handler's decision about the head it answered `.pending` for.
    func decided(_ admission: Admission, sequence: UInt64) {
        guard !closing, case .awaitingAdmission(let head, let continueRequested, let expected) = headState,
              expected == sequence else { return }
        headState = .none
        apply(admission, head: head, continueRequested: continueRequested)
        updateReading()
        closeIfFinished()
    }

    func checkTimeouts(nowMs: UInt64) {
        guard !closing else { return }
        if let lingerStartMs {
            if nowMs >= lingerStartMs + Self.lingerMsMax { close() }
            return
        }
        let settings = server.settings
        // Only a request the edge is reading can be slow; one it paused is waiting on the node.
        if let started = requestStartMs, decoder.isInsideRequest, reading, !closeAfterWrites,
           nowMs >= started + UInt64(settings.requestTimeoutMs) {
            answerAndClose(HTTPDecodeError(status: 408, reason: "request not received within \(settings.requestTimeoutMs) ms"))
        } else if slots.isEmpty && deferred == nil && !decoder.isInsideRequest && pendingInput.count == pendingOffset,
                  nowMs >= lastActivityMs + UInt64(settings.idleTimeoutMs) {
            close()
        }
    }

    func close() {
        guard !closing else { return }
        closing = true
        // Budgets come back now; bytes being written come back as libuv cancels their writes.
        server.releaseBodyBytes(bodyBytesReserved + bodyBytesInSlots)
        bodyBytesReserved = 0
        bodyBytesInSlots = 0
        server.removeReplyBytes(replyBytesHeld)
        replyBytesHeld = 0
        if reading { uv_read_stop(stream) }
        reading = false
        uv_close(handlePointer, Self.onClose)
        server.connectionClosed(id)
    }

    // MARK: - Reading and decoding

    /// The limits allow taking another request from the input already read.
    private var canDecode: Bool {
        guard case .none = headState else { return awaitsRefusedEnd }
        return !closing && !closeAfterWrites && !decoder.isFinished && deferred == nil
            && slots.count < server.settings.pipelineDepthMax
            && replyBytesPending < server.settings.writeBufferBytesMax
            && !chunkedBodyOverConnectionBound
    }

    /// A chunked body being read has taken the connection to `connectionBodyBytesMax` while
    /// earlier requests still hold some: it is read on once they are answered. (Alone it is
    /// bounded by `bodyBytesMax`.) The bound is checked between reads, so a chunked body may
    /// pass it by one read.
    private var chunkedBodyOverConnectionBound: Bool {
        bodyChunked && bodyBytesInSlots > 0 && bodyBytesInSlots + bodyBytesReserved >= server.settings.connectionBodyBytesMax
    }

    /// A refused request without a body only has its end left to decode.
    private var awaitsRefusedEnd: Bool {
        guard case .refused = headState else { return false }
        return !closing && !closeAfterWrites && !decoder.isFinished
    }

    /// The limits allow reading more from the socket.
    private var shouldRead: Bool { canDecode && !peerClosed }

    /// Starts or stops reading to match the limits, decoding what is buffered first.
    private func updateReading() {
        guard !decoding, lingerStartMs == nil else { return }
        if canDecode && pendingOffset < pendingInput.count {
            let offset = pendingOffset
            pendingOffset += pendingInput.withUnsafeBytes { bytes in
                decode(UnsafeRawBufferPointer(rebasing: bytes[offset...]))
            }
            if pendingOffset == pendingInput.count {
                pendingInput.removeAll(keepingCapacity: true)
                pendingOffset = 0
            }
        }
        let wanted = shouldRead
        if wanted && !reading {
            startReadCallbacks()
        } else if !wanted && reading {
            reading = false
            uv_read_stop(stream)
        }
    }

    private func startReadCallbacks() {
        reading = true
        uv_read_start(stream, { handle, _, buffer in
            let server = HTTPConnection.connection(UnsafeMutableRawPointer(handle!)).server
            buffer!.pointee = uv_buf_init(server.readBuffer.baseAddress!.assumingMemoryBound(to: CChar.self), UInt32(server.readBuffer.count))
        }, { stream, count, buffer in
            HTTPConnection.connection(UnsafeMutableRawPointer(stream!)).onRead(count: count, buffer: buffer!.pointee)
        })
    }

    private func onRead(count: Int, buffer: uv_buf_t) {
        if lingerStartMs != nil {
            // Dropped unread (the shared read buffer holds it): only the amount is bounded.
            lingerBytes += max(count, 0)
            if count < 0 || lingerBytes > Self.lingerBytesMax { close() }
            return
        }
        guard count >= 0 else {
            if Int32(count) == UV_EOF.rawValue {
                // The client sent all it will (it may only have shut down its side):
                // answer every whole request it sent, then close.
                peerClosed = true
                updateReading()
                closeIfFinished()
            } else {
                close()
            }
            return
        }
        guard count > 0 else { return }
        lastActivityMs = server.loop.nowMs
        if !decoder.isInsideRequest && requestStartMs == nil { requestStartMs = lastActivityMs }
        let bytes = UnsafeRawBufferPointer(start: buffer.base, count: count)
        if pendingOffset == pendingInput.count {
            // Nothing buffered: decode straight from the read buffer and keep only the rest.
            let consumed = canDecode ? decode(bytes) : 0
            pendingInput.removeAll(keepingCapacity: true)
            pendingOffset = 0
            if consumed < count { pendingInput.append(contentsOf: bytes[consumed...]) }
        } else {
            pendingInput.append(contentsOf: bytes)
        }
        updateReading()
    }

    /// Decodes requests from `bytes` while the limits allow; returns the bytes consumed.
    private func decode(_ bytes: UnsafeRawBufferPointer) -> Int {
        precondition(!decoding, "decode is not re-entrant")
        decoding = true
        defer { decoding = false }
        var offset = 0
        while offset < bytes.count && canDecode {
            let step = decoder.feed(UnsafeRawBufferPointer(rebasing: bytes[offset...]))
            offset += step.consumed
            if let head = step.head {
                let decision = HTTPAdmissionDecision(server: server, connectionID: id, sequence: nextSequence)
                let admission = server.handler.admit(head, client: client, decision: decision)
                if case .pending = admission {
                    headState = .awaitingAdmission(head: head, continueRequested: step.continueRequested, sequence: nextSequence)
                } else {
                    apply(admission, head: head, continueRequested: step.continueRequested)
                }
            }
            if bodyChunked && step.bodyBytes > 0 {
                // Before the request is handed on, so the bytes of its last piece count too.
                guard reserveBody(step.bodyBytes) else { return bytes.count }
            }
            if let request = step.request { requestEnded(request) }
            if let error = step.error {
                answerAndClose(error)
                return bytes.count
            }
            if step.consumed == 0 && step.head == nil { break }
        }
        return offset
    }

    /// Acts on the handler's decision about a head: read on, or answer the refusal.
    private func apply(_ admission: Admission, head: HTTPRequest, continueRequested: Bool) {
        switch admission {
        case .admit(let user):
            admittedAs = user
            bodyChunked = decoder.declaredBodyBytes == nil
            let declared = decoder.declaredBodyBytes ?? 0
            if declared > 0 && bodyBytesInSlots > 0 && bodyBytesInSlots + declared > server.settings.connectionBodyBytesMax {
                headState = .awaitingBodyRoom(declared: declared, continueRequested: continueRequested)
                return
            }
            startBody(declared: declared, continueRequested: continueRequested)
        case .refuse(let response):
            if decoder.declaredBodyBytes == 0 {
                headState = .refused(response)  // nothing to skip: answer it in turn, keep the connection
            } else {
                answerAndClose(response)  // its body was never read, so nothing after it can be
            }
        case .pending:
            preconditionFailure("a decision cannot be pending again")
        }
    }

    /// Reserves an admitted request's declared body and lets the client send it.
    private func startBody(declared: Int, continueRequested: Bool) {
        if declared > 0 && !reserveBody(declared) { return }
        if continueRequested {
            if slots.isEmpty { writeBytes(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)) } else { continueOwed = true }
        }
    }

    /// Earlier requests released body budget: a body waiting for room on this connection
    /// starts once it fits (always once they have all been answered).
    private func takeBodyRoom() {
        guard !closing, !closeAfterWrites, case .awaitingBodyRoom(let declared, let continueRequested) = headState,
              bodyBytesInSlots == 0 || bodyBytesInSlots + declared <= server.settings.connectionBodyBytesMax else { return }
        headState = .none
        requestStartMs = server.loop.nowMs  // the wait was the node's, not a slow client's
        startBody(declared: declared, continueRequested: continueRequested)
    }

    /// Takes `count` more bytes of the node's body budget for the request being decoded;
    /// when they do not fit, answers 503 and closes (nothing more of it is read).
    private func reserveBody(_ count: Int) -> Bool {
        guard server.reserveBodyBytes(count) else {
            server.metrics.bodyBudgetRefusals.add(1, ordering: .relaxed)
            let limit = server.settings.bodyBytesInFlightMax
            answerAndClose(.error(503, "the node holds too many request bodies (http.body_bytes_in_flight_max is \(limit)); retry later",
                                  route: HTTPServer.edgeRoute))
            return false
        }
        bodyBytesReserved += count
        return true
    }

    /// A whole request was decoded: hand it on, or answer the refusal of its head.
    private func requestEnded(_ request: HTTPRequest) {
        requestStartMs = decoder.isInsideRequest ? server.loop.nowMs : nil
        let sequence = nextSequence
        nextSequence += 1
        let keepAlive = request.keepAlive && !draining
        slots.append(Slot(keepAlive: keepAlive, headOnly: request.method == "HEAD",
                          http10: request.versionMajor == 1 && request.versionMinor == 0, bodyBytes: bodyBytesReserved))
        if !keepAlive { closeAfterWrites = true }
        bodyBytesInSlots += bodyBytesReserved
        bodyBytesReserved = 0
        bodyChunked = false
        if case .refused(let response) = headState {
            headState = .none
            deliver(response, sequence: sequence)
            return
        }
        var request = request
        request.admittedAs = admittedAs
        admittedAs = nil
        dispatch(request, sequence: sequence)
    }

    /// Hands a request on; its slot keeps its body's budget until it is answered, so the
    /// budget bounds bodies in the stages too, not only those still arriving.
    private func dispatch(_ request: HTTPRequest, sequence: UInt64) {
        let server = server, id = id
        let responder = HTTPResponder(server: server, connectionID: id, sequence: sequence)
        switch server.handler.handle(request, responder: responder, whenSpace: {
            server.loop.execute { server.retryDeferred(connectionID: id) }
        }) {
        case .accepted: break
        case .rejected(let response): deliver(response, sequence: sequence)
        case .deferred: deferred = (request, sequence)
        }
    }

    /// Answers a framing error or timeout in order, after the requests before it, then closes.
    private func answerAndClose(_ error: HTTPDecodeError) {
        answerAndClose(HTTPResponse.error(error.status, error.reason, route: HTTPServer.edgeRoute))
    }

    /// Answers `response` in order, after the requests before it, then closes: the request
    /// it answers was not read whole, so the stream cannot go on after it.
    private func answerAndClose(_ response: HTTPResponse) {
        closeAfterWrites = true
        continueOwed = false
        headState = .none
        server.releaseBodyBytes(bodyBytesReserved)
        bodyBytesReserved = 0
        bodyChunked = false
        let bytes = response.body.count
        replyBytesHeld += bytes
        server.addReplyBytes(bytes)
        slots.append(Slot(keepAlive: false, headOnly: false, http10: false, response: response))
        nextSequence += 1
        flushWrites()
        updateReading()
    }

    // MARK: - Writing

    /// Writes every response that is next in order.
    private func flushWrites() {
        guard !closing else { return }
        var out: [UInt8] = []
        var released = 0, bodyBytes = 0
        while let first = slots.first, let response = first.response {
            slots.removeFirst()
            firstSlotSequence += 1
            released += response.body.count
            bodyBytes += first.bodyBytes
            let last = !first.keepAlive || (closeAfterWrites && slots.isEmpty && deferred == nil)
            response.serialized(keepAlive: !last, http10: first.http10, date: server.httpDate, headOnly: first.headOnly, into: &out)
            server.metrics.record(route: response.route, status: response.status)
            if !first.keepAlive {
                // Nothing may follow a response that closes the connection.
                released += slots.reduce(0) { $0 + ($1.response?.body.count ?? 0) }
                bodyBytes += slots.reduce(0) { $0 + $1.bodyBytes }
                slots.removeAll()
                closeAfterWrites = true
                break
            }
        }
        // Serialized, the replies leave the slots: from here on libuv's queue holds them.
        replyBytesHeld -= released
        server.removeReplyBytes(released)
        bodyBytesInSlots -= bodyBytes
        precondition(bodyBytesInSlots >= 0, "slots released more body budget than they held")
        server.releaseBodyBytes(bodyBytes)
        if continueOwed && slots.isEmpty && decoder.isInsideRequest {
            continueOwed = false
            out.append(contentsOf: "HTTP/1.1 100 Continue\r\n\r\n".utf8)
        }
        if !out.isEmpty { writeBytes(out) }
        // After the answers are on their way, so a 100 Continue or a refusal follows them.
        if bodyBytes > 0 { takeBodyRoom() }
        updateReading()
        closeIfFinished()
    }

    /// Closes once nothing more will be answered: after a closing response, or after the
    /// peer's end of stream once every whole request it sent has been answered.
    private func closeIfFinished() {
        guard !closing, !decoding, slots.isEmpty, deferred == nil, writesInFlight == 0 else { return }
        if case .awaitingAdmission = headState { return }
        let inputExhausted = peerClosed && (pendingOffset == pendingInput.count || decoder.isFinished)
        guard closeAfterWrites || inputExhausted else { return }
        let unreadInput = decoder.isInsideRequest || pendingOffset < pendingInput.count
        if unreadInput && !peerClosed && !server.draining { linger() } else { close() }
    }

    /// Sends end of stream after the answers, then drops input until the client closes.
    private func linger() {
        guard lingerStartMs == nil else { return }
        lingerStartMs = server.loop.nowMs
        pendingInput = []
        pendingOffset = 0
        let request = UnsafeMutablePointer<uv_shutdown_t>.allocate(capacity: 1)
        // The callback runs once, also when the close cancels it.
        guard uv_shutdown(request, stream, { request, _ in request?.deallocate() }) == 0 else {
            request.deallocate()
            close()
            return
        }
        if !reading { startReadCallbacks() }
    }

    private func writeBytes(_ bytes: [UInt8]) {
        writesInFlight += 1
        let count = bytes.count
        replyBytesWriting += count
        server.addReplyBytes(count)
        // The connection stays alive until its handle closes, which waits for pending writes.
        let started = StreamWrite.start([bytes], on: stream) { [unowned self] status in writeFinished(status: status, count: count) }
        if !started {
            writesInFlight -= 1
            replyBytesWriting -= count
            server.removeReplyBytes(count)
            close()
        }
    }

    private func writeFinished(status: Int32, count: Int) {
        writesInFlight -= 1
        replyBytesWriting -= count
        server.removeReplyBytes(count)
        guard !closing else { return }
        if status < 0 {
            close()
            return
        }
        lastActivityMs = server.loop.nowMs
        updateReading()
        closeIfFinished()
    }

    /// A reply this small to a connection with nothing waiting passes even past the node's
    /// reply budget: write acknowledgements are never turned into 503s (their writes were
    /// applied), and all of them together stay under `connections_max` × this.
    static let replyBytesAlwaysSent = 64 * 1024
    /// Bounds on a lingering close: time, and bytes dropped.
    static let lingerMsMax: UInt64 = 2_000
    static let lingerBytesMax = 4 * 1024 * 1024

    private static let onClose: uv_close_cb = { handle in
        Unmanaged<HTTPConnection>.fromOpaque(handle!.pointee.data).release()
        UnsafeMutableRawPointer(handle!).deallocate()
    }
}
