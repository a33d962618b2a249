import Histogram
import Synchronization
import TidemarkCore

/// A latency distribution, in nanoseconds, with an exact sum.
public struct LatencyHistogram: Sendable {
    /// Values above this are recorded as this: one minute is far past any healthy hop.
    public static let valueNsMax: UInt64 = 60_000_000_000

    private(set) var histogram = Histogram<UInt64>(
        lowestDiscernibleValue: 1, highestTrackableValue: valueNsMax, numberOfSignificantValueDigits: .two)
    public private(set) var sumNs: UInt64 = 0

    public init() {}

    public var count: UInt64 { histogram.totalCount }

    mutating func record(_ valueNs: UInt64) {
        let clamped = min(max(valueNs, 1), Self.valueNsMax)
        _ = histogram.record(clamped)
        sumNs &+= clamped
    }

    /// Adds every value recorded in `other`.
    public mutating func merge(_ other: LatencyHistogram) {
        histogram.add(other.histogram)
        sumNs &+= other.sumNs
    }

    /// The value at `percentile` (0–100), 0 when empty.
    public func valueNs(atPercentile percentile: Double) -> UInt64 {
        count == 0 ? 0 : histogram.valueAtPercentile(percentile)
    }

    /// How many recorded values are at most `boundNs` (for Prometheus `le` buckets).
    public func count(atMostNs boundNs: UInt64) -> UInt64 {
        count == 0 ? 0 : histogram.count(within: 0...min(boundNs, Self.valueNsMax))
    }
}

/// A consistent reading of one stage's counters, for `/metrics`, `/stages` and the CLI.
public struct StageSnapshot: Sendable {
    public let name: String
    public let settings: StageSettings
    public let queueDepth: Int
    public let busyThreads: Int
    public let completed: UInt64
    public let blocked: UInt64
    public let rejected: UInt64
    public let queueWait: LatencyHistogram
    public let service: LatencyHistogram
}

/// The counters a stage keeps while it runs; updated by workers, read by scrapes.
final class StageStats: Sendable {
    let completed = Atomic<UInt64>(0)
    let blocked = Atomic<UInt64>(0)
    let rejected = Atomic<UInt64>(0)
    let busyThreads = Atomic<Int>(0)
    // Recorded once per batch, so the lock is taken once per wake-up, not per event.
    private let latencies = Mutex<(queueWait: LatencyHistogram, service: LatencyHistogram)>((.init(), .init()))

    /// Records one handler call over `events` events that waited `waitsNs` and took `serviceNs`.
    func recordBatch(waitsNs: some Sequence<UInt64>, serviceNs: UInt64, events: Int) {
        latencies.withLock { latencies in
            for waitNs in waitsNs { latencies.queueWait.record(waitNs) }
            latencies.service.record(serviceNs)
        }
        completed.add(UInt64(events), ordering: .relaxed)
    }

    func latencySnapshot() -> (queueWait: LatencyHistogram, service: LatencyHistogram) {
        latencies.withLock { $0 }
    }
}
