import TidemarkIO
import Foundation
import TidemarkStorage

/// `--repair` met a damaged log of a group with other replicas, and cut nothing at all.
public struct LogRepairRefused: Error, Sendable, CustomStringConvertible {
    /// The damaged files of replicated groups' logs.
    public let paths: [String]

    public var description: String {
        "\(paths.joined(separator: ", ")): a replicated group's log (Raft or multi-leader) is damaged in the middle, and --repair"
            + " does not cut one: its records are terms, votes and entries other replicas count on, so a cut could make this node"
            + " vote twice in a term or lose entries a quorum acknowledged. Nothing was cut. Restore the file from a backup, or"
            + " remove this node's replica from its group, move its raft/, multileader/ and regions/ directories aside, and add"
            + " it back as a new replica: the group then sends it a snapshot"
    }
}

/// `tidemarkd --repair`: every log under the data directory that is damaged in the middle is
/// copied to `<data_dir>/quarantine/logs/<its path>` and cut where the damage starts. Every
/// log is judged first: if a replicated group's log is among the damaged, nothing is cut.
public enum LogRepairRun {
    /// Where the logs of groups with other replicas live under the data directory: Raft's
    /// (every group's in one log) and multi-leader's (one per group), as `ClusterWiring` lays them out.
    static let replicatedLogDirectories = ["raft", "multileader"]

    public static func run(dataDir: String) throws -> [LogRepairAction] {
        let root = URL(fileURLWithPath: dataDir).standardizedFileURL.path
        var directories: Set<String> = []
        guard let walk = FileManager.default.enumerator(atPath: root) else { return [] }
        while let relative = walk.nextObject() as? String {
            // What is already aside stays as it is.
            if relative == "quarantine" || relative.hasSuffix("/quarantine") {
                walk.skipDescendants()
                continue
            }
            if relative.hasSuffix(".wal") { directories.insert((relative as NSString).deletingLastPathComponent) }
        }
        var plans: [(relative: String, plan: LogRepairPlan)] = []
        for directory in directories.sorted() {
            // The users log cannot lose an acknowledged last record (a password change): judged as UserStore judges it.
            if let plan = try FileWAL.repairPlan(directory: directory.isEmpty ? root : root + "/" + directory,
                                                 wholeLastRecordIsDamage: ["users", "meta/users"].contains(directory)) {
                plans.append((directory, plan))
            }
        }
        let refused = plans.filter { isReplicated($0.relative) }
        guard refused.isEmpty else { throw LogRepairRefused(paths: refused.map(\.plan.path)) }
        var actions: [LogRepairAction] = []
        for (directory, plan) in plans {
            actions += try FileWAL.carryOut(plan, asideDirectory: root + "/quarantine/logs" + (directory.isEmpty ? "" : "/" + directory))
        }
        return actions
    }

    /// Whether the log in `relative` (a directory under the data directory) is a replicated group's.
    static func isReplicated(_ relative: String) -> Bool {
        let top = relative.split(separator: "/").first.map(String.init) ?? ""
        return replicatedLogDirectories.contains(top)
    }
}
