import ArgumentParser
import Foundation

/// `tidemark cluster status`: the cluster as the node's meta group sees it.
struct ClusterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster", abstract: "The cluster as its meta group sees it.", subcommands: [Status.self])

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every registered node, its role and status, and the meta leader.")

        @OptionGroup var connection: Connection
        @Flag(help: "Print the node's JSON instead of a table.") var json = false

        func run() throws {
            let response = try connection.send("GET", "/cluster")
            let text = String(decoding: response.body, as: UTF8.self)
            guard response.status == 200 else { throw ValidationFailure("the node answered \(response.status): \(text)") }
            if json { return print(text) }
            guard let object = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any],
                  let meta = object["meta"] as? [String: Any], let nodes = meta["registered_nodes"] as? [[String: Any]] else {
                throw ValidationFailure("the node's /cluster answer is not what this tool understands: \(text)")
            }
            let leader = (meta["leader"] as? Int).map { "node \($0)" } ?? "none known"
            print("meta leader: \(leader); route version \(meta["route_version"] as? Int ?? 0); partition table version \(meta["table_version"] as? Int ?? 0)")
            func cell(_ text: String, _ width: Int) -> String { text.padding(toLength: max(width, text.count), withPad: " ", startingAt: 0) }
            print(cell("NODE", 6) + cell("ROLE", 18) + cell("STATUS", 10) + cell("INTERNAL", 24) + "CLIENT")
            for node in nodes {
                let role = (node["meta_member"] as? Bool) == true ? "meta + data" : "data"
                print(cell("\(node["id"] as? Int ?? 0)", 6) + cell(role, 18) + cell(node["status"] as? String ?? "?", 10)
                      + cell(node["internal"] as? String ?? "?", 24) + (node["client"] as? String ?? "?"))
            }
        }
    }
}
