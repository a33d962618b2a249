import TidemarkCore
import TidemarkStorage

/// The deterministic workload of the crash test: batch `n` writes `pointsPerBatch` points,
/// its own timestamps, values derived from `n`, so a verifier can recompute any batch.
public enum CrashWorkload {
    public static let pointsPerBatch = 20
    public static let series = 5

    public static func batch(_ number: Int) -> [PointWrite] {
        (0..<pointsPerBatch).map { index in
            PointWrite(path: "root.crash.d\(index % series).s", timestamp: Int64(number * pointsPerBatch + index),
                       value: .double(Double(number) + Double(index) / 100))
        }
    }
}
