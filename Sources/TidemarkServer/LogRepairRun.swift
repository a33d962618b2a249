import Foundation
import TidemarkStorage

/// `tidemarkd --repair`: every log under the data directory that is damaged in the middle is
/// copied to `<data_dir>/quarantine/logs/<its path>` and cut where the damage starts.
public enum LogRepairRun {
    public static func run(dataDir: String) throws -> [LogRepairAction] {
        var actions: [LogRepairAction] = []
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
        for directory in directories.sorted() {
            let path = directory.isEmpty ? root : root + "/" + directory
            actions += try FileWAL.repair(directory: path, asideDirectory: root + "/quarantine/logs" + (directory.isEmpty ? "" : "/" + directory))
        }
        return actions
    }
}
