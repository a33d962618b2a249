import CLibUV

/// One `uv_write` of a copy of some bytes (one or more parts, put together so they leave in
/// one system call): owns the request and the bytes until libuv calls back, then runs `done`
/// with the status on the loop thread.
final class StreamWrite {
    private let request: UnsafeMutablePointer<uv_write_t>
    private let storage: UnsafeMutableRawBufferPointer
    private var buffer: uv_buf_t
    private let done: (Int32) -> Void

    var byteCount: Int { storage.count }

    /// Starts writing `parts`, one after the other, to `stream`; false (and `done` never
    /// runs) if libuv refused at once.
    static func start(_ parts: [[UInt8]], on stream: UnsafeMutablePointer<uv_stream_t>, done: @escaping (Int32) -> Void) -> Bool {
        let write = StreamWrite(parts, done: done)
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

    private init(_ parts: [[UInt8]], done: @escaping (Int32) -> Void) {
        let count = parts.reduce(0) { $0 + $1.count }
        precondition(count > 0 && count <= Int(UInt32.max))
        self.done = done
        request = .allocate(capacity: 1)
        storage = .allocate(byteCount: count, alignment: 1)
        var offset = 0
        for part in parts {
            UnsafeMutableRawBufferPointer(rebasing: storage[offset..<(offset + part.count)]).copyBytes(from: part)
            offset += part.count
        }
        buffer = uv_buf_init(storage.baseAddress!.assumingMemoryBound(to: CChar.self), UInt32(count))
        request.pointee.data = Unmanaged.passRetained(self).toOpaque()  // released by the callback
    }

    deinit {
        storage.deallocate()
        request.deallocate()
    }
}
