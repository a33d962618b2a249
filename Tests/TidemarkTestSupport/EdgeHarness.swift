import Foundation
import TidemarkCore
import TidemarkNet

/// A request handler made of a closure, for edge tests.
public struct ClosureHandler: HTTPRequestHandler {
    let body: @Sendable (HTTPRequest, HTTPResponder, @escaping @Sendable () -> Void) -> HandOff

    public func handle(_ request: HTTPRequest, responder: HTTPResponder, whenSpace: @escaping @Sendable () -> Void) -> HandOff {
        body(request, responder, whenSpace)
    }
}

/// An HTTP server on its own event-loop thread, on a port the system picks.
public final class EdgeHarness: Sendable {
    public let loop: EventLoop
    public let server: HTTPServer
    public let port: Int
    private let stopped = DispatchSemaphore(value: 0)

    public convenience init(settings: HTTPSettings = HTTPSettings(),
                            handler: @escaping @Sendable (HTTPRequest, HTTPResponder, @escaping @Sendable () -> Void) -> HandOff) throws {
        try self.init(settings: settings, requestHandler: ClosureHandler(body: handler))
    }

    /// A server with any handler, e.g. one that admits requests from their heads.
    public init(settings: HTTPSettings = HTTPSettings(), requestHandler: HTTPRequestHandler) throws {
        var settings = settings
        settings.listen = ListenAddress(host: "127.0.0.1", port: 0)
        loop = try EventLoop()
        server = HTTPServer(loop: loop, settings: settings, handler: requestHandler)
        port = try server.start().port
        let loop = loop, stopped = stopped
        Thread.detachNewThread {
            loop.run()
            stopped.signal()
        }
    }

    /// An echo server: answers `METHOD TARGET BODY` from a background queue.
    public convenience init(settings: HTTPSettings = HTTPSettings()) throws {
        try self.init(settings: settings) { request, responder, _ in
            DispatchQueue.global().async {
                let text = "\(request.method) \(request.target) \(String(decoding: request.body, as: UTF8.self))"
                responder.respond(HTTPResponse(status: 200, contentType: "text/plain", body: Array(text.utf8), route: "/echo"))
            }
            return .accepted
        }
    }

    public func client() throws -> TestHTTPClient { try TestHTTPClient(port: port) }

    /// Graceful stop; true when the loop thread finished within the bound.
    public func stop() -> Bool {
        let server = server, loop = loop
        loop.execute { server.shutdown { loop.close() } }
        return stopped.wait(timeout: .now() + 10) == .success
    }
}
