import DequeModule
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import TidemarkCore

/// What happened to an event handed to a stage.
public enum SubmitResult: Sendable, Equatable {
    /// Queued (or, inline, already handled).
    case accepted
    /// Refused: the queue is full under `overflow: reject`, or the stage is stopping.
    case rejected(RejectReason)
    /// The queue is full under `overflow: block`; the event was not queued and the
    /// caller's `whenSpace` runs once there is room, so it can submit again.
    case deferred
}

public enum RejectReason: Sendable, Equatable {
    case overloaded
    case stopping
}

/// The face of a stage that does not depend on its event type: stats and lifecycle.
public protocol StageMonitor: AnyObject, Sendable {
    var name: String { get }
    var settings: StageSettings { get }
    func snapshot() -> StageSnapshot
    /// Stops taking events, runs what is queued, and waits for the workers to exit.
    /// Returns false if the monotonic clock passed `deadlineNs` first.
    func drain(deadlineNs: UInt64) -> Bool
}

/// A SEDA stage: a bounded queue drained in batches by a pool of dedicated threads.
///
/// Workers sleep until the queue goes from empty to non-empty; the producer that
/// makes that transition wakes one, and a worker that leaves events behind wakes
/// the next idle one, so a burst fans out without a wake-up per event.
/// `@unchecked Sendable`: every mutable field is protected by `lock`.
public final class Stage<Event: Sendable>: StageMonitor, @unchecked Sendable {
    public typealias Handler = @Sendable (_ batch: [Event]) -> Void

    private struct Queued {
        let event: Event
        let enqueuedNs: UInt64
    }

    private enum State { case running, draining, stopped }

    // Condition variables of `lock`.
    private static var workAvailable: Int { 0 }
    private static var spaceAvailable: Int { 1 }
    private static var workerExited: Int { 2 }

    public let name: String
    public let settings: StageSettings
    private let handler: Handler
    private let stats = StageStats()
    private let lock = ConditionLock(conditions: 3)
    private var queue: Deque<Queued>  // protected by lock
    private var state = State.running  // protected by lock
    private var idleWorkers = 0  // protected by lock
    private var liveWorkers = 0  // protected by lock
    private var blockedProducers = 0  // protected by lock
    private var spaceWaiters: [@Sendable () -> Void] = []  // protected by lock

    /// Builds the stage and starts its workers (none when inline).
    public init(name: String, settings: StageSettings, handler: @escaping Handler) {
        precondition(settings.problem == nil, "invalid settings for stage \(name): \(String(describing: settings.problem))")
        self.name = name
        self.settings = settings
        self.handler = handler
        self.queue = Deque(minimumCapacity: settings.inline ? 0 : min(settings.queueCapacity, 1024))
        guard !settings.inline else { return }
        liveWorkers = settings.threads
        for index in 0..<settings.threads {
            let threadName = "\(name)-\(index)"
            let thread = Thread { [self] in
                nameCurrentThread(threadName)
                workerLoop()
            }
            thread.name = threadName
            thread.start()
        }
    }

    /// Hands `event` to the stage without ever blocking the caller (for the event loop).
    /// On `.deferred`, `whenSpace` is called once, from a worker thread, when there is room.
    public func submit(_ event: Event, whenSpace: @escaping @Sendable () -> Void) -> SubmitResult {
        if settings.inline { return runInline(event) }
        lock.lock()
        if let refusal = refusal() {
            lock.unlock()
            return refusal
        }
        if queue.count < settings.queueCapacity {
            enqueueLocked(event)
            return .accepted
        }
        guard settings.overflow == .block else { return rejectLocked() }
        spaceWaiters.append(whenSpace)
        lock.unlock()
        stats.blocked.add(1, ordering: .relaxed)
        return .deferred
    }

    /// Hands `event` to the stage if there is room now, whatever the overflow policy: a full
    /// queue refuses it (`.rejected(.overloaded)`, counted) and nothing waits for space. For
    /// work that is sent again anyway (Raft rounds, apply runs).
    public func offer(_ event: Event) -> SubmitResult {
        if settings.inline { return runInline(event) }
        lock.lock()
        if let refusal = refusal() {
            lock.unlock()
            return refusal
        }
        guard queue.count < settings.queueCapacity else { return rejectLocked() }
        enqueueLocked(event)
        return .accepted
    }

    /// Hands `event` to the stage; under `overflow: block` a full queue makes the
    /// calling thread wait for room. For producers that are not the event loop.
    public func submit(_ event: Event) -> SubmitResult {
        if settings.inline { return runInline(event) }
        lock.lock()
        var counted = false
        while true {
            if let refusal = refusal() {
                lock.unlock()
                return refusal
            }
            if queue.count < settings.queueCapacity { break }
            guard settings.overflow == .block else { return rejectLocked() }
            waitForSpaceLocked(counted: &counted)
        }
        enqueueLocked(event)
        return .accepted
    }

    /// Hands several events over under one lock (one wake-up) from a thread that is not
    /// the event loop. Under `reject` it is all or nothing: if the queue has no room for
    /// every event, none is queued. Under `block` it waits for room, queueing in pieces.
    public func submit(contentsOf events: [Event]) -> SubmitResult {
        precondition(settings.overflow == .block || events.count <= settings.queueCapacity,
                     "a batch larger than the queue can never be accepted under reject")
        if settings.inline {
            if let refusal = lock.withLock({ refusal() }) { return refusal }
            runHandler(events, waitsNs: repeatElement(0, count: events.count))
            return .accepted
        }
        var remaining = events[...]
        var counted = false
        lock.lock()
        while !remaining.isEmpty {
            if let refusal = refusal() {
                lock.unlock()
                return refusal
            }
            let room = settings.queueCapacity - queue.count
            if settings.overflow == .reject && remaining.count > room { return rejectLocked() }
            guard room > 0 else {
                waitForSpaceLocked(counted: &counted)
                continue
            }
            let wasEmpty = queue.isEmpty
            let nowNs = monotonicNowNs()
            let piece = remaining.prefix(room)
            for event in piece { queue.append(Queued(event: event, enqueuedNs: nowNs)) }
            remaining = remaining.dropFirst(piece.count)
            if wasEmpty && idleWorkers > 0 { lock.signal(Self.workAvailable) }
        }
        lock.unlock()
        return .accepted
    }

    public func snapshot() -> StageSnapshot {
        let depth = lock.withLock { queue.count }
        let latencies = stats.latencySnapshot()
        return StageSnapshot(
            name: name, settings: settings, queueDepth: depth,
            busyThreads: stats.busyThreads.load(ordering: .relaxed),
            completed: stats.completed.load(ordering: .relaxed),
            blocked: stats.blocked.load(ordering: .relaxed),
            rejected: stats.rejected.load(ordering: .relaxed),
            queueWait: latencies.queueWait, service: latencies.service)
    }

    public func drain(deadlineNs: UInt64) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if state == .running { state = .draining }
        let waiters = spaceWaiters
        spaceWaiters.removeAll()
        lock.broadcast(Self.workAvailable)
        lock.broadcast(Self.spaceAvailable)
        // Deferred producers learn of the stop when they submit again.
        lock.unlock()
        for waiter in waiters { waiter() }
        lock.lock()
        while liveWorkers > 0 {
            if !lock.wait(Self.workerExited, untilNs: deadlineNs) && monotonicNowNs() >= deadlineNs { break }
        }
        if liveWorkers == 0 { state = .stopped }
        return liveWorkers == 0
    }

    // MARK: - Internals

    /// Why a submit must be refused before looking at the queue; the caller holds the lock.
    private func refusal() -> SubmitResult? {
        state == .running ? nil : .rejected(.stopping)
    }

    /// Counts a refusal of a full queue under `reject`; releases the lock.
    private func rejectLocked() -> SubmitResult {
        lock.unlock()
        stats.rejected.add(1, ordering: .relaxed)
        return .rejected(.overloaded)
    }

    /// Sleeps until a worker makes room; the first wait of a submission counts as blocked.
    /// The caller holds the lock, and holds it again on return.
    private func waitForSpaceLocked(counted: inout Bool) {
        if !counted {
            stats.blocked.add(1, ordering: .relaxed)
            counted = true
        }
        blockedProducers += 1
        lock.wait(Self.spaceAvailable)
        blockedProducers -= 1
    }

    /// Appends and wakes a worker on the empty-to-non-empty edge; releases the lock.
    private func enqueueLocked(_ event: Event) {
        precondition(queue.count < settings.queueCapacity)
        let wasEmpty = queue.isEmpty
        queue.append(Queued(event: event, enqueuedNs: monotonicNowNs()))
        let wake = wasEmpty && idleWorkers > 0
        lock.unlock()
        if wake { lock.signal(Self.workAvailable) }
    }

    private func runInline(_ event: Event) -> SubmitResult {
        if let refusal = lock.withLock({ refusal() }) { return refusal }
        runHandler([event], waitsNs: CollectionOfOne(0))
        return .accepted
    }

    /// Runs the handler on the calling thread and records it.
    private func runHandler(_ batch: [Event], waitsNs: some Sequence<UInt64>) {
        stats.busyThreads.add(1, ordering: .relaxed)
        let startNs = monotonicNowNs()
        handler(batch)
        stats.recordBatch(waitsNs: waitsNs, serviceNs: monotonicNowNs() - startNs, events: batch.count)
        stats.busyThreads.subtract(1, ordering: .relaxed)
    }

    private func workerLoop() {
        var batch: [Event] = []
        var waitsNs: [UInt64] = []
        batch.reserveCapacity(settings.batchSize)
        waitsNs.reserveCapacity(settings.batchSize)
        lock.lock()
        while true {
            if queue.isEmpty && state == .running {
                // Yield once before sleeping: under load the producer often refills the
                // queue within a time slice, and a yield is far cheaper than a futex sleep
                // and wake-up pair.
                lock.unlock()
                sched_yield()
                lock.lock()
            }
            while queue.isEmpty && state == .running {
                idleWorkers += 1
                lock.wait(Self.workAvailable)
                idleWorkers -= 1
            }
            if queue.isEmpty { break }  // draining and nothing left

            let wasFull = queue.count == settings.queueCapacity
            let nowNs = monotonicNowNs()
            let take = min(settings.batchSize, queue.count)
            for _ in 0..<take {
                let queued = queue.removeFirst()
                batch.append(queued.event)
                waitsNs.append(nowNs &- queued.enqueuedNs)
            }
            let wakeAnother = !queue.isEmpty && idleWorkers > 0
            let wakeProducers = wasFull && blockedProducers > 0
            let waiters = spaceWaiters
            spaceWaiters.removeAll()
            lock.unlock()

            if wakeAnother { lock.signal(Self.workAvailable) }
            if wakeProducers { lock.broadcast(Self.spaceAvailable) }
            for waiter in waiters { waiter() }

            runHandler(batch, waitsNs: waitsNs)
            batch.removeAll(keepingCapacity: true)
            waitsNs.removeAll(keepingCapacity: true)
            lock.lock()
        }
        liveWorkers -= 1
        lock.unlock()
        lock.broadcast(Self.workerExited)
    }
}

/// Names the calling thread for `top -H`, `ps -L` and `perf` ("append-0", "decode-1"; Linux
/// keeps 15 bytes). Best effort: a system without /proc keeps the default name.
private func nameCurrentThread(_ name: String) {
    #if os(Linux)
    let descriptor = open("/proc/thread-self/comm", O_WRONLY)
    guard descriptor >= 0 else { return }
    let bytes = Array(name.utf8.prefix(15))
    _ = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
    close(descriptor)
    #endif
}
