import ArgumentParser
import Foundation
import Synchronization
import TidemarkTestSupport

/// Grammar-driven fuzzing of whole paths, not just parsers: random SQL statements run against
/// a small engine, line protocol through the write path with a model of what was accepted,
/// and damaged segment and log files fed to recovery. Every input comes from a seed, so a finding is
/// replayed with `--seed N --count 1`; a watchdog turns an input that runs past its time
/// bound (a hang) into a finding too.
@main
struct FuzzCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tidemark-fuzz",
        abstract: "Grammar-driven fuzzing of statement-to-answer, write path and recovery.",
        subcommands: [SQLFuzz.self, LineFuzz.self, SegmentFuzz.self, LogFuzz.self])
}

/// What every target takes: how long, from which seed, and the bound on one input.
struct FuzzOptions: ParsableArguments {
    @Option(help: "Stop after this many seconds.") var seconds = 10.0
    @Option(help: "Seed of the first input; input i uses seed + i.") var seed: UInt64 = 1
    @Option(help: "Stop after this many inputs.") var count = Int.max
    @Option(help: "An input running longer than this is a hang (a finding).") var inputTimeoutMs = 20_000
    @Option(help: "Where a finding's input is written.") var crashes = "fuzz/crashes"
    @Flag(help: "Print each input before running it.") var verbose = false
}

/// Runs generated inputs until time or count runs out. A crash ends the process (the file
/// `<crashes>/<name>-current-seed` then names its seed); a hang or a broken invariant is
/// written to `<crashes>/<name>-<seed>.txt` and ends it with status 1.
struct FuzzLoop {
    let name: String
    let options: FuzzOptions

    func run(_ body: (_ seed: UInt64, _ describe: (String) -> Void) throws -> Void) throws {
        try FileManager.default.createDirectory(atPath: options.crashes, withIntermediateDirectories: true)
        let seedFile = "\(options.crashes)/\(name)-current-seed"
        let watchdog = Watchdog(timeoutMs: options.inputTimeoutMs) { seed, input in
            report(seed: seed, input: input, why: "input ran past \(options.inputTimeoutMs) ms (a hang)")
        }
        let deadline = Date().addingTimeInterval(options.seconds)
        var inputs = 0
        while Date() < deadline && inputs < options.count {
            let seed = options.seed &+ UInt64(inputs)
            try "\(seed)\n".write(toFile: seedFile, atomically: false, encoding: .utf8)
            watchdog.begin(seed)
            do {
                try body(seed) { text in
                    watchdog.note(text)
                    if options.verbose { print(text) }
                }
            } catch let finding as Finding {
                report(seed: seed, input: watchdog.input, why: finding.description)
            }
            watchdog.end()
            inputs += 1
        }
        try? FileManager.default.removeItem(atPath: seedFile)
        print("\(name): \(inputs) inputs from seed \(options.seed) without a finding")
    }

    private func report(seed: UInt64, input: String, why: String) -> Never {
        let path = "\(options.crashes)/\(name)-\(seed).txt"
        try? "seed \(seed): \(why)\n\(input)\n".write(toFile: path, atomically: true, encoding: .utf8)
        FileHandle.standardError.write(Data("\(name): FINDING at seed \(seed): \(why); input in \(path)\n".utf8))
        exit(1)
    }
}

/// Runs `body` with an empty scratch directory of this process for target `name`, removed after.
func withScratchDirectory<T>(_ name: String, _ body: (String) throws -> T) throws -> T {
    let directory = NSTemporaryDirectory() + "tidemark-fuzz-\(name)-\(getpid())"
    try? FileManager.default.removeItem(atPath: directory)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    return try body(directory)
}

/// A directory built once per run and a scratch copy of it made fresh for each input to
/// damage, both removed after the run.
struct PristineDirectory {
    let base: String
    let scratch: String

    /// Runs `body` with the two (empty) directories of this process for target `name`.
    static func with<T>(_ name: String, _ body: (PristineDirectory) throws -> T) throws -> T {
        try withScratchDirectory(name) { base in
            try withScratchDirectory(name + "-scratch") { scratch in try body(PristineDirectory(base: base, scratch: scratch)) }
        }
    }

    /// Replaces the scratch directory with a fresh copy of the base.
    func freshCopy() throws {
        try? FileManager.default.removeItem(atPath: scratch)
        try FileManager.default.copyItem(atPath: base, toPath: scratch)
    }
}

/// A broken invariant (a lost write, an answer with points nobody wrote).
struct Finding: Error, CustomStringConvertible {
    let description: String
}

/// Ends the process when one input runs past its bound, naming that input.
final class Watchdog: Sendable {
    private struct Current {
        var seed: UInt64 = 0
        var startedAt: Date?
        var input = ""
    }
    private let current = Mutex(Current())

    init(timeoutMs: Int, onHang: @escaping @Sendable (UInt64, String) -> Void) {
        // The watchdog lives as long as the process: its thread keeps it.
        let thread = Thread { [self] in
            while true {
                Thread.sleep(forTimeInterval: 0.05)
                let hung = self.current.withLock { state -> (UInt64, String)? in
                    guard let started = state.startedAt, Date().timeIntervalSince(started) * 1000 > Double(timeoutMs) else { return nil }
                    return (state.seed, state.input)
                }
                if let (seed, input) = hung { onHang(seed, input) }
            }
        }
        thread.start()
    }

    func begin(_ seed: UInt64) { current.withLock { $0 = Current(seed: seed, startedAt: Date(), input: "") } }
    func note(_ text: String) { current.withLock { $0.input += text + "\n" } }
    func end() { current.withLock { $0.startedAt = nil } }
    var input: String { current.withLock { $0.input } }
}

/// Random choices for the grammars.
extension Seeded {
    mutating func pick<T>(_ choices: [T]) -> T { choices[Int.random(in: 0..<choices.count, using: &self)] }
    mutating func chance(_ percent: Int) -> Bool { Int.random(in: 0..<100, using: &self) < percent }
    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &self) }
}
