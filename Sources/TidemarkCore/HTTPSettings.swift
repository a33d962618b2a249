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
    /// Unsent reply bytes of one connection; past it the edge stops reading it.
    public var writeBufferBytesMax = 4 * 1024 * 1024

    public init() {}
}
