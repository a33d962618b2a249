import Foundation
import Synchronization
import Testing
import TidemarkCore
import TidemarkTestSupport
@testable import TidemarkStages

private func settings(threads: Int = 1, queue: Int, batch: Int = 1, overflow: OverflowPolicy = .reject,
                      inline: Bool = false) -> StageSettings {
    StageSettings(threads: threads, queueCapacity: queue, batchSize: batch, overflow: overflow, inline: inline)
}

private func drainSoon(_ stage: some StageMonitor) -> Bool {
    stage.drain(deadlineNs: monotonicNowNs() + 10_000_000_000)
}

@Suite struct StageTests {
    @Test func manyProducersAndConsumersDeliverEveryEventExactlyOnce() {
        let producers = 8, perProducer = 20_000
        let seen = Mutex<[UInt8]>([UInt8](repeating: 0, count: producers * perProducer))
        let stage = Stage<Int>(name: "test", settings: settings(threads: 4, queue: 64, batch: 8, overflow: .block)) { batch in
            seen.withLock { counts in for event in batch { counts[event] &+= 1 } }
        }
        DispatchQueue.concurrentPerform(iterations: producers) { producer in
            for index in 0..<perProducer {
                #expect(stage.submit(producer * perProducer + index) == .accepted)
            }
        }
        #expect(drainSoon(stage))
        let counts = seen.withLock { $0 }
        #expect(counts.allSatisfy { $0 == 1 })
        let snapshot = stage.snapshot()
        #expect(snapshot.completed == UInt64(producers * perProducer))
        #expect(snapshot.queueDepth == 0)
        #expect(snapshot.rejected == 0)
        #expect(snapshot.queueWait.count == UInt64(producers * perProducer))
    }

    @Test func rejectPolicyRefusesWhenFullAndNeverRunsTheRefusedEvent() {
        let gate = Gate()
        let handled = Mutex<[Int]>([])
        let stage = Stage<Int>(name: "test", settings: settings(queue: 4, overflow: .reject)) { batch in
            gate.pass()
            handled.withLock { $0.append(contentsOf: batch) }
        }
        #expect(stage.submit(0) == .accepted)
        #expect(gate.awaitEntry())  // the worker holds event 0; the queue is empty again
        for event in 1...4 { #expect(stage.submit(event) == .accepted) }
        #expect(stage.submit(99) == .rejected(.overloaded))
        #expect(stage.submit(100, whenSpace: { Issue.record("whenSpace must not be used under reject") }) == .rejected(.overloaded))
        #expect(stage.snapshot().rejected == 2)
        #expect(stage.snapshot().queueDepth == 4)
        gate.release(5)
        #expect(drainSoon(stage))
        #expect(handled.withLock { $0 } == [0, 1, 2, 3, 4])
    }

    @Test func blockPolicyDefersTheEdgeAndCallsBackWhenThereIsRoom() {
        let gate = Gate()
        let spaceSignalled = DispatchSemaphore(value: 0)
        let stage = Stage<Int>(name: "test", settings: settings(queue: 2, overflow: .block)) { _ in gate.pass() }
        #expect(stage.submit(0) == .accepted)
        #expect(gate.awaitEntry())
        #expect(stage.submit(1) == .accepted)
        #expect(stage.submit(2) == .accepted)
        #expect(stage.submit(3, whenSpace: { spaceSignalled.signal() }) == .deferred)
        #expect(stage.snapshot().blocked == 1)
        #expect(spaceSignalled.wait(timeout: .now() + 0.05) == .timedOut)  // still full: no callback yet
        gate.release()  // the worker takes event 1, making room
        #expect(spaceSignalled.wait(timeout: .now() + 10) == .success)
        #expect(stage.submit(3, whenSpace: { Issue.record("there is room now") }) == .accepted)
        gate.release(3)
        #expect(drainSoon(stage))
        #expect(stage.snapshot().completed == 4)
    }

    /// An offer never waits nor leaves a waiter behind, even under `block`: a full queue refuses it.
    @Test func anOfferToAFullStageIsRefusedAndLeavesNothingWaiting() {
        let gate = Gate()
        let ran = Mutex<[Int]>([])
        let stage = Stage<Int>(name: "test", settings: settings(queue: 1, overflow: .block)) { batch in
            gate.pass()
            ran.withLock { $0 += batch }
        }
        #expect(stage.offer(0) == .accepted)
        #expect(gate.awaitEntry())
        #expect(stage.offer(1) == .accepted)
        #expect(stage.offer(2) == .rejected(.overloaded))
        #expect(stage.snapshot().rejected == 1 && stage.snapshot().blocked == 0)
        gate.release(2)
        #expect(drainSoon(stage))
        #expect(ran.withLock { $0 } == [0, 1])
    }

    @Test func blockPolicyMakesAThreadProducerWaitForRoom() {
        let gate = Gate()
        let stage = Stage<Int>(name: "test", settings: settings(queue: 1, overflow: .block)) { _ in gate.pass() }
        #expect(stage.submit(0) == .accepted)
        #expect(gate.awaitEntry())
        #expect(stage.submit(1) == .accepted)
        let producerDone = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            #expect(stage.submit(2) == .accepted)
            producerDone.signal()
        }
        // The producer is stuck until the worker takes event 1; wait for it to be counted as blocked.
        let deadline = Date().addingTimeInterval(10)
        while stage.snapshot().blocked == 0 && Date() < deadline { usleep(1000) }
        #expect(stage.snapshot().blocked == 1)
        #expect(producerDone.wait(timeout: .now() + 0.05) == .timedOut)
        gate.release()
        #expect(producerDone.wait(timeout: .now() + 10) == .success)
        gate.release(2)
        #expect(drainSoon(stage))
        #expect(stage.snapshot().completed == 3)
    }

    @Test func workersDrainUpToBatchSizePerWakeUp() {
        let gate = Gate()
        let batchSizes = Mutex<[Int]>([])
        let stage = Stage<Int>(name: "test", settings: settings(queue: 100, batch: 16)) { batch in
            batchSizes.withLock { $0.append(batch.count) }
            if batch == [0] { gate.pass() }
        }
        #expect(stage.submit(0) == .accepted)
        #expect(gate.awaitEntry())
        for event in 1...40 { #expect(stage.submit(event) == .accepted) }
        gate.release()
        #expect(drainSoon(stage))
        #expect(batchSizes.withLock { $0 } == [1, 16, 16, 8])
        #expect(stage.snapshot().service.count == 4)
    }

    @Test func inlineStageRunsOnTheSubmittingThread() {
        let handlerThread = Mutex<UInt?>(nil)
        let stage = Stage<Int>(name: "test", settings: settings(threads: 0, queue: 1, inline: true)) { _ in
            handlerThread.withLock { $0 = UInt(pthread_self()) }
        }
        #expect(stage.submit(1) == .accepted)
        #expect(handlerThread.withLock { $0 } == UInt(pthread_self()))
        #expect(stage.submit(2, whenSpace: {}) == .accepted)
        #expect(stage.snapshot().completed == 2)
        #expect(drainSoon(stage))
        #expect(stage.submit(3) == .rejected(.stopping))
    }

    @Test func drainRunsQueuedWorkThenRefusesNewWork() {
        let count = Atomic<Int>(0)
        let gate = Gate()
        let stage = Stage<Int>(name: "test", settings: settings(threads: 2, queue: 1000, batch: 10)) { batch in
            if batch.contains(0) { gate.pass() }
            count.add(batch.count, ordering: .relaxed)
        }
        #expect(stage.submit(0) == .accepted)
        #expect(gate.awaitEntry())
        for event in 1..<500 { #expect(stage.submit(event) == .accepted) }
        gate.release()
        #expect(drainSoon(stage))
        #expect(count.load(ordering: .relaxed) == 500)
        #expect(stage.submit(1) == .rejected(.stopping))
    }

    @Test func drainGivesUpAtTheDeadline() {
        let gate = Gate()
        let stage = Stage<Int>(name: "test", settings: settings(queue: 4)) { _ in gate.pass() }
        #expect(stage.submit(0) == .accepted)
        #expect(gate.awaitEntry())
        #expect(stage.drain(deadlineNs: monotonicNowNs() + 20_000_000) == false)
        gate.release()
        #expect(drainSoon(stage))
    }

    @Test func batchSubmitIsAllOrNothingUnderReject() {
        let gate = Gate()
        let handled = Mutex<[Int]>([])
        let stage = Stage<Int>(name: "test", settings: settings(queue: 4, batch: 4, overflow: .reject)) { batch in
            gate.pass()
            handled.withLock { $0.append(contentsOf: batch) }
        }
        #expect(stage.submit(0) == .accepted)
        #expect(gate.awaitEntry())
        #expect(stage.submit(contentsOf: [1, 2, 3]) == .accepted)
        #expect(stage.submit(contentsOf: [4, 5]) == .rejected(.overloaded))  // one slot left: none of the two is queued
        #expect(stage.snapshot().queueDepth == 3)
        #expect(stage.submit(contentsOf: [6]) == .accepted)
        gate.release(2)
        #expect(drainSoon(stage))
        #expect(handled.withLock { $0 } == [0, 1, 2, 3, 6])
    }

    @Test func batchSubmitLargerThanTheQueueGoesInPiecesUnderBlock() {
        let seen = Mutex<[Int]>([])
        let stage = Stage<Int>(name: "test", settings: settings(threads: 2, queue: 8, batch: 3, overflow: .block)) { batch in
            seen.withLock { $0.append(contentsOf: batch) }
        }
        #expect(stage.submit(contentsOf: Array(0..<1000)) == .accepted)
        #expect(drainSoon(stage))
        #expect(seen.withLock { $0 }.sorted() == Array(0..<1000))
        #expect(stage.snapshot().completed == 1000)
    }

    @Test func histogramsCountEveryRecordedValue() {
        var histogram = LatencyHistogram()
        for valueNs: UInt64 in [1_000, 2_000, 3_000, 1_000_000, 120_000_000_000] { histogram.record(valueNs) }
        #expect(histogram.count == 5)
        #expect(histogram.count(atMostNs: 10_000) == 3)
        #expect(histogram.count(atMostNs: UInt64.max) == 5)
        #expect(histogram.valueNs(atPercentile: 50) >= 2_900 && histogram.valueNs(atPercentile: 50) <= 3_100)
        #expect(histogram.sumNs == 1_000 + 2_000 + 3_000 + 1_000_000 + LatencyHistogram.valueNsMax)
    }
}
