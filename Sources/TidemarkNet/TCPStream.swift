import CLibUV
import TidemarkCore
#if canImport(Glibc)
import Glibc
#endif

/// A TCP byte stream on the loop, for internal RPC: bytes arrive through `onBytes`, leave
/// through `write`. Everything runs on the loop thread. The stream keeps itself alive until
/// libuv has closed its handle.
public final class TCPStream {
    public let loop: EventLoop
    private let handle: UnsafeMutablePointer<uv_tcp_t>
    /// Called with each chunk read; the bytes are valid only during the call.
    public var onBytes: ((UnsafeRawBufferPointer) -> Void)?
    /// Called once, when the stream closes (peer gone, error, or `close()`).
    public var onClose: (() -> Void)?
    public private(set) var isOpen = true
    /// Bytes handed to `write` and not yet written.
    public private(set) var pendingWriteBytes = 0
    /// `HOST:PORT` of the other end, read once connected (kept after the close, for logs);
    /// nil when the system could not say.
    public private(set) var remoteAddress: ListenAddress?
    private var connectRequest: UnsafeMutablePointer<uv_connect_t>?
    private var onConnect: ((UVError?) -> Void)?

    private static let readBufferBytes = 64 * 1024

    private init(loop: EventLoop) {
        self.loop = loop
        handle = .allocate(capacity: 1)
        uv_tcp_init(loop.loop, handle)
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()  // released in onClosed
    }

    /// Connects to `address`; `completion` gets the open stream or the error.
    public static func connect(loop: EventLoop, to address: ListenAddress, completion: @escaping (TCPStream?, UVError?) -> Void) {
        loop.assertInLoop()
        let stream = TCPStream(loop: loop)
        let request = UnsafeMutablePointer<uv_connect_t>.allocate(capacity: 1)
        request.pointee.data = Unmanaged.passUnretained(stream).toOpaque()
        stream.connectRequest = request
        stream.onConnect = { error in completion(error == nil ? stream : nil, error) }
        do {
            try TCPAddress.withSockaddr(address) { socketAddress throws(UVError) in
                _ = try uvCheck("connect \(address)", uv_tcp_connect(request, stream.handle, socketAddress) { request, status in
                    let stream = Unmanaged<TCPStream>.fromOpaque(request!.pointee.data).takeUnretainedValue()
                    stream.connected(status: status)
                })
            }
        } catch {
            stream.connectRequest = nil
            request.deallocate()
            stream.onConnect = nil
            stream.close()
            completion(nil, error)
        }
    }

    private func connected(status: Int32) {
        connectRequest?.deallocate()
        connectRequest = nil
        let completion = onConnect
        onConnect = nil
        if status < 0 {
            close()
            completion?(UVError(code: status, operation: "connect"))
        } else {
            uv_tcp_nodelay(handle, 1)
            remoteAddress = TCPAddress.peer(handle)
            completion?(nil)
        }
    }

    /// Accepts a pending connection of `listener`; nil if the accept failed.
    static func accept(loop: EventLoop, from listener: UnsafeMutablePointer<uv_tcp_t>) -> TCPStream? {
        let stream = TCPStream(loop: loop)
        guard uv_accept(streamPointer(listener), streamPointer(stream.handle)) == 0 else {
            stream.close()
            return nil
        }
        uv_tcp_nodelay(stream.handle, 1)
        stream.remoteAddress = TCPAddress.peer(stream.handle)
        return stream
    }

    /// Starts delivering bytes to `onBytes`.
    public func startReading() {
        loop.assertInLoop()
        guard isOpen else { return }
        uv_read_start(Self.streamPointer(handle), { _, _, buffer in
            let storage = UnsafeMutableRawPointer.allocate(byteCount: TCPStream.readBufferBytes, alignment: 16)
            buffer!.pointee = uv_buf_init(storage.assumingMemoryBound(to: CChar.self), UInt32(TCPStream.readBufferBytes))
        }, { stream, count, buffer in
            let tcp = Unmanaged<TCPStream>.fromOpaque(stream!.pointee.data).takeUnretainedValue()
            defer { buffer!.pointee.base.map { UnsafeMutableRawPointer($0).deallocate() } }
            if count < 0 {
                tcp.close()
            } else if count > 0, let base = buffer!.pointee.base {
                tcp.onBytes?(UnsafeRawBufferPointer(start: base, count: count))
            }
        })
    }

    /// Queues `bytes` for writing; a failed write closes the stream. `done`, if given, runs
    /// once the bytes are handed to the kernel (true) or will never be (false).
    public func write(_ bytes: [UInt8], done: ((Bool) -> Void)? = nil) {
        write(parts: [bytes], done: done)
    }

    /// Writes `parts` one after the other as one write (one system call, not one per part).
    public func write(parts: [[UInt8]], done: ((Bool) -> Void)? = nil) {
        loop.assertInLoop()
        let count = parts.reduce(0) { $0 + $1.count }
        guard isOpen, count > 0 else {
            done?(isOpen)
            return
        }
        pendingWriteBytes += count
        let started = StreamWrite.start(parts, on: Self.streamPointer(handle)) { [self] status in
            pendingWriteBytes -= count
            if status < 0 { close() }
            done?(status >= 0)
        }
        if !started {
            pendingWriteBytes -= count
            close()
            done?(false)
        }
    }

    /// Closes the stream; `onClose` runs once. Safe to call more than once.
    public func close() {
        guard isOpen else { return }
        isOpen = false
        uv_close(UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self)) { handle in
            let stream = Unmanaged<TCPStream>.fromOpaque(handle!.pointee.data).takeRetainedValue()
            stream.onBytes = nil
            let onClose = stream.onClose
            stream.onClose = nil
            onClose?()
            UnsafeMutableRawPointer(handle!).deallocate()
        }
    }

    fileprivate static func streamPointer(_ tcp: UnsafeMutablePointer<uv_tcp_t>) -> UnsafeMutablePointer<uv_stream_t> {
        UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_stream_t.self)
    }
}

/// Accepts TCP connections on the loop and hands each over as a `TCPStream`.
public final class TCPListener {
    public let loop: EventLoop
    private var handle: UnsafeMutablePointer<uv_tcp_t>?
    private let onAccept: (TCPStream) -> Void
    /// The address it listens on (the real port when 0 was asked for).
    public private(set) var address: ListenAddress

    public init(loop: EventLoop, address: ListenAddress, onAccept: @escaping (TCPStream) -> Void) throws(UVError) {
        loop.assertInLoop()
        self.loop = loop
        self.onAccept = onAccept
        self.address = address
        let tcp = UnsafeMutablePointer<uv_tcp_t>.allocate(capacity: 1)
        uv_tcp_init(loop.loop, tcp)
        tcp.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        do {
            try TCPAddress.bind(tcp, address)
            try uvCheck("listen \(address)", uv_listen(TCPStream.streamPointer(tcp), 128) { server, status in
                guard status >= 0 else { return }
                let listener = Unmanaged<TCPListener>.fromOpaque(server!.pointee.data).takeUnretainedValue()
                guard let handle = listener.handle, let stream = TCPStream.accept(loop: listener.loop, from: handle) else { return }
                listener.onAccept(stream)
            })
            self.address = try TCPAddress.bound(tcp, host: address.host)
        } catch {
            closeAndFree(tcp)
            throw error
        }
        handle = tcp
    }

    public func close() {
        guard let handle else { return }
        self.handle = nil
        closeAndFree(handle)
    }
}
