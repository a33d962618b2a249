import ArgumentParser
import Foundation
import Synchronization
import TidemarkCore
import TidemarkStages

/// Measures the stage runtime: events per second and hop latency through a chain of three stages.
@main
struct StageBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tidemark-stagebench",
        abstract: "Throughput and hop latency through a chain of three stages.",
        discussion: """
            For each (threads per stage, batch size) it runs two measurements:
              saturated: one producer submits EVENTS as fast as the chain takes them (overflow: block);
                         reports events/s and the queue wait per hop under that load;
              unloaded:  one event in flight at a time; reports the wake-up latency per hop.
            """)

    @Option(help: "Events per saturated run.")
    var events = 2_000_000

    @Option(help: "Round trips per unloaded run.")
    var roundTrips = 20_000

    @Option(help: "Queue capacity of each stage.")
    var queue = 1024

    @Option(parsing: .upToNextOption, help: "Threads per stage to try.")
    var threads: [Int] = [1, 2]

    @Option(parsing: .upToNextOption, help: "Batch sizes to try.")
    var batches: [Int] = [1, 64]

    func run() throws {
        print("stage chain: 3 stages, queue \(queue), overflow block; \(events) events saturated, \(roundTrips) unloaded round trips")
        print("threads  batch   events/s   sat hop p50   sat hop p99   idle hop p50   idle hop p99")
        for threadCount in threads {
            for batch in batches {
                let settings = StageSettings(threads: threadCount, queueCapacity: queue, batchSize: batch, overflow: .block, inline: false)
                let saturated = Chain(settings: settings).saturate(events: events)
                let unloaded = Chain(settings: settings).pingPong(roundTrips: roundTrips)
                print(String(format: "%7d  %5d  %9.0f  %10.1fµs  %10.1fµs  %11.1fµs  %11.1fµs",
                             threadCount, batch, saturated.eventsPerSecond,
                             saturated.hopP50Us, saturated.hopP99Us, unloaded.hopP50Us, unloaded.hopP99Us))
            }
        }
    }
}

struct Result {
    var eventsPerSecond: Double
    var hopP50Us: Double
    var hopP99Us: Double
}

/// Three stages, each handing its events to the next; the last counts them.
final class Chain: Sendable {
    /// Counts events out of the last stage and signals when the target is reached.
    final class Progress: Sendable {
        let finished = Atomic<Int>(0)
        let target = Atomic<Int>(0)
        let done = DispatchSemaphore(value: 0)
    }

    private let stages: [Stage<UInt64>]
    private let progress = Progress()

    init(settings: StageSettings) {
        let progress = progress
        let last = Stage<UInt64>(name: "third", settings: settings) { batch in
            let total = progress.finished.add(batch.count, ordering: .relaxed).newValue
            if total == progress.target.load(ordering: .relaxed) { progress.done.signal() }
        }
        let middle = Stage<UInt64>(name: "second", settings: settings) { batch in
            _ = last.submit(contentsOf: batch)
        }
        let first = Stage<UInt64>(name: "first", settings: settings) { batch in
            _ = middle.submit(contentsOf: batch)
        }
        stages = [first, middle, last]
    }

    func saturate(events: Int) -> Result {
        progress.target.store(events, ordering: .relaxed)
        let startNs = monotonicNowNs()
        for event in 0..<events { _ = stages[0].submit(UInt64(event)) }
        progress.done.wait()
        let elapsedNs = monotonicNowNs() - startNs
        return finish(eventsPerSecond: Double(events) / (Double(elapsedNs) / 1e9))
    }

    func pingPong(roundTrips: Int) -> Result {
        for trip in 1...roundTrips {
            progress.target.store(trip, ordering: .relaxed)
            _ = stages[0].submit(UInt64(trip))
            progress.done.wait()
        }
        return finish(eventsPerSecond: 0)
    }

    /// Hop latency is the queue wait of every stage, merged.
    private func finish(eventsPerSecond: Double) -> Result {
        var hops = LatencyHistogram()
        for stage in stages {
            _ = stage.drain(deadlineNs: monotonicNowNs() + 10_000_000_000)
            hops.merge(stage.snapshot().queueWait)
        }
        return Result(eventsPerSecond: eventsPerSecond,
                      hopP50Us: Double(hops.valueNs(atPercentile: 50)) / 1000,
                      hopP99Us: Double(hops.valueNs(atPercentile: 99)) / 1000)
    }
}
