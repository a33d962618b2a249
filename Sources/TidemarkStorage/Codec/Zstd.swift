import TidemarkIO
import CZstd

/// A zstd compression context kept across calls: `ZSTD_compress` would allocate and clear
/// a fresh context (about a megabyte at level 3) for every chunk. Not thread-safe: one
/// owner at a time (a segment writer).
public final class ZstdCompressor {
    private let context: OpaquePointer
    public let level: Int32

    /// `level` is zstd's (1–19).
    public init(level: Int32) {
        // Creation fails only when memory is exhausted.
        guard let context = ZSTD_createCCtx() else { preconditionFailure("ZSTD_createCCtx: out of memory") }
        self.context = context
        self.level = level
    }

    deinit { ZSTD_freeCCtx(context) }

    /// Compresses `bytes` into a zstd frame appended to `out`; returns the frame's length.
    @discardableResult
    public func compress(_ bytes: UnsafeRawBufferPointer, appendingTo out: inout [UInt8]) -> Int {
        let bound = ZSTD_compressBound(bytes.count)
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: bound))
        let written = out.withUnsafeMutableBytes { destination in
            ZSTD_compressCCtx(context, destination.baseAddress! + start, bound, bytes.baseAddress, bytes.count, level)
        }
        // Compression of an in-memory buffer into a buffer of compressBound cannot fail.
        precondition(ZSTD_isError(written) == 0, "ZSTD_compressCCtx: \(String(cString: ZSTD_getErrorName(written)))")
        out.removeLast(bound - written)
        return written
    }

    /// `bytes` as one zstd frame.
    public func compress(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        bytes.withUnsafeBytes { _ = compress($0, appendingTo: &out) }
        return out
    }
}

/// zstd decompression of whole blocks (compression: `ZstdCompressor`).
public enum Zstd {
    /// Decompresses a frame whose content size the caller knows (and has bounded).
    public static func decompress(_ bytes: ArraySlice<UInt8>, size: Int) throws(CorruptDataError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: size)
        let written = out.withUnsafeMutableBytes { destination in
            bytes.withUnsafeBytes { source in
                ZSTD_decompress(destination.baseAddress, size, source.baseAddress, source.count)
            }
        }
        guard ZSTD_isError(written) == 0 else {
            throw CorruptDataError("zstd: \(String(cString: ZSTD_getErrorName(written)))")
        }
        guard written == size else { throw CorruptDataError("zstd frame holds \(written) bytes, expected \(size)") }
        return out
    }
}
