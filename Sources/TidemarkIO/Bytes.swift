/// Input that does not decode: a torn or corrupt file, or bytes that were never ours.
public struct CorruptDataError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String

    @inlinable
    public init(_ description: String) { self.description = description }
}

/// Appends little-endian integers, varints and raw bytes to a growing buffer. Its methods are
/// `@inlinable`: the codecs of other modules call them once per value, and a call across
/// modules that cannot be inlined costs more than the write itself.
@frozen
public struct ByteWriter: Sendable {
    /// What was written (set only by the writer's own methods).
    @usableFromInline var storage: [UInt8]
    public var bytes: [UInt8] { storage }

    /// The most bytes one varint takes (a `UInt64` in sevens): for buffer estimates.
    public static let varintBytesMax = 10

    @inlinable
    public init(capacity: Int = 0) {
        storage = []
        storage.reserveCapacity(capacity)
    }

    @inlinable
    public var count: Int { storage.count }

    /// Empties the buffer but keeps its memory, for a writer reused chunk after chunk.
    @inlinable
    public mutating func removeAll() { storage.removeAll(keepingCapacity: true) }

    @inlinable
    public mutating func write(_ value: UInt8) { storage.append(value) }

    @inlinable
    public mutating func write<T: FixedWidthInteger>(littleEndian value: T) {
        withUnsafeBytes(of: value.littleEndian) { storage.append(contentsOf: $0) }
    }

    @inlinable
    public mutating func write(bytes other: some Sequence<UInt8>) { storage.append(contentsOf: other) }

    /// LEB128: seven bits per byte, low bits first.
    @inlinable
    @inline(__always)
    public mutating func write(varint value: UInt64) {
        var value = value
        while value >= 0x80 {
            storage.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        storage.append(UInt8(value))
    }

    @inlinable
    @inline(__always)
    public mutating func write(signedVarint value: Int64) { write(varint: zigzag(value)) }

    /// A varint length, then the bytes.
    @inlinable
    public mutating func write(lengthPrefixed other: [UInt8]) {
        write(varint: UInt64(other.count))
        storage.append(contentsOf: other)
    }

    /// A varint length, then the text's UTF-8 (read in place, not copied into an array first).
    @inlinable
    public mutating func write(lengthPrefixed text: String) {
        var text = text
        text.withUTF8 { utf8 in
            write(varint: UInt64(utf8.count))
            storage.append(contentsOf: utf8)
        }
    }

    /// Overwrites four bytes at `offset` (for lengths and checksums known only later).
    @inlinable
    public mutating func patch(littleEndian value: UInt32, at offset: Int) {
        precondition(offset >= 0 && offset + 4 <= storage.count)
        withUnsafeBytes(of: value.littleEndian) { raw in
            for index in 0..<4 { storage[offset + index] = raw[index] }
        }
    }
}

/// Reads what `ByteWriter` wrote, checking every bound: bad input throws, never traps.
/// Inlinable, as `ByteWriter` is.
@frozen
public struct ByteReader {
    public let bytes: [UInt8]
    /// Where the next read starts.
    @usableFromInline var position: Int
    public var offset: Int { position }
    @usableFromInline let end: Int

    @inlinable
    public init(_ bytes: [UInt8], offset: Int = 0, end: Int? = nil) {
        self.bytes = bytes
        position = offset
        self.end = end ?? bytes.count
        precondition(offset >= 0 && self.end <= bytes.count && offset <= self.end)
    }

    @inlinable
    public var remaining: Int { end - position }
    @inlinable
    public var isAtEnd: Bool { position == end }

    @inlinable
    public mutating func readByte() throws(CorruptDataError) -> UInt8 {
        guard position < end else { throw CorruptDataError("unexpected end of data at byte \(position)") }
        defer { position += 1 }
        return bytes[position]
    }

    @inlinable
    public mutating func read<T: FixedWidthInteger>(littleEndian type: T.Type) throws(CorruptDataError) -> T {
        let size = MemoryLayout<T>.size
        guard remaining >= size else { throw CorruptDataError("unexpected end of data at byte \(position)") }
        let value = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: position, as: T.self) }
        position += size
        return T(littleEndian: value)
    }

    @inlinable
    @inline(__always)
    public mutating func readVarint() throws(CorruptDataError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard position < end else { throw CorruptDataError("unexpected end of data in a varint at byte \(position)") }
            let byte = bytes[position]
            position += 1
            guard shift < 64, shift < 63 || byte <= 1 else { throw CorruptDataError("varint longer than 64 bits at byte \(position)") }
            result |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return result }
            shift += 7
        }
    }

    @inlinable
    @inline(__always)
    public mutating func readSignedVarint() throws(CorruptDataError) -> Int64 { unzigzag(try readVarint()) }

    /// A count read from the data, checked against a bound before anything is allocated for it.
    @inlinable
    public mutating func readCount(max: Int, what: String) throws(CorruptDataError) -> Int {
        let value = try readVarint()
        guard value <= UInt64(max) else { throw CorruptDataError("\(what) of \(value) exceeds \(max)") }
        return Int(value)
    }

    @inlinable
    public mutating func readBytes(_ count: Int) throws(CorruptDataError) -> ArraySlice<UInt8> {
        guard count >= 0, remaining >= count else { throw CorruptDataError("\(count) bytes wanted, \(remaining) left at byte \(position)") }
        defer { position += count }
        return bytes[position..<(position + count)]
    }

    @inlinable
    public mutating func readLengthPrefixed(max: Int) throws(CorruptDataError) -> ArraySlice<UInt8> {
        try readBytes(try readCount(max: min(max, remaining), what: "length"))
    }

    /// Length-prefixed UTF-8 text, or nil when it is not UTF-8. Over a concrete buffer, not
    /// the slice (the generic initializer needed type metadata at run time); ASCII, the usual
    /// case for paths and names, takes the plain decoding path.
    @inlinable
    public mutating func readText(max: Int) throws(CorruptDataError) -> String? {
        Self.text(try readLengthPrefixed(max: max))
    }

    /// `bytes` as text, or nil when they are not UTF-8.
    @inlinable
    public static func text(_ bytes: ArraySlice<UInt8>) -> String? {
        bytes.withUnsafeBufferPointer { bytes in
            bytes.allSatisfy { $0 < 0x80 } ? String(decoding: bytes, as: UTF8.self) : String(validating: bytes, as: UTF8.self)
        }
    }
}

@inlinable
@inline(__always)
public func zigzag(_ value: Int64) -> UInt64 { UInt64(bitPattern: (value << 1) ^ (value >> 63)) }

@inlinable
@inline(__always)
public func unzigzag(_ value: UInt64) -> Int64 { Int64(bitPattern: value >> 1) ^ -Int64(bitPattern: value & 1) }
