import Synchronization
import Foundation
import TidemarkCluster
import TidemarkConsensus
import TidemarkNet
import TidemarkStages
import TidemarkStorage

/// Renders `/metrics` in the Prometheus text exposition format (version 0.0.4).
struct MetricsText {
    static let contentType = "text/plain; version=0.0.4; charset=utf-8"
    /// Histogram bucket bounds, in seconds: 10 µs to 10 s.
    static let latencyBucketsSeconds: [Double] = [
        0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
        0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
    ]

    private var text = ""

    /// The whole page for the given readings.
    static func render(stages: [StageSnapshot], storage: EngineStats, regions: RegionMetrics = RegionMetrics(), health: NodeHealth, http: HTTPMetrics,
                       auth: AuthMetrics? = nil, cluster: ClusterStatus?, process: ProcessStats, uptimeSeconds: Double, startTimeSeconds: Double) -> String {
        var page = MetricsText()
        page.stageFamilies(stages)
        page.gauge("tidemark_storage_segments", "Segment files in use.", Double(storage.segments))
        page.gauge("tidemark_storage_segment_bytes", "Bytes of segment files in use.", Double(storage.segmentBytes))
        page.gauge("tidemark_storage_memtable_bytes", "Bytes held in active and sealed memtables.", Double(storage.memtableBytes))
        page.gauge("tidemark_storage_sealed_memtables", "Sealed memtables waiting for the flush stage.", Double(storage.sealedMemtables))
        page.gauge("tidemark_storage_tombstones", "Deletes still applied on read.", Double(storage.tombstones))
        page.counter("tidemark_storage_quarantined_segments_total", "Segments moved aside because a checksum failed.",
                     Double(storage.quarantinedSegments))
        page.gauge("tidemark_regions", "Region replicas this node holds.", Double(regions.held))
        page.gauge("tidemark_regions_leading", "Region replicas this node holds that lead their group.", Double(regions.leading))
        page.counter("tidemark_shared_log_fsyncs_total", "Fsyncs of the log a node's standalone regions share (one per batch however many regions it touched).",
                     Double(regions.sharedLogSyncs))
        for (name, help, value) in regions.routeCounters { page.counter(name, help, Double(value)) }
        page.healthFamilies(health)
        page.family("tidemark_http_requests_total", "counter", "HTTP responses sent, by route and status.")
        for (key, count) in http.responseCounts() {
            page.sample("tidemark_http_requests_total", ["route": key.route, "status": String(key.status)], Double(count))
        }
        page.gauge("tidemark_http_open_connections", "Client connections open now.", Double(http.openConnections.load(ordering: .relaxed)))
        page.counter("tidemark_http_accepted_connections_total", "Client connections accepted.",
                     Double(http.acceptedConnections.load(ordering: .relaxed)))
        page.counter("tidemark_http_refused_connections_total", "Connections refused because connections_max were open.",
                     Double(http.refusedConnections.load(ordering: .relaxed)))
        page.gauge("tidemark_http_body_bytes_in_flight", "Request body bytes read or being read and not yet answered (http.body_bytes_in_flight_max).",
                   Double(http.bodyBytesInFlight.load(ordering: .relaxed)))
        page.gauge("tidemark_http_reply_bytes_pending", "Reply bytes waiting to be sent now (http.reply_bytes_pending_max).",
                   Double(http.replyBytesPending.load(ordering: .relaxed)))
        page.counter("tidemark_http_body_budget_refusals_total", "Requests refused with 503 because their body did not fit the node's budget.",
                     Double(http.bodyBudgetRefusals.load(ordering: .relaxed)))
        page.counter("tidemark_http_reply_budget_closes_total", "Connections closed because their unsent replies passed a bound.",
                     Double(http.replyBudgetCloses.load(ordering: .relaxed)))
        page.counter("tidemark_http_reply_budget_refusals_total", "Large replies answered 503 because the node held too many unsent replies.",
                     Double(http.replyBudgetRefusals.load(ordering: .relaxed)))
        if let auth {
            page.counter("tidemark_auth_password_hashes_total", "Password hashes computed (on the auth stage).", Double(auth.hashes))
            page.counter("tidemark_auth_failed_logins_total", "Logins whose password check failed.", Double(auth.failed))
            page.counter("tidemark_auth_limited_logins_total", "Logins refused with 429 by the failed-login limiter, unhashed.", Double(auth.limited))
            page.counter("tidemark_auth_overloaded_logins_total", "Logins refused with 503 because the auth stage's queue was full.",
                         Double(auth.overloaded))
        }
        if let cluster { page.clusterFamilies(cluster) }
        page.gauge("process_resident_memory_bytes", "Resident memory size in bytes.", Double(process.residentBytes))
        page.gauge("process_open_fds", "Number of open file descriptors.", Double(process.openFileDescriptors))
        page.gauge("process_max_fds", "Maximum number of open file descriptors.", Double(process.fileDescriptorLimit))
        page.gauge("process_start_time_seconds", "Start time of the process since the Unix epoch, in seconds.", startTimeSeconds)
        page.gauge("tidemark_uptime_seconds", "Seconds since the node started.", uptimeSeconds)
        return page.text
    }

    private mutating func healthFamilies(_ health: NodeHealth) {
        gauge("tidemark_node_degraded", "1 while the node is degraded: writes refused (disk full, a failed log) or quarantined files present.",
              health.degraded ? 1 : 0)
        family("tidemark_node_degraded_reason", "gauge", "1 for each reason the node is degraded now.")
        for reason in ["disk_full", "log_failed", "quarantined_files"] {
            sample("tidemark_node_degraded_reason", ["reason": reason], health.reasons.contains(reason) ? 1 : 0)
        }
        gauge("tidemark_quarantined_files", "Files under the quarantine directories (damaged segments; log copies --repair set aside).",
              Double(health.quarantined.count))
        gauge("tidemark_storage_disk_full", "1 while log writes are refused for lack of space.", health.storage.diskFull ? 1 : 0)
        counter("tidemark_storage_disk_full_episodes_total", "Times log writes started being refused for lack of space.",
                Double(health.storage.diskFullEpisodes))
        counter("tidemark_storage_log_write_failures_total", "Log writes or fsyncs that failed, for any reason.",
                Double(health.storage.failedWrites))
    }

    private mutating func clusterFamilies(_ cluster: ClusterStatus) {
        let raft = cluster.raft
        counter("tidemark_raft_fsyncs_total", "fsyncs of the node's Raft log (one per round, for every group).", Double(raft?.fsyncs ?? 0))
        counter("tidemark_raft_rounds_total", "Raft rounds that persisted something.", Double(raft?.rounds ?? 0))
        counter("tidemark_raft_applied_entries_total", "Committed entries applied to state machines.", Double(raft?.appliedEntries ?? 0))
        counter("tidemark_raft_snapshots_sent_total", "Snapshots sent with a state-machine image (a follower behind the compacted log).",
                Double(raft?.snapshotsSent ?? 0))
        counter("tidemark_raft_snapshot_bytes_sent_total", "Bytes of the state-machine images those snapshots carried.",
                Double(raft?.snapshotBytesSent ?? 0))
        counter("tidemark_raft_snapshots_installed_total", "Snapshot images installed on this node.", Double(raft?.snapshotsInstalled ?? 0))
        counter("tidemark_raft_appends_held_total", "Appends this node let go as a follower while its apply side was behind (the leader sends them again).",
                Double(raft?.appendsHeld ?? 0))
        family("tidemark_raft_compacted_index", "gauge", "Last log index of each group compacted into a snapshot.")
        for group in cluster.groups where cluster.raft != nil { sample("tidemark_raft_compacted_index", ["group": group.name], Double(group.compacted)) }
        family("tidemark_raft_term", "gauge", "Current term of each group on this node.")
        for group in cluster.groups { sample("tidemark_raft_term", ["group": group.name], Double(group.term)) }
        family("tidemark_raft_is_leader", "gauge", "1 when this node leads the group.")
        for group in cluster.groups { sample("tidemark_raft_is_leader", ["group": group.name], group.role == "leader" ? 1 : 0) }
        family("tidemark_raft_quiesced", "gauge", "1 when the group is asleep here (idle: no ticks, no heartbeats).")
        for group in cluster.groups { sample("tidemark_raft_quiesced", ["group": group.name], group.quiesced ? 1 : 0) }
        family("tidemark_multileader_retained_entries", "gauge",
               "Own entries of a multi-leader group some peer still lacks; writes answer 503 past lag_entries_max.")
        for group in cluster.groups {
            if let retained = group.retainedEntries { sample("tidemark_multileader_retained_entries", ["group": group.name], Double(retained)) }
        }
        counter("tidemark_peer_frames_sent_total", "Internal RPC frames sent.", Double(cluster.framesSent))
        counter("tidemark_peer_frames_received_total", "Internal RPC frames received and accepted.", Double(cluster.framesReceived))
        counter("tidemark_peer_frames_dropped_total", "Frames not sent (peer down or too far behind); Raft sends again.", Double(cluster.framesDropped))
        counter("tidemark_peer_connections_refused_total", "Incoming internal connections refused because the limit was open.",
                Double(cluster.connectionsRefused))
        counter("tidemark_peer_connections_dialed_total", "Internal connections this node made (one per pair of nodes; again after a loss).",
                Double(cluster.connectionsDialed))
        family("tidemark_peer_frames_refused_total", "counter", "Connections cut for bad frames, by reason.")
        for (reason, count) in cluster.framesRefused.sorted(by: { $0.key < $1.key }) {
            sample("tidemark_peer_frames_refused_total", ["reason": reason], Double(count))
        }
    }

    private mutating func stageFamilies(_ stages: [StageSnapshot]) {
        typealias Reading = (String, String, String, (StageSnapshot) -> Double)
        let readings: [Reading] = [
            ("tidemark_stage_queue_depth", "gauge", "Events waiting in the stage's queue.", { Double($0.queueDepth) }),
            ("tidemark_stage_queue_capacity", "gauge", "Capacity of the stage's bounded queue.", { Double($0.settings.queueCapacity) }),
            ("tidemark_stage_threads", "gauge", "Worker threads of the stage (0 when inline).", { Double($0.settings.threads) }),
            ("tidemark_stage_busy_threads", "gauge", "Threads running the stage's handler now.", { Double($0.busyThreads) }),
            ("tidemark_stage_completed_total", "counter", "Events the stage has handled.", { Double($0.completed) }),
            ("tidemark_stage_blocked_total", "counter", "Submissions that found the queue full under overflow: block.", { Double($0.blocked) }),
            ("tidemark_stage_rejected_total", "counter", "Submissions refused because the queue was full under overflow: reject.", { Double($0.rejected) }),
        ]
        for (name, type, help, read) in readings {
            family(name, type, help)
            for stage in stages { sample(name, ["stage": stage.name], read(stage)) }
        }
        histogram("tidemark_stage_queue_wait_seconds", "Time events wait in the stage's queue.", stages.map { ($0.name, $0.queueWait) })
        histogram("tidemark_stage_service_seconds", "Time the stage's handler takes per batch.", stages.map { ($0.name, $0.service) })
    }

    private mutating func histogram(_ name: String, _ help: String, _ series: [(stage: String, LatencyHistogram)]) {
        family(name, "histogram", help)
        for (stage, histogram) in series {
            for bound in Self.latencyBucketsSeconds {
                let count = histogram.count(atMostNs: UInt64(bound * 1e9))
                sample(name + "_bucket", ["stage": stage, "le": Self.number(bound)], Double(count))
            }
            sample(name + "_bucket", ["stage": stage, "le": "+Inf"], Double(histogram.count))
            sample(name + "_sum", ["stage": stage], Double(histogram.sumNs) / 1e9)
            sample(name + "_count", ["stage": stage], Double(histogram.count))
        }
    }

    private mutating func gauge(_ name: String, _ help: String, _ value: Double) {
        family(name, "gauge", help)
        sample(name, [:], value)
    }

    private mutating func counter(_ name: String, _ help: String, _ value: Double) {
        family(name, "counter", help)
        sample(name, [:], value)
    }

    private mutating func family(_ name: String, _ type: String, _ help: String) {
        text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
    }

    private mutating func sample(_ name: String, _ labels: KeyValuePairs<String, String>, _ value: Double) {
        text += name
        if !labels.isEmpty {
            text += "{" + labels.map { "\($0.key)=\"\(Self.escapeLabel($0.value))\"" }.joined(separator: ",") + "}"
        }
        text += " \(Self.number(value))\n"
    }

    private static func number(_ value: Double) -> String {
        if value == value.rounded() && abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }

    private static func escapeLabel(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }
}

/// Readings of the authenticator for `/metrics`.
struct AuthMetrics: Sendable {
    let hashes: UInt64
    let failed: UInt64
    let limited: UInt64
    let overloaded: UInt64

    static func read(_ authenticator: Authenticator) -> AuthMetrics {
        AuthMetrics(hashes: authenticator.users.hashesComputed.load(ordering: .relaxed),
                    failed: authenticator.stats.failed.load(ordering: .relaxed),
                    limited: authenticator.stats.limited.load(ordering: .relaxed),
                    overloaded: authenticator.stats.overloaded.load(ordering: .relaxed))
    }
}

/// The regions a node holds, for `/metrics`.
struct RegionMetrics: Sendable {
    var held = 0
    var leading = 0
    var sharedLogSyncs = 0
    /// Forward-or-reject routing's counters (a cluster's nodes only): name, help, value.
    var routeCounters: [(String, String, Int)] = []

    static func read(_ regions: RegionSet, route: RouteMetrics?) -> RegionMetrics {
        let reports = regions.reports
        var metrics = RegionMetrics(held: reports.count, leading: reports.filter(\.isLeader).count,
                                    sharedLogSyncs: (regions.consensus as? StandaloneConsensus)?.sharedLogSyncs ?? 0)
        if let route {
            func load(_ counter: borrowing Atomic<Int>) -> Int { counter.load(ordering: .relaxed) }
            metrics.routeCounters = [
                ("tidemark_route_parts_sent_total", "Write parts this node, as coordinator, sent to the node leading their region group (retries included).", load(route.partsSent)),
                ("tidemark_route_parts_received_total", "Write parts received from coordinators.", load(route.partsReceived)),
                ("tidemark_route_forwards_total", "Write parts this node, a follower of their group, passed on to the leader.", load(route.partsForwarded)),
                ("tidemark_route_wrong_group_sent_total", "WRONG_GROUP answers this node gave (it holds no replica of the group).", load(route.wrongGroupAnswered)),
                ("tidemark_route_wrong_group_received_total", "WRONG_GROUP answers this node got as coordinator.", load(route.wrongGroupHeard)),
                ("tidemark_route_retries_total", "Write parts sent again: elsewhere, or once the group elected a leader.", load(route.retries)),
                ("tidemark_route_fragments_sent_total", "Query fragments this node, as coordinator, sent to other nodes.", load(route.fragmentsSent)),
                ("tidemark_route_fragments_received_total", "Query fragments run here for other nodes' statements.", load(route.fragmentsReceived)),
            ]
        }
        return metrics
    }
}
