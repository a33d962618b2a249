import TidemarkCore

/// When appended records are made durable (node config `wal_sync`).
public enum WALSyncPolicy: Sendable, Equatable {
    /// Every write is appended and fsynced on its own before it is acknowledged.
    case always
    /// Group commit: the append stage gathers many client writes into one append, and
    /// appends that arrive while an fsync runs share the next one.
    case batch
    /// fsync at most every so many milliseconds; an append returns once written and the
    /// caller waits for `waitDurable` before acknowledging.
    case intervalMs(Int)
}

/// What recovery found in the log.
public struct WALReplayReport: Sendable, Equatable {
    public var records = 0
    public var lastSequence: UInt64 = 0
    /// Bytes of a torn tail that were cut off (an append a crash cut short; nothing valid followed).
    public var bytesCut = 0
    /// The file whose torn tail was cut, and the byte it now ends at.
    public var cutPath: String?
    public var cutOffset = 0

    public init(records: Int = 0, lastSequence: UInt64 = 0, bytesCut: Int = 0, cutPath: String? = nil, cutOffset: Int = 0) {
        self.records = records
        self.lastSequence = lastSequence
        self.bytesCut = bytesCut
        self.cutPath = cutPath
        self.cutOffset = cutOffset
    }
}

/// The write-ahead record of a region: the storage engine's only durable record of
/// writes not yet in a segment. Standalone it is a `FileWAL`; under consensus the
/// Raft log takes its place behind this same interface.
public protocol WriteAheadLog: AnyObject, Sendable {
    /// Appends `payloads` in order and returns the sequence given to the last one.
    /// Under `always` they are durable on return; otherwise call `waitDurable`, which
    /// lets concurrent writers share one fsync (group commit).
    func append(_ payloads: [[UInt8]]) throws -> UInt64
    /// Waits until every record up to `sequence` is durable.
    func waitDurable(_ sequence: UInt64) throws
    /// Calls `callback` (with nil, or the sync error) once every record up to `sequence` is
    /// durable, without blocking the caller: how writes are acknowledged under `intervalMs`.
    func whenDurable(_ sequence: UInt64, _ callback: @escaping @Sendable (Error?) -> Void)
    /// Starts a new file, so the records before can be dropped once they are in segments.
    func rotate() throws
    /// Drops whole files whose records all have sequences at most `sequence`.
    func truncate(through sequence: UInt64) throws
    /// Calls `body` for every durable record in order and cuts a torn tail; throws
    /// `LogDamageError` (naming file and offset) on damage in the middle, cutting nothing.
    func replay(_ body: (_ sequence: UInt64, _ payload: [UInt8]) throws -> Void) throws -> WALReplayReport
    func close()
}
