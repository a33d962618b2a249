/// The HTTP edge's address and limits (node config `http:`).
public struct HTTPSettings: Sendable, Equatable {
    public var listen = ListenAddress(host: "127.0.0.1", port: 18080)
    /// Request line plus headers; more gets 431.
    public var headerBytesMax = 16 * 1024
    /// Request body, declared or chunked; more gets 413.
    public var bodyBytesMax = 32 * 1024 * 1024
    /// Open client connections; past it new ones get 503 and are closed.
    public var connectionsMax = 1024
    /// A keep-alive connection with no request in progress is closed after this.
    public var idleTimeoutMs = 60_000
    /// A request must arrive whole within this of its first byte, or it gets 408.
    public var requestTimeoutMs = 30_000
    /// Requests of one connection being served at once; past it the edge stops reading it.
    public var pipelineDepthMax = 32
    /// Reply bytes of one connection waiting to be sent (answered out of order, or queued for
    /// the socket); past it the edge reads and starts no more of its requests until they drain.
    public var writeBufferBytesMax = 4 * 1024 * 1024
    /// Reply bytes one connection may have waiting: a reply that would put it past this while
    /// earlier replies of it are still unsent closes the connection (it pipelines faster than
    /// it reads). A connection with nothing waiting always gets its reply.
    public var connectionReplyBytesMax = 64 * 1024 * 1024
    /// Reply bytes waiting to be sent on all connections together: a reply that would pass it
    /// closes its connection if that one still has unsent bytes, and is answered 503 instead
    /// if it is over 64 KiB. (Stopping every connection instead would let one client that
    /// never reads stop the node.)
    public var replyBytesPendingMax = 256 * 1024 * 1024
    /// Request body bytes on all connections together, counted from an admitted head until
    /// the request is answered (so bodies waiting in the stages count too); a body that does
    /// not fit gets 503 and the connection is closed.
    public var bodyBytesInFlightMax = 256 * 1024 * 1024
    /// Request body bytes one connection may hold, counted as for `bodyBytesInFlightMax`
    /// (received, and waiting in the stages until answered). A request whose declared body
    /// would pass it is read no further until the connection's earlier requests are answered
    /// and release theirs; a chunked body stops being read at it likewise, so it may pass it
    /// by one read (64 KiB). A connection holding nothing always takes a body up to
    /// `bodyBytesMax`, which the config loader keeps at or below this.
    public var connectionBodyBytesMax = 64 * 1024 * 1024

    public init() {}
}
