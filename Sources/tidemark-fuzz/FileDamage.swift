import Foundation
import TidemarkTestSupport

/// One way disks and people damage a file, applied: bits flipped, cut short, zeroed, a byte
/// set to an extreme, or grown with random bytes.
struct FileDamage {
    /// What was done, for the finding's report.
    let description: String
    /// The bytes that may differ from the file before, in its old offsets (a cut runs to its
    /// old end, growth starts at it): every byte outside is as it was.
    let damagedBytes: Range<Int>

    /// Damages `file` in place, one way drawn from `random`.
    static func apply(to file: String, _ random: inout Seeded) throws -> FileDamage {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
        let name = (file as NSString).lastPathComponent
        guard !bytes.isEmpty else { return FileDamage(description: "empty \(name)", damagedBytes: 0..<0) }
        let originalCount = bytes.count
        let how: String
        let damaged: Range<Int>
        switch random.int(0...4) {
        case 0:
            var at: [Int] = []
            for _ in 0..<random.int(1...4) {
                let offset = random.int(0...(bytes.count - 1))
                bytes[offset] ^= UInt8(1 << random.int(0...7))
                at.append(offset)
            }
            how = "flipped bits at \(at)"
            damaged = at.min()!..<(at.max()! + 1)
        case 1:
            let length = random.int(0...(bytes.count - 1))
            bytes = Array(bytes.prefix(length))
            how = "cut to \(length) bytes"
            damaged = length..<originalCount
        case 2:
            let start = random.int(0...(bytes.count - 1))
            let end = min(bytes.count, start + random.int(1...64))
            for offset in start..<end { bytes[offset] = 0 }
            how = "zeroed \(start)..<\(end)"
            damaged = start..<end
        case 3:
            let offset = random.int(0...(bytes.count - 1))
            bytes[offset] = random.pick([0xFF, 0x7F, 0x80, 0x00])
            how = "byte \(offset) set to an extreme"
            damaged = offset..<(offset + 1)
        default:
            let extra = random.int(1...100)
            bytes += (0..<extra).map { _ in UInt8(random.int(0...255)) }
            how = "grown by \(extra) random bytes"
            damaged = originalCount..<bytes.count
        }
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        return FileDamage(description: "\(name) of \(originalCount) bytes: \(how)", damagedBytes: damaged)
    }
}
