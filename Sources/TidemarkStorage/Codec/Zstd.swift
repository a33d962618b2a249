import CZstd

/// zstd compression of whole blocks, for segment chunks.
public enum Zstd {
    /// Compresses `bytes` at `level` (1–19).
    public static func compress(_ bytes: [UInt8], level: Int32) -> [UInt8] {
        let bound = ZSTD_compressBound(bytes.count)
        var out = [UInt8](repeating: 0, count: bound)
        let written = out.withUnsafeMutableBytes { destination in
            bytes.withUnsafeBytes { source in
                ZSTD_compress(destination.baseAddress, bound, source.baseAddress, source.count, level)
            }
        }
        // Compression of an in-memory buffer into a buffer of compressBound cannot fail.
        precondition(ZSTD_isError(written) == 0, "ZSTD_compress: \(String(cString: ZSTD_getErrorName(written)))")
        out.removeSubrange(written...)
        return out
    }

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
