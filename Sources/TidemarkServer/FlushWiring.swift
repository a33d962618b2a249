import Logging
import TidemarkCore
import TidemarkStages
import TidemarkStorage

/// Connects a region's storage engine to the node's flush stage: a memtable sealed by a
/// write, or by age, is flushed (and compacted) on the flush stage's threads, so writers
/// never wait for segment files.
enum FlushWiring {
    static func attach(_ engine: StorageEngine, to flushStage: Stage<StageTask>, logger: Logger) {
        engine.scheduleFlushes { engine in
            let result = flushStage.submit(StageTask { flush(engine, logger: logger) })
            if case .rejected(let reason) = result {
                // The sealed memtable stays readable and in the WAL; the next seal or tick retries.
                logger.warning("flush stage refused a flush", metadata: ["reason": "\(reason)"])
            }
        }
    }

    /// The periodic check for memtables past their age, run from a loop timer.
    static func sealByAge(_ engine: StorageEngine, flushStage: Stage<StageTask>, logger: Logger) {
        _ = flushStage.submit(StageTask {
            if engine.sealIfDue() { flush(engine, logger: logger) }
        })
    }

    /// The periodic idle compaction (`compaction_idle_ms`), offered to the flush stage (a full
    /// stage skips a period; the loop never waits).
    static func compactIfIdle(_ engine: StorageEngine, flushStage: Stage<StageTask>, logger: Logger) {
        _ = flushStage.offer(StageTask {
            do { try engine.compactIfIdle() } catch { logger.error("idle compaction failed", metadata: ["error": "\(error)"]) }
        })
    }

    private static func flush(_ engine: StorageEngine, logger: Logger) {
        do {
            try engine.flushSealed()
        } catch {
            logger.error("flush failed; the memtable stays in memory and the WAL", metadata: ["error": "\(error)"])
        }
    }
}
