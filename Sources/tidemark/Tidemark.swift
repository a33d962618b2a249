import ArgumentParser
import Foundation
import TidemarkNet
import TidemarkServer

/// The Tidemark command-line client and admin tool.
@main
struct Tidemark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tidemark",
        abstract: "Client and admin tool for Tidemark nodes.",
        subcommands: [SQL.self, Write.self, Bench.self, Stages.self, Quarantine.self, ClusterCommand.self, PlanBench.self])
}

/// Where a node answers, from `--url`.
struct NodeURL: ExpressibleByArgument {
    let host: String
    let port: Int

    init?(argument: String) {
        guard let url = URL(string: argument), url.scheme == "http", let host = url.host, !host.isEmpty else { return nil }
        self.host = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
        port = url.port ?? 18080
    }

    static var defaultValueDescription: String { "http://127.0.0.1:18080" }
}

struct Stages: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show each stage's threads, queue, throughput and latency (like nodetool tpstats).")

    @Option(help: "The node's HTTP address.")
    var url = NodeURL(argument: "http://127.0.0.1:18080")!

    @Flag(help: "Print the node's JSON instead of a table.")
    var json = false

    @Option(help: "Give up after this many milliseconds.")
    var timeoutMs: UInt64 = 10_000

    @Option(help: "User name (the password comes from TIDEMARK_PASSWORD, default root).")
    var user = "root"

    func run() throws {
        let response: HTTPClientResponse
        do {
            let password = ProcessInfo.processInfo.environment["TIDEMARK_PASSWORD"] ?? "root"
            let credentials = Data("\(user):\(password)".utf8).base64EncodedString()
            response = try HTTPClient.send(host: url.host, port: url.port, method: "GET", target: "/stages",
                                           headers: [("Authorization", "Basic \(credentials)")], timeoutMs: timeoutMs)
        } catch {
            throw ValidationFailure("cannot reach the node: \(error)")
        }
        guard response.status == 200 else {
            throw ValidationFailure("the node answered \(response.status): \(String(decoding: response.body, as: UTF8.self))")
        }
        if json {
            print(String(decoding: response.body, as: UTF8.self))
            return
        }
        let reports: [StageReport]
        do {
            reports = try StageReport.decode(response.body)
        } catch {
            throw ValidationFailure("the node's /stages answer is not what this tool understands: \(error)")
        }
        print(StageReport.table(reports), terminator: "")
    }
}

/// A failure the tool reports in one line and exits 1 for.
struct ValidationFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
