import ArgumentParser
import Foundation

/// `tidemark cluster status`: the cluster as the node's meta group sees it.
struct ClusterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster", abstract: "The cluster as its meta group sees it.", subcommands: [Status.self])

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every registered node, its role, status and regions, and the meta leader.")

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
            // Regions per node: replicas of data and schema groups, and how many it leads.
            let groups = meta["region_groups"] as? [[String: Any]] ?? []
            func regions(of id: Int, _ kind: String) -> Int {
                groups.filter { ($0["id"] as? String)?.hasPrefix(kind) == true && ($0["replicas"] as? [Int])?.contains(id) == true }.count
            }
            func leads(_ id: Int) -> Int { groups.filter { $0["leader"] as? Int == id }.count }
            print(cell("NODE", 6) + cell("ROLE", 13) + cell("STATUS", 10) + cell("DATA", 6) + cell("SCHEMA", 8) + cell("LEADS", 7)
                  + cell("INTERNAL", 24) + "CLIENT")
            for node in nodes {
                let id = node["id"] as? Int ?? 0
                let role = (node["meta_member"] as? Bool) == true ? "meta + data" : "data"
                print(cell("\(id)", 6) + cell(role, 13) + cell(node["status"] as? String ?? "?", 10) + cell("\(regions(of: id, "data"))", 6)
                      + cell("\(regions(of: id, "schema"))", 8) + cell("\(leads(id))", 7)
                      + cell(node["internal"] as? String ?? "?", 24) + (node["client"] as? String ?? "?"))
            }
            print("\(groups.count) region groups")
        }
    }
}
