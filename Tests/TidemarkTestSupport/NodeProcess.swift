import Foundation
import Synchronization

/// A built executable of this package, next to the test bundle (`swift build` puts it there).
public func builtProduct(_ name: String) throws -> String {
    if let override = ProcessInfo.processInfo.environment[name.uppercased().replacingOccurrences(of: "-", with: "_")] {
        return override
    }
    let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    let path = directory.appendingPathComponent(name).path
    guard FileManager.default.isExecutableFile(atPath: path) else {
        throw TestClientError(description: "\(path) is not built; run `swift build` first (make test does)")
    }
    return path
}

/// A fresh empty directory under the system's temporary directory.
public func temporaryDirectory(_ label: String) throws -> String {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("tidemark-\(label)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url.path
}

/// Text appended by pipe handlers and read by the test.
final class LockedText: Sendable {
    private let text = Mutex("")

    func append(_ data: Data) -> String {
        text.withLock { text in
            text += String(decoding: data, as: UTF8.self)
            return text
        }
    }

    var value: String { text.withLock { $0 } }
}

/// What a pipe has now; at end of stream it also removes the handler, which would otherwise spin.
private func readOrStop(_ handle: FileHandle) -> Data {
    let data = handle.availableData
    if data.isEmpty { handle.readabilityHandler = nil }
    return data
}

/// What a finished process printed and how it ended.
public struct ProcessResult: Sendable {
    public let status: Int32
    public let stdout: String
    public let stderr: String
}

/// Runs an executable to completion (bounded), capturing its output.
public func runProcess(_ path: String, _ arguments: [String], stdin: String? = nil, timeoutSeconds: Double = 60) throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    let out = Pipe(), err = Pipe(), input = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = input
    let outText = LockedText(), errText = LockedText()
    out.fileHandleForReading.readabilityHandler = { handle in _ = outText.append(readOrStop(handle)) }
    err.fileHandleForReading.readabilityHandler = { handle in _ = errText.append(readOrStop(handle)) }
    let exited = DispatchSemaphore(value: 0)
    process.terminationHandler = { _ in exited.signal() }
    try process.run()
    if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
    try input.fileHandleForWriting.close()
    guard exited.wait(timeout: .now() + timeoutSeconds) == .success else {
        kill(process.processIdentifier, SIGKILL)
        throw TestClientError(description: "\(path) did not finish within \(timeoutSeconds) s")
    }
    out.fileHandleForReading.readabilityHandler = nil
    err.fileHandleForReading.readabilityHandler = nil
    let stdout = outText.append(out.fileHandleForReading.readDataToEndOfFile())
    let stderr = errText.append(err.fileHandleForReading.readDataToEndOfFile())
    return ProcessResult(status: process.terminationStatus, stdout: stdout, stderr: stderr)
}

/// A `tidemarkd` started by a test: it waits for the ready line, knows the port the
/// system picked, and ends only its own process, by PID.
public final class NodeProcess: @unchecked Sendable {
    public let process: Process
    private let stderrText = LockedText()
    private let stdoutText = LockedText()
    private let exited = DispatchSemaphore(value: 0)
    /// Signalled when stderr reaches its end: everything the process wrote has been read.
    private let stderrEnded = DispatchSemaphore(value: 0)
    /// Signalled when the ready line came, or the process exited.
    private let readySignal = DispatchSemaphore(value: 0)
    private let readyPort = Mutex<Int?>(nil)

    /// The HTTP port the node said it is ready on (after `waitUntilReady`, or the waiting init).
    public var port: Int {
        guard let port = readyPort.withLock({ $0 }) else { preconditionFailure("the node is not ready: wait for it first") }
        return port
    }

    /// Whether the node has said it is ready (its port is open).
    public var saidReady: Bool { stdoutText.value.contains("tidemarkd ready http=") }

    /// Starts `tidemarkd ARGUMENTS` and waits (bounded) for `tidemarkd ready http=HOST:PORT`.
    public convenience init(arguments: [String], environment: [String: String] = [:], readyTimeoutSeconds: Double = 30) throws {
        try self.init(launching: arguments, environment: environment)
        try waitUntilReady(timeoutSeconds: readyTimeoutSeconds)
    }

    /// Starts `tidemarkd ARGUMENTS` without waiting: a node of a cluster opens its port only
    /// once a majority of the meta group is up, so a test starts them all, then waits.
    /// `environment` adds to the test's own (a failpoint, `TIDEMARK_FAILPOINTS`).
    public init(launching arguments: [String], environment: [String: String] = [:]) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: try builtProduct("tidemarkd"))
        process.arguments = arguments
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        let exited = exited, stderrText = stderrText, stderrEnded = stderrEnded, stdoutText = stdoutText, ready = readySignal
        out.fileHandleForReading.readabilityHandler = { handle in
            let text = stdoutText.append(readOrStop(handle))
            if text.contains("tidemarkd ready http=") && text.contains("\n") { ready.signal() }
        }
        err.fileHandleForReading.readabilityHandler = { handle in
            let data = readOrStop(handle)
            if data.isEmpty { stderrEnded.signal() } else { _ = stderrText.append(data) }
        }
        process.terminationHandler = { _ in
            exited.signal()
            ready.signal()
        }
        try process.run()
    }

    /// Waits (bounded) for the ready line; throws, killing the node, when it does not come.
    public func waitUntilReady(timeoutSeconds: Double = 30) throws {
        guard readyPort.withLock({ $0 }) == nil else { return }
        guard readySignal.wait(timeout: .now() + timeoutSeconds) == .success, process.isRunning else {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            throw TestClientError(description: "tidemarkd did not become ready; stderr: \(stderrText.value)")
        }
        let line = stdoutText.value.split(separator: "\n").first { $0.hasPrefix("tidemarkd ready http=") }!
        guard let port = Int(line.split(separator: ":").last ?? "") else {
            throw TestClientError(description: "cannot read the port from \(line)")
        }
        readyPort.withLock { $0 = port }
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    public var stderr: String { stderrText.value }

    /// Waits (bounded) for the node to exit by itself; its status, or nil (then it is killed).
    public func waitForExit(timeoutSeconds: Double = 30) -> Int32? {
        guard exited.wait(timeout: .now() + timeoutSeconds) == .success else {
            kill(process.processIdentifier, SIGKILL)
            return nil
        }
        exited.signal()  // a later `stop` finds it exited too
        _ = stderrEnded.wait(timeout: .now() + 10)
        return process.terminationStatus
    }

    /// Sends `signal` to this node's PID and waits (bounded) for it to exit; returns its status.
    public func stop(signal: Int32 = SIGTERM, timeoutSeconds: Double = 30) throws -> Int32 {
        kill(process.processIdentifier, signal)
        guard exited.wait(timeout: .now() + timeoutSeconds) == .success else {
            kill(process.processIdentifier, SIGKILL)
            throw TestClientError(description: "tidemarkd did not exit within \(timeoutSeconds) s of signal \(signal)")
        }
        // Exited: wait (bounded) until its last stderr lines are read, so `stderr` is whole.
        _ = stderrEnded.wait(timeout: .now() + 10)
        return process.terminationStatus
    }
}
