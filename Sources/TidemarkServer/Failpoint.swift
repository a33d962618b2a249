import Foundation

/// Named places where a test makes the node die as a crash would (etcd's gofail, in spirit):
/// `TIDEMARK_FAILPOINTS=name[,name…]` in the environment. Unset, they cost one set lookup.
enum Failpoint {
    static let active: Set<String> = Set((ProcessInfo.processInfo.environment["TIDEMARK_FAILPOINTS"] ?? "")
        .split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })

    /// Ends the process at once, with no clean-up, when `name` is active.
    static func crash(if name: String) {
        guard active.contains(name) else { return }
        FileHandle.standardError.write(Data("tidemarkd: failpoint \(name): crashing\n".utf8))
        _exit(86)
    }
}
