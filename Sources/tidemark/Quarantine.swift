import ArgumentParser
import Foundation

/// `tidemark quarantine`: the files a node moved aside (damaged segments, log copies that
/// `tidemarkd --repair` set aside), from its `GET /quarantine`, like etcd's `alarm list`.
struct Quarantine: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the node's quarantined files (damaged segments, damaged logs set aside by --repair) and why it is degraded.")

    @OptionGroup var connection: Connection
    @Flag(help: "Print the node's JSON instead of a table.") var json = false

    func run() throws {
        let response = try connection.send("GET", "/quarantine")
        let text = String(decoding: response.body, as: UTF8.self)
        guard response.status == 200 else { throw ValidationFailure("the node answered \(response.status): \(text)") }
        if json { return print(text) }
        guard let object = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any],
              let files = object["files"] as? [[String: Any]], let reasons = object["reasons"] as? [String] else {
            throw ValidationFailure("the node's /quarantine answer is not what this tool understands: \(text)")
        }
        print(reasons.isEmpty ? "node: healthy" : "node: degraded (\(reasons.joined(separator: ", ")))")
        guard !files.isEmpty else { return print("no quarantined files") }
        print("KIND     BYTES        PATH (under data_dir)")
        for file in files {
            let kind = (file["kind"] as? String ?? "?").padding(toLength: 8, withPad: " ", startingAt: 0)
            let bytes = String(file["bytes"] as? Int ?? 0).padding(toLength: 12, withPad: " ", startingAt: 0)
            print("\(kind) \(bytes) \(file["path"] as? String ?? "?")")
        }
    }
}
