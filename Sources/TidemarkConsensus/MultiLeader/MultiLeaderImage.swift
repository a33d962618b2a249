import Foundation
import TidemarkIO

/// What every piece of a multi-leader image carries besides its bytes: how the image is cut,
/// and, per source, the next write the image's replica had not applied (where the new
/// replica starts taking that source's writes).
public struct MultiLeaderImageHeader: Sendable, Equatable {
    /// The donor's log index the image covers (its state machine applied everything through it).
    public var index: UInt64
    public var bytes: UInt64
    public var parts: UInt32
    public var applied: [UInt64: UInt64]

    /// Sources in one header (nodes of one group), as in a progress record.
    static let nodesMax = 1024

    public init(index: UInt64, bytes: UInt64, parts: UInt32, applied: [UInt64: UInt64]) {
        self.index = index
        self.bytes = bytes
        self.parts = parts
        self.applied = applied
    }

    public var encoded: [UInt8] {
        var writer = ByteWriter()
        writer.write(varint: index)
        writer.write(varint: bytes)
        writer.write(varint: UInt64(parts))
        writer.write(varint: UInt64(applied.count))
        for (source, next) in applied.sorted(by: { $0.key < $1.key }) {
            writer.write(varint: source)
            writer.write(varint: next)
        }
        return writer.bytes
    }

    public init(decoding bytes: [UInt8]) throws(CorruptDataError) {
        var reader = ByteReader(bytes)
        index = try reader.readVarint()
        self.bytes = try reader.readVarint()
        let parts = try reader.readVarint()
        guard parts > 0, parts <= UInt64(UInt32.max) else { throw CorruptDataError("an image header with \(parts) pieces") }
        self.parts = UInt32(parts)
        applied = [:]
        for _ in 0..<(try reader.readCount(max: Self.nodesMax, what: "sources")) { applied[try reader.readVarint()] = try reader.readVarint() }
        guard reader.isAtEnd else { throw CorruptDataError("bytes after an image header") }
    }
}

/// A joining replica's image as its pieces come, in order, into one file: a piece out of
/// order, from another image or past the bound ends the spool (the replica asks again).
final class ImageSpool {
    enum Outcome: Equatable {
        /// Taken; more to come.
        case more
        /// The last piece: the file is whole and synced.
        case complete
    }

    let path: String
    private let bytesMax: Int
    private var descriptor: Int32 = -1
    private(set) var header: MultiLeaderImageHeader?
    private var nextPart: UInt32 = 0
    private var written = 0

    init(path: String, bytesMax: Int) {
        self.path = path
        self.bytesMax = bytesMax
    }

    deinit { if descriptor >= 0 { FileIO.close(descriptor) } }

    /// Takes piece `part` of the image `header` describes.
    func take(_ piece: [UInt8], part: UInt64, header: MultiLeaderImageHeader) throws -> Outcome {
        if part == 0 {
            guard header.bytes <= UInt64(bytesMax) else {
                throw ConsensusError.refused("an image of \(header.bytes) bytes is more than image_bytes_max (\(bytesMax))")
            }
            try reset()
            descriptor = try FileIO.open(path, O_WRONLY | O_CREAT | O_TRUNC)
            self.header = header
        }
        guard let expected = self.header, expected == header, part == UInt64(nextPart) else {
            throw ConsensusError.refused("piece \(part) of image \(header.index) came where piece \(nextPart) of image \(self.header?.index ?? 0) was due")
        }
        let isLast = nextPart + 1 == header.parts
        guard written + piece.count <= Int(header.bytes), isLast ? written + piece.count == Int(header.bytes) : !piece.isEmpty else {
            throw ConsensusError.refused("piece \(part) of image \(header.index) has \(piece.count) bytes, which do not add up to its \(header.bytes)")
        }
        try FileIO.writeAll(descriptor, piece, path: path)
        written += piece.count
        nextPart += 1
        guard isLast else { return .more }
        try FileIO.fsync(descriptor, path: path)
        FileIO.close(descriptor)
        descriptor = -1
        return .complete
    }

    /// Forgets what came so far and removes the file.
    func reset() throws {
        if descriptor >= 0 { FileIO.close(descriptor) }
        descriptor = -1
        header = nil
        nextPart = 0
        written = 0
        try FileIO.remove(path)
    }
}
