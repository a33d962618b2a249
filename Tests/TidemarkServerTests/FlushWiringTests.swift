import Foundation
import Logging
import Testing
import TidemarkCore
import TidemarkStages
import TidemarkStorage
import TidemarkTestSupport
@testable import TidemarkServer

@Suite struct FlushWiringTests {
    @Test func aSealedMemtableIsFlushedOnTheFlushStageNotByTheWriter() throws {
        var options = EngineOptions()
        options.memtableBytesMax = 4096
        let engine = try StorageEngine(directory: try temporaryDirectory("flush"), options: options)
        let gate = Gate()
        let flushStage = Stage<StageTask>(
            name: "flush", settings: StageSettings(threads: 1, queueCapacity: 8, batchSize: 1, overflow: .block, inline: false)
        ) { batch in
            gate.pass()
            for task in batch { task.run() }
        }
        FlushWiring.attach(engine, to: flushStage, logger: Logger(label: "test"))
        var written = 0
        while engine.stats.sealedMemtables == 0 && written < 10_000 {
            try engine.write([PointWrite(path: "root.sg.d.s", timestamp: Int64(written), value: .double(Double(written)))])
            written += 1
        }
        // The writer returned with a sealed memtable still waiting: the flush is the stage's job.
        #expect(gate.awaitEntry())
        #expect(engine.stats.sealedMemtables >= 1)
        #expect(engine.stats.segments == 0)
        #expect(try engine.scan(path: "root.sg.d.s", range: Int64.min...Int64.max).all().timestamps.count == written)
        gate.release(100)
        #expect(flushStage.drain(deadlineNs: monotonicNowNs() + 10_000_000_000))
        #expect(engine.stats.sealedMemtables == 0)
        #expect(engine.stats.segments >= 1)
        #expect(try engine.scan(path: "root.sg.d.s", range: Int64.min...Int64.max).all().timestamps.count == written)
    }
}
