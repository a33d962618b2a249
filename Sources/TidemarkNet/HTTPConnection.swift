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
    }

    let id: UInt64
    private unowned let server: HTTPServer
    private let handle: UnsafeMutablePointer<uv_tcp_t>
    private let decoder: HTTPRequestDecoder

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
        slots[index].response = response
        flushWrites()
    }

    func retryDeferred() {
        guard !closing, let pending = deferred else { return }
        deferred = nil
        dispatch(pending.request, sequence: pending.sequence)
        updateReading()
    }

    func checkTimeouts(nowMs: UInt64) {
        guard !closing else { return }
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
        if reading { uv_read_stop(stream) }
        reading = false
        uv_close(handlePointer, Self.onClose)
        server.connectionClosed(id)
    }

    // MARK: - Reading and decoding

    /// The limits allow taking another request from the input already read.
    private var canDecode: Bool {
        !closing && !closeAfterWrites && !decoder.isFinished && deferred == nil
            && slots.count < server.settings.pipelineDepthMax
            && uv_stream_get_write_queue_size(stream) < server.settings.writeBufferBytesMax
    }

    /// The limits allow reading more from the socket.
    private var shouldRead: Bool { canDecode && !peerClosed }

    /// Starts or stops reading to match the limits, decoding what is buffered first.
    private func updateReading() {
        guard !decoding else { return }
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
            reading = true
            uv_read_start(stream, { handle, _, buffer in
                let server = HTTPConnection.connection(UnsafeMutableRawPointer(handle!)).server
                buffer!.pointee = uv_buf_init(server.readBuffer.baseAddress!.assumingMemoryBound(to: CChar.self), UInt32(server.readBuffer.count))
            }, { stream, count, buffer in
                HTTPConnection.connection(UnsafeMutableRawPointer(stream!)).onRead(count: count, buffer: buffer!.pointee)
            })
        } else if !wanted && reading {
            reading = false
            uv_read_stop(stream)
        }
    }

    private func onRead(count: Int, buffer: uv_buf_t) {
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
            if step.continueRequested {
                if slots.isEmpty { writeBytes(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)) } else { continueOwed = true }
            }
            if let request = step.request {
                requestStartMs = decoder.isInsideRequest ? server.loop.nowMs : nil
                let sequence = nextSequence
                nextSequence += 1
                let keepAlive = request.keepAlive && !draining
                slots.append(Slot(keepAlive: keepAlive, headOnly: request.method == "HEAD",
                                  http10: request.versionMajor == 1 && request.versionMinor == 0))
                if !keepAlive { closeAfterWrites = true }
                dispatch(request, sequence: sequence)
            }
            if let error = step.error {
                answerAndClose(error)
                return bytes.count
            }
            if step.consumed == 0 { break }
        }
        return offset
    }

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
        closeAfterWrites = true
        continueOwed = false
        let response = HTTPResponse.error(error.status, error.reason, route: HTTPServer.edgeRoute)
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
        while let first = slots.first, let response = first.response {
            slots.removeFirst()
            firstSlotSequence += 1
            let last = !first.keepAlive || (closeAfterWrites && slots.isEmpty && deferred == nil)
            response.serialized(keepAlive: !last, http10: first.http10, date: server.httpDate, headOnly: first.headOnly, into: &out)
            server.metrics.record(route: response.route, status: response.status)
            if !first.keepAlive {
                // Nothing may follow a response that closes the connection.
                slots.removeAll()
                closeAfterWrites = true
                break
            }
        }
        if continueOwed && slots.isEmpty && decoder.isInsideRequest {
            continueOwed = false
            out.append(contentsOf: "HTTP/1.1 100 Continue\r\n\r\n".utf8)
        }
        if !out.isEmpty { writeBytes(out) }
        updateReading()
        closeIfFinished()
    }

    /// Closes once nothing more will be answered: after a closing response, or after the
    /// peer's end of stream once every whole request it sent has been answered.
    private func closeIfFinished() {
        guard !closing, !decoding, slots.isEmpty, deferred == nil, writesInFlight == 0 else { return }
        let inputExhausted = peerClosed && (pendingOffset == pendingInput.count || decoder.isFinished)
        if closeAfterWrites || inputExhausted { close() }
    }

    private func writeBytes(_ bytes: [UInt8]) {
        writesInFlight += 1
        // The connection stays alive until its handle closes, which waits for pending writes.
        let started = StreamWrite.start([bytes], on: stream) { [unowned self] status in writeFinished(status: status) }
        if !started {
            writesInFlight -= 1
            close()
        }
    }

    private func writeFinished(status: Int32) {
        writesInFlight -= 1
        guard !closing else { return }
        if status < 0 {
            close()
            return
        }
        lastActivityMs = server.loop.nowMs
        updateReading()
        closeIfFinished()
    }

    private static let onClose: uv_close_cb = { handle in
        Unmanaged<HTTPConnection>.fromOpaque(handle!.pointee.data).release()
        UnsafeMutableRawPointer(handle!).deallocate()
    }
}
