import Foundation
import Testing
import TidemarkTestSupport

/// The samples of metric `name` on a `/metrics` page.
func metricSamples(_ page: String, _ name: String) -> [String] {
    page.split(separator: "\n").filter { $0.hasPrefix(name + " ") || $0.hasPrefix(name + "{") }.map(String.init)
}

/// Writes batches of 500 points to `root.sg.m.a.v` (each a log record of several KiB, more
/// than a page's slack), remembering the timestamps acknowledged and why a batch was refused.
final class BatchWriter {
    private let client: TestHTTPClient
    private var batch = 0
    private(set) var acknowledged: Set<Int> = []
    /// The answer to the first batch refused since the disk was filled.
    private(set) var refusal = ""

    init(_ client: TestHTTPClient) { self.client = client }

    /// Writes the next batch; returns its status.
    func write() throws -> Int {
        let timestamps = (0..<500).map { batch * 500 + $0 }
        let lines = timestamps.map { "m,dev=a v=\($0)i \($0)" }.joined(separator: "\n")
        let answer = try client.request("POST", "/write?db=sg&precision=ms", body: Array(lines.utf8))
        batch += 1
        if answer.status == 204 { acknowledged.formUnion(timestamps) } else if refusal.isEmpty { refusal = answer.text }
        return answer.status
    }

    /// Fills `disk`, then writes 20 batches: some must be refused for lack of space, and the
    /// node's /ping must say it is degraded. Returns the filler file (remove it to free space).
    func fill(_ disk: Tmpfs) throws -> String {
        refusal = ""
        let filler = try disk.fill(leaveBytes: 0)
        var refusals = 0
        for _ in 0..<20 where try write() != 204 { refusals += 1 }
        #expect(refusals > 0)
        #expect(refusal.contains("No space left on device"), "refused with: \(refusal)")
        let ping = try client.request("GET", "/ping")
        #expect(ping.status == 503 && ping.text.contains("DEGRADED: disk_full"), "\(ping.status) \(ping.text)")
        return filler
    }
}
