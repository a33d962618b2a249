import ArgumentParser
import Foundation
import Synchronization
import TidemarkNet

/// `tidemark bench`: an ingestion load generator over `/write` (line protocol).
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load a node with line protocol: devices × fields of random walks, for a duration.",
        discussion: "Each connection thread sends one batch at a time. Prints points/s, p50/p99 latency and errors.")

    @OptionGroup var connection: Connection
    @Option(help: "Devices.") var devices = 1000
    @Option(help: "Fields per device.") var fields = 10
    @Option(help: "Lines per request.") var batchLines = 5000
    @Option(help: "Concurrent connections.") var connections = 4
    @Option(help: "Seconds to run.") var duration = 10.0
    @Option(help: "Database.") var db = "bench"

    /// Counters shared by the connection threads.
    final class Tally: Sendable {
        let state = Mutex<(points: Int, errors: Int, latenciesMs: [Double], firstError: String?)>((0, 0, [], nil))
    }

    func validate() throws {
        guard devices > 0, fields > 0, batchLines > 0, connections > 0, connections <= 256, duration > 0 else {
            throw ValidationError("devices, fields, batch-lines and duration must be positive; connections 1…256")
        }
    }

    func run() throws {
        let tally = Tally()
        let deadline = Date().addingTimeInterval(duration)
        let started = Date()
        let group = DispatchGroup()
        let connection = connection, devices = devices, fields = fields, batchLines = batchLines, db = db
        for worker in 0..<connections {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                var generator = SystemRandomNumberGenerator()
                var walks = [Int64](repeating: 5000, count: devices * fields)
                var tick: Int64 = Int64(worker) * 1_000_000_000
                var device = 0
                while Date() < deadline {
                    var body = ""
                    body.reserveCapacity(batchLines * (40 + fields * 12))
                    for _ in 0..<batchLines {
                        body += "sensors,device=dev\(device) "
                        for field in 0..<fields {
                            walks[device * fields + field] += Int64.random(in: -20...20, using: &generator)
                            let value = walks[device * fields + field]
                            body += (field == 0 ? "" : ",") + "f\(field)=\(value / 100).\(String(format: "%02lld", abs(value % 100)))"
                        }
                        body += " \(1_700_000_000_000 + tick)\n"
                        device += 1
                        if device == devices { device = 0; tick += 10_000 }
                    }
                    let sent = Date()
                    let outcome: (ok: Bool, error: String?)
                    do {
                        let response = try connection.send("POST", "/write?db=\(db)&precision=ms", body: Array(body.utf8), contentType: "text/plain")
                        outcome = response.status == 204 ? (true, nil) : (false, "HTTP \(response.status) \(String(decoding: response.body.prefix(200), as: UTF8.self))")
                    } catch {
                        outcome = (false, "\(error)")
                    }
                    let latencyMs = Date().timeIntervalSince(sent) * 1000
                    tally.state.withLock { state in
                        state.latenciesMs.append(latencyMs)
                        if outcome.ok { state.points += batchLines * fields } else {
                            state.errors += 1
                            if state.firstError == nil { state.firstError = outcome.error }
                        }
                    }
                }
            }
        }
        group.wait()
        let seconds = Date().timeIntervalSince(started)
        let (points, errors, latencies, firstError) = tally.state.withLock { ($0.points, $0.errors, $0.latenciesMs.sorted(), $0.firstError) }
        func percentile(_ p: Double) -> Double { latencies.isEmpty ? 0 : latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] }
        print(String(format: "%d points in %.1f s: %.0f points/s, %d requests, p50 %.1f ms, p99 %.1f ms, %d errors",
                     points, seconds, Double(points) / seconds, latencies.count, percentile(0.5), percentile(0.99), errors))
        if let firstError { print("first error: \(firstError)") }
        if errors > 0 { throw ExitCode(1) }
    }
}
