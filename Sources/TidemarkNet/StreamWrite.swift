import CLibUV

/// One `uv_write` of a copy of some bytes: owns the request and the bytes until libuv calls
/// back, then runs `done` with the status on the loop thread.
final class StreamWrite {
    private let request: UnsafeMutablePointer<uv_write_t>
    private let storage: UnsafeMutableRawBufferPointer
    private var buffer: uv_buf_t
    private let done: (Int32) -> Void

    var byteCount: Int { storage.count }

    /// Starts writing `bytes` to `stream`; false (and `done` never runs) if libuv refused at once.
    static func start(_ bytes: [UInt8], on stream: UnsafeMutablePointer<uv_stream_t>, done: @escaping (Int32) -> Void) -> Bool {
        let write = StreamWrite(bytes, done: done)
        let status = uv_write(write.request, stream, &write.buffer, 1) { request, status in
            let write = Unmanaged<StreamWrite>.fromOpaque(request!.pointee.data).takeRetainedValue()
            write.done(status)
        }
        if status < 0 {
            Unmanaged.passUnretained(write).release()
            return false
        }
        return true
    }

    private init(_ bytes: [UInt8], done: @escaping (Int32) -> Void) {
        precondition(!bytes.isEmpty)
        self.done = done
        request = .allocate(capacity: 1)
        storage = .allocate(byteCount: bytes.count, alignment: 1)
        storage.copyBytes(from: bytes)
        buffer = uv_buf_init(storage.baseAddress!.assumingMemoryBound(to: CChar.self), UInt32(bytes.count))
        request.pointee.data = Unmanaged.passRetained(self).toOpaque()  // released by the callback
    }

    deinit {
        storage.deallocate()
        request.deallocate()
    }
}
