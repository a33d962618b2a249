/// Where a series lives in the cluster: its device's slot and its time partition (DESIGN.md
/// section 3).
public enum SeriesSlots {
    /// IoTDB's default series partition hash (`BKDRHashExecutor`): `h = h * 131 + c` over the
    /// UTF-16 code units of the device path from `h = 0`, in wrapping 32-bit signed arithmetic;
    /// the slot is `(h & 0x7fffffff) % slotCount`. The same paths get the same slots as in IoTDB.
    public static func slot(ofDevice device: String, slotCount: Int) -> Int {
        precondition(slotCount > 0, "a cluster has at least one slot")
        var hash: Int32 = 0
        // An ASCII path's UTF-16 units are its bytes: hashed without transcoding.
        var ascii = true
        for byte in device.utf8 {
            guard byte < 0x80 else {
                ascii = false
                break
            }
            hash = hash &* 131 &+ Int32(byte)
        }
        if !ascii {
            hash = 0
            for unit in device.utf16 { hash = hash &* 131 &+ Int32(unit) }
        }
        return Int(hash & Int32.max) % slotCount
    }

    /// `timestamp div intervalMs`, rounding down (a time before 1970 is in a negative partition).
    public static func timePartition(of timestamp: Int64, intervalMs: Int64) -> Int64 {
        precondition(intervalMs > 0, "a time partition has a width")
        // -(timestamp + 1), not -timestamp - 1: negating Int64.min would trap.
        return timestamp >= 0 ? timestamp / intervalMs : -(-(timestamp + 1) / intervalMs) - 1
    }
}
