import TidemarkIO

/// A frame encoded but not sealed yet: the expensive part (payload, its checksum and its
/// signature so far) is done by the sender's thread; the connection adds its seal.
public struct PreparedFrame: Sendable {
    fileprivate var bytes: [UInt8]
    fileprivate var crc: UInt32
    fileprivate var signer: FrameAuthenticator.Signer

    /// Bytes the sealed frame will take.
    public var count: Int { bytes.count + FrameCodec.trailerBytes }

    /// The frame's header and payload, as prepared; `trailer(for:)` follows it on the wire.
    public var body: [UInt8] { bytes }

    /// What follows `body` on the wire for `seal`: the seal, the checksum and the tag.
    public func trailer(for seal: FrameSeal) -> [UInt8] {
        var trailer = ByteWriter(capacity: FrameCodec.trailerBytes)
        trailer.write(littleEndian: seal.session)
        trailer.write(littleEndian: seal.sequence)
        trailer.write(littleEndian: CRC32C.checksum(trailer.bytes, continuing: crc))
        var signer = signer
        signer.update(trailer.bytes)
        let tag = signer.finalize()
        precondition(tag.count == FrameCodec.tagBytes, "a frame tag is \(FrameCodec.tagBytes) bytes")
        trailer.write(bytes: tag)
        return trailer.bytes
    }

    /// The whole frame with `seal`, checksummed and signed.
    public func sealed(_ seal: FrameSeal) -> [UInt8] { bytes + trailer(for: seal) }
}

extension FrameCodec {
    /// The frame encoded for `authenticator`'s cluster, to be sealed by its connection.
    public static func prepare(_ frame: RaftFrame, authenticator: FrameAuthenticator) -> PreparedFrame {
        let bytes = unsealed(frame)
        var signer = authenticator.signer()
        signer.update(bytes)
        return PreparedFrame(bytes: bytes, crc: CRC32C.checksum(bytes), signer: signer)
    }

}
