import TidemarkIO
import Foundation
import TidemarkCore
import TidemarkNet
import TidemarkStorage

/// A file moved aside because it failed its checks: a segment the engine quarantined, or
/// a log file `tidemarkd --repair` copied aside before cutting it.
struct QuarantinedFile: Sendable, Equatable {
    /// Relative to the data directory.
    var path: String
    var bytes: Int
    /// `segment` or `log`.
    var kind: String
}

/// Why a node is degraded, for `/ping`, `/metrics`, `/cluster` and `/quarantine`: writes
/// refused (disk full, a failed log) or data moved aside (quarantined files, which stay until
/// an operator restores or removes them, so a restart does not hide them).
struct NodeHealth: Sendable {
    /// Where quarantined files live under the data directory: each region's damaged segments,
    /// and the copies `--repair` made of damaged logs.
    static func quarantineDirectories(dataDir: String) -> [String] {
        let regions = (try? FileIO.list(dataDir + "/regions")) ?? []
        return regions.map { "regions/\($0)/quarantine" } + ["quarantine"]
    }

    var storage: StorageHealth.Reading
    var quarantined: [QuarantinedFile]

    /// Writes are refused now: `/ping` answers 503.
    var refusesWrites: Bool { storage.diskFull || storage.logFailed }
    var reasons: [String] {
        (storage.diskFull ? ["disk_full"] : []) + (storage.logFailed ? ["log_failed"] : []) + (quarantined.isEmpty ? [] : ["quarantined_files"])
    }
    var degraded: Bool { !reasons.isEmpty }

    /// The node's health now; without `listingQuarantine` (for `/ping`, which any client may
    /// call as often as it likes) no directory is walked and quarantined files are not counted.
    static func read(dataDir: String, storage: StorageHealth, listingQuarantine: Bool = true) -> NodeHealth {
        storage.refresh()
        return NodeHealth(storage: storage.reading, quarantined: listingQuarantine ? listQuarantine(dataDir: dataDir) : [])
    }

    /// Every file under the quarantine directories (a missing directory holds none).
    static func listQuarantine(dataDir: String) -> [QuarantinedFile] {
        var files: [QuarantinedFile] = []
        for directory in quarantineDirectories(dataDir: dataDir) {
            let root = URL(fileURLWithPath: dataDir + "/" + directory)
            guard let walk = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey, .fileSizeKey]) else { continue }
            for case let url as URL in walk {
                guard let values = try? url.resourceValues(forKeys: [.isRegularFileKey, .fileSizeKey]), values.isRegularFile == true else { continue }
                let relative = directory + "/" + url.path.dropFirst(root.path.count + 1)
                files.append(QuarantinedFile(path: relative, bytes: values.fileSize ?? 0, kind: directory == "quarantine" ? "log" : "segment"))
            }
        }
        return files.sorted { $0.path < $1.path }
    }

    /// `GET /quarantine`.
    var quarantineJSON: String {
        let list = quarantined.map { "{\"path\":\(jsonQuoted($0.path)),\"kind\":\(jsonQuoted($0.kind)),\"bytes\":\($0.bytes)}" }
        return "{\"degraded\":\(degraded),\"reasons\":[\(reasons.map { jsonQuoted($0) }.joined(separator: ","))],\"files\":[\(list.joined(separator: ","))]}"
    }

    /// The fields `/cluster` adds for this node.
    var clusterJSONFields: String {
        "\"degraded\":\(degraded),\"degraded_reasons\":[\(reasons.map { jsonQuoted($0) }.joined(separator: ","))],\"quarantined_files\":\(quarantined.count)"
    }
}
