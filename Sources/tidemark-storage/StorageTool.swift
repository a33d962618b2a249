import ArgumentParser
import Foundation
import TidemarkCore
import TidemarkStorage
import TidemarkTestSupport

/// Developer tool for the storage engine: the storage benchmark and the crash-test writer.
@main
struct StorageTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tidemark-storage",
        abstract: "Storage engine benchmark and crash-test writer.",
        subcommands: [StorageBench.self, CrashWriter.self])
}

/// Writes batches forever, printing `ack N` once batch N is durable; the test kills it.
struct CrashWriter: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "crash-writer", abstract: "Write acknowledged batches until killed.")

    @Option(help: "Region directory.") var dir: String
    @Option(help: "First batch number.") var start = 0
    @Option(help: "Stop after this many batches.") var batches = 1_000_000
    @Option(help: "Seal the memtable past this many bytes (small, so flushes happen often).") var memtableBytes = 3_000

    func run() throws {
        var options = EngineOptions()
        options.memtableBytesMax = memtableBytes
        options.partitionInterval = 500
        options.compactionTriggerSegments = 3
        let engine = try StorageEngine(directory: dir, options: options)
        for number in start..<(start + batches) {
            try engine.write(CrashWorkload.batch(number))
            FileHandle.standardOutput.write(Data("ack \(number)\n".utf8))
        }
    }
}
