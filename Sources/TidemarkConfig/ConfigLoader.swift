import TidemarkIO
import TidemarkCore
import TidemarkStorage
import Yams

/// Builds a `NodeConfig` from the embedded `stages.yaml`, an optional stages file
/// and an optional node config, each layer overriding the one before.
public enum ConfigLoader {
    /// The label the embedded defaults carry in error messages.
    public static let embeddedStagesFile = "stages.yaml (embedded)"

    /// The text of the repository's `stages.yaml`, compiled into the binary.
    public static var embeddedStagesYAML: String { String(decoding: PackageResources.stages_yaml, as: UTF8.self) }

    /// Stage sizing from the embedded `stages.yaml`, which must name every stage and key.
    public static func defaultStages() throws(ConfigError) -> [StageName: StageSettings] {
        try stages(fromCompleteFile: embeddedStagesYAML, file: embeddedStagesFile)
    }

    /// Defaults, then `stagesPath` (a partial `stages.yaml`), then `configPath` (a node config).
    public static func load(configPath: String?, stagesPath: String? = nil) throws(ConfigError) -> NodeConfig {
        var config = NodeConfig(stages: try defaultStages())
        if let stagesPath {
            let reader = YAMLReader(file: stagesPath)
            let root = try reader.root(of: try readConfigFile(stagesPath))
            try applyStages(root, key: nil, reader: reader, to: &config.stages)
        }
        if let configPath {
            config = try apply(nodeConfig: try readConfigFile(configPath), file: configPath, to: config)
        }
        return config
    }

    /// Applies the node config in `text` on top of `base`.
    public static func apply(nodeConfig text: String, file: String, to base: NodeConfig) throws(ConfigError) -> NodeConfig {
        let reader = YAMLReader(file: file)
        var config = base
        var secretAt: Node?  // where cluster_secret was set, to point at when it is refused
        let keys = ["node_name", "data_dir", "cluster_name", "http", "auth", "native", "internal", "meta_peers", "cluster_secret", "data_consensus", "raft",
                    "node_unknown_after_ms", "series_slot_num", "time_partition_interval_ms", "schema_replication_factor", "data_replication_factor",
                    "schema_consensus", "data_region_groups_per_database", "schema_region_groups_per_database", "wal_sync", "storage", "query", "route", "log_level", "shutdown_timeout_ms", "stages"]
        for (name, node) in try reader.entries(try reader.root(of: text), key: nil) {
            switch name {
            case "node_name": config.nodeName = try nonEmpty(reader.string(node, key: name), node, name, reader)
            case "data_dir": config.dataDir = try nonEmpty(reader.string(node, key: name), node, name, reader)
            case "cluster_name":
                let clusterName = try nonEmpty(reader.string(node, key: name), node, name, reader)
                // Every hello carries it, and a hello is read before its sender is trusted with more.
                guard clusterName.utf8.count <= ClusterIdentity.nameBytesMax else {
                    throw reader.error(at: node, key: name, "must be at most \(ClusterIdentity.nameBytesMax) bytes (got \(clusterName.utf8.count)): "
                                           + "nodes send it in the hello of every internal connection")
                }
                config.clusterName = clusterName
            case "http": try applyHTTP(node, reader: reader, to: &config.http)
            case "auth": try applyAuth(node, reader: reader, to: &config.auth)
            case "native": config.nativeListen = try listenOnly(node, key: name, reader: reader)
            case "internal": config.internalListen = try listenOnly(node, key: name, reader: reader)
            case "meta_peers":
                config.metaPeers = try reader.strings(node, key: name).map { text throws(ConfigError) in
                    switch ListenAddress.parse(text) {
                    case .success(let address): return address
                    case .failure(let problem): throw reader.error(at: node, key: name, problem.reason)
                    }
                }
            case "cluster_secret":
                config.clusterSecret = try nonEmpty(reader.string(node, key: name), node, name, reader)
                secretAt = node
            case "data_consensus": config.dataConsensus = try reader.choice(node, key: name, as: DataConsensusKind.self)
            case "raft": try applyRaft(node, reader: reader, to: &config)
            case "node_unknown_after_ms": config.nodeUnknownAfterMs = try positive(node, key: name, reader: reader)
            case "series_slot_num": config.fixed.seriesSlotNum = try bounded(node, key: name, 1...Int(Int32.max), reader: reader)
            case "time_partition_interval_ms": config.storage.partitionInterval = Int64(try positive(node, key: name, reader: reader))
            case "schema_replication_factor": config.fixed.schemaReplicationFactor = try bounded(node, key: name, 1...64, reader: reader)
            case "data_replication_factor": config.fixed.dataReplicationFactor = try bounded(node, key: name, 1...64, reader: reader)
            case "schema_consensus":
                let kind = try reader.choice(node, key: name, as: ReplicationKind.self)
                guard kind != .multiLeader else {
                    throw reader.error(at: node, key: name, "schema regions replicate with raft (or standalone, with one replica), as IoTDB's do")
                }
                config.fixed.schemaConsensus = kind
            case "data_region_groups_per_database": config.fixed.dataRegionGroupsPerDatabase = try bounded(node, key: name, 0...(1 << 20), reader: reader)
            case "schema_region_groups_per_database": config.fixed.schemaRegionGroupsPerDatabase = try bounded(node, key: name, 1...(1 << 20), reader: reader)
            case "wal_sync": config.storage.walSync = try walSync(node, reader: reader)
            case "storage": try applyStorage(node, reader: reader, to: &config.storage)
            case "query": try applyQuery(node, reader: reader, to: &config.query)
            case "route": try applyRoute(node, reader: reader, to: &config.route)
            case "log_level": config.logLevel = try reader.choice(node, key: name, as: LogLevelName.self)
            case "shutdown_timeout_ms": config.shutdownTimeoutMs = try positive(node, key: name, reader: reader)
            case "stages": try applyStages(node, key: "stages", reader: reader, to: &config.stages)
            default: throw reader.unknownKey(name, at: node, parent: nil, allowed: keys)
            }
        }
        for (key, factor) in [("schema_replication_factor", config.fixed.schemaReplicationFactor), ("data_replication_factor", config.fixed.dataReplicationFactor)] {
            if factor > 1 && config.metaPeers.isEmpty {
                throw ConfigError(file: file, key: key, line: nil, column: nil, message: "is \(factor), but a single node (no meta_peers) holds one copy")
            }
        }
        if config.fixed.schemaConsensus == .standalone && config.fixed.schemaReplicationFactor > 1 {
            throw ConfigError(file: file, key: "schema_consensus", line: nil, column: nil,
                              message: "standalone keeps one copy; schema_replication_factor is \(config.fixed.schemaReplicationFactor) (use raft)")
        }
        if !config.metaPeers.isEmpty {
            // A node whose internal.listen is not listed is a data-only node: it joins through them.
            guard config.clusterSecret != nil else {
                throw ConfigError(file: file, key: "cluster_secret", line: nil, column: nil, message: "is required with meta_peers")
            }
        }
        try checkSecretExposure(config, file: file, line: secretAt?.mark?.line)
        return config
    }

    /// Refuses the shipped placeholder `cluster_secret` on a node reachable from other
    /// machines (`http.listen` or `internal.listen` not on loopback; a wildcard host is
    /// every interface, so not loopback): anyone who has read the sample configs could sign
    /// frames for it. Run again after command-line overrides of the addresses.
    public static func checkSecretExposure(_ config: NodeConfig, file: String, line: Int? = nil) throws(ConfigError) {
        guard config.clusterSecret == ClusterIdentity.placeholderSecret else { return }
        let addresses = [(key: "http.listen", address: config.http.listen), (key: "internal.listen", address: config.internalListen)]
        guard let (key, address) = addresses.first(where: { !$0.address.isLoopback }).map({ ($0.key, $0.address) }) else { return }
        throw ConfigError(file: file, key: "cluster_secret", line: line, column: nil,
                          message: "is the sample placeholder \"\(ClusterIdentity.placeholderSecret)\", and \(key) \(address) is not a loopback "
                              + "address: anyone who read the sample configs could join this cluster. Give every node the same secret of "
                              + "its own, e.g. the output of `openssl rand -hex 32`")
    }

    // MARK: - Stages

    static func stages(fromCompleteFile text: String, file: String) throws(ConfigError) -> [StageName: StageSettings] {
        let reader = YAMLReader(file: file)
        let root = try reader.root(of: text)
        var partial: [StageName: PartialStage] = [:]
        for (name, node) in try reader.entries(root, key: nil) {
            guard let stage = StageName(rawValue: name) else {
                throw reader.unknownKey(name, at: node, parent: nil, allowed: StageName.allCases.map(\.rawValue))
            }
            partial[stage] = try PartialStage(node, key: name, reader: reader)
        }
        var result: [StageName: StageSettings] = [:]
        for stage in StageName.allCases {
            guard let settings = partial[stage]?.complete() else {
                throw ConfigError(file: file, key: stage.rawValue, line: nil, column: nil,
                                  message: "every stage must set threads, queue, batch, overflow and inline")
            }
            result[stage] = settings
        }
        return result
    }

    static func applyStages(_ node: Node, key: String?, reader: YAMLReader,
                            to stages: inout [StageName: StageSettings]) throws(ConfigError) {
        for (name, stageNode) in try reader.entries(node, key: key) {
            let stageKey = key.map { "\($0).\(name)" } ?? name
            guard let stage = StageName(rawValue: name) else {
                throw reader.unknownKey(name, at: stageNode, parent: key, allowed: StageName.allCases.map(\.rawValue))
            }
            let override = try PartialStage(stageNode, key: stageKey, reader: reader)
            let merged = override.applied(to: stages[stage]!)
            if let problem = merged.problem {
                throw reader.error(at: stageNode, key: "\(stageKey).\(problem.key)", problem.message)
            }
            stages[stage] = merged
        }
    }

    /// The keys one stage's mapping may set, each optional.
    private struct PartialStage {
        static let keys = ["threads", "queue", "batch", "overflow", "inline"]
        var threads: Int?
        var queueCapacity: Int?
        var batchSize: Int?
        var overflow: OverflowPolicy?
        var inline: Bool?

        init(_ node: Node, key: String, reader: YAMLReader) throws(ConfigError) {
            for (name, value) in try reader.entries(node, key: key) {
                let valueKey = "\(key).\(name)"
                switch name {
                case "threads": threads = try reader.int(value, key: valueKey)
                case "queue": queueCapacity = try reader.int(value, key: valueKey)
                case "batch": batchSize = try reader.int(value, key: valueKey)
                case "overflow": overflow = try reader.choice(value, key: valueKey, as: OverflowPolicy.self)
                case "inline": inline = try reader.bool(value, key: valueKey)
                default: throw reader.unknownKey(name, at: value, parent: key, allowed: Self.keys)
                }
            }
        }

        func applied(to base: StageSettings) -> StageSettings {
            StageSettings(threads: threads ?? base.threads, queueCapacity: queueCapacity ?? base.queueCapacity,
                          batchSize: batchSize ?? base.batchSize, overflow: overflow ?? base.overflow,
                          inline: inline ?? base.inline)
        }

        func complete() -> StageSettings? {
            guard let threads, let queueCapacity, let batchSize, let overflow, let inline else { return nil }
            return StageSettings(threads: threads, queueCapacity: queueCapacity, batchSize: batchSize,
                                 overflow: overflow, inline: inline)
        }
    }

    // MARK: - Other sections

    private static func applyHTTP(_ node: Node, reader: YAMLReader, to http: inout HTTPSettings) throws(ConfigError) {
        let keys = ["listen", "header_bytes_max", "body_bytes_max", "connections_max", "idle_timeout_ms",
                    "request_timeout_ms", "pipeline_depth_max", "write_buffer_bytes_max", "connection_reply_bytes_max",
                    "reply_bytes_pending_max", "body_bytes_in_flight_max", "connection_body_bytes_max"]
        var bodyBoundSet: (name: String, at: Node)?  // the last of the pair below set, to point at when it does not hold
        for (name, value) in try reader.entries(node, key: "http") {
            let key = "http.\(name)"
            switch name {
            case "listen": http.listen = try reader.listenAddress(value, key: key)
            case "header_bytes_max": http.headerBytesMax = try positive(value, key: key, reader: reader)
            case "body_bytes_max": http.bodyBytesMax = try positive(value, key: key, reader: reader)
            case "connections_max": http.connectionsMax = try positive(value, key: key, reader: reader)
            case "idle_timeout_ms": http.idleTimeoutMs = try positive(value, key: key, reader: reader)
            case "request_timeout_ms": http.requestTimeoutMs = try positive(value, key: key, reader: reader)
            case "pipeline_depth_max": http.pipelineDepthMax = try positive(value, key: key, reader: reader)
            case "write_buffer_bytes_max": http.writeBufferBytesMax = try positive(value, key: key, reader: reader)
            case "connection_reply_bytes_max": http.connectionReplyBytesMax = try positive(value, key: key, reader: reader)
            case "reply_bytes_pending_max": http.replyBytesPendingMax = try positive(value, key: key, reader: reader)
            case "body_bytes_in_flight_max": http.bodyBytesInFlightMax = try positive(value, key: key, reader: reader)
            case "connection_body_bytes_max": http.connectionBodyBytesMax = try positive(value, key: key, reader: reader)
            default: throw reader.unknownKey(name, at: value, parent: "http", allowed: keys)
            }
            if name == "body_bytes_max" || name == "connection_body_bytes_max" { bodyBoundSet = (name, value) }
        }
        // One body must fit in what one connection may hold.
        if let set = bodyBoundSet, http.bodyBytesMax > http.connectionBodyBytesMax {
            throw reader.error(at: set.at, key: "http.\(set.name)",
                               "http.body_bytes_max (\(http.bodyBytesMax)) must not exceed http.connection_body_bytes_max "
                                   + "(\(http.connectionBodyBytesMax)): one body must fit in what one connection may hold")
        }
    }

    private static func applyAuth(_ node: Node, reader: YAMLReader, to auth: inout AuthSettings) throws(ConfigError) {
        let keys = ["failed_logins_per_client_max", "failed_logins_per_user_max", "failed_login_window_ms", "limiter_entries_max",
                    "threads", "queue"]
        for (name, value) in try reader.entries(node, key: "auth") {
            let key = "auth.\(name)"
            switch name {
            case "failed_logins_per_client_max": auth.failedLoginsPerClientMax = try positive(value, key: key, reader: reader)
            case "failed_logins_per_user_max": auth.failedLoginsPerUserMax = try positive(value, key: key, reader: reader)
            case "failed_login_window_ms": auth.failedLoginWindowMs = try positive(value, key: key, reader: reader)
            case "limiter_entries_max":
                let entries = try positive(value, key: key, reader: reader)
                guard entries >= 2 else { throw reader.error(at: value, key: key, "must be at least 2 (a login takes an address and a name)") }
                auth.limiterEntriesMax = entries
            case "threads": auth.threads = try positive(value, key: key, reader: reader)
            case "queue": auth.queueCapacity = try positive(value, key: key, reader: reader)
            default: throw reader.unknownKey(name, at: value, parent: "auth", allowed: keys)
            }
        }
    }

    private static func listenOnly(_ node: Node, key: String, reader: YAMLReader) throws(ConfigError) -> ListenAddress {
        var address: ListenAddress?
        for (name, value) in try reader.entries(node, key: key) {
            guard name == "listen" else { throw reader.unknownKey(name, at: value, parent: key, allowed: ["listen"]) }
            address = try reader.listenAddress(value, key: "\(key).listen")
        }
        guard let address else { throw reader.error(at: node, key: "\(key).listen", "is required in this section") }
        return address
    }

    private static func applyRaft(_ node: Node, reader: YAMLReader, to config: inout NodeConfig) throws(ConfigError) {
        let keys = ["tick_ms", "election_ticks", "catch_up_bytes_max", "apply_backlog_bytes_max", "snapshot_chunk_bytes", "snapshot_bytes_max"]
        for (name, value) in try reader.entries(node, key: "raft") {
            let key = "raft.\(name)"
            switch name {
            case "tick_ms": config.raftTickMs = try positive(value, key: key, reader: reader)
            case "election_ticks":
                let ticks = try positive(value, key: key, reader: reader)
                guard ticks >= 3 else { throw reader.error(at: value, key: key, "must be at least 3 (heartbeats go every tick)") }
                config.raftElectionTicks = ticks
            case "catch_up_bytes_max": config.raftCatchUpBytesMax = try positive(value, key: key, reader: reader)
            case "apply_backlog_bytes_max": config.raftApplyBacklogBytesMax = try positive(value, key: key, reader: reader)
            case "snapshot_chunk_bytes":
                let bytes = try positive(value, key: key, reader: reader)
                // A piece travels in one frame of at most 64 MiB with the rest of a round.
                guard bytes <= 16 << 20 else { throw reader.error(at: value, key: key, "must be at most 16777216 (16 MiB): a piece goes in one frame") }
                config.raftSnapshotChunkBytes = bytes
            case "snapshot_bytes_max": config.raftSnapshotBytesMax = try positive(value, key: key, reader: reader)
            default: throw reader.unknownKey(name, at: value, parent: "raft", allowed: keys)
            }
        }
    }

    private static func applyQuery(_ node: Node, reader: YAMLReader, to query: inout QueryLimits) throws(ConfigError) {
        let keys = ["statement_bytes_max", "nesting_depth_max", "rows_default", "memory_bytes_max"]
        for (name, value) in try reader.entries(node, key: "query") {
            let key = "query.\(name)"
            switch name {
            case "statement_bytes_max": query.statementBytesMax = try positive(value, key: key, reader: reader)
            case "nesting_depth_max": query.nestingDepthMax = try positive(value, key: key, reader: reader)
            case "rows_default": query.rowsDefault = try positive(value, key: key, reader: reader)
            case "memory_bytes_max": query.memoryBytesMax = try positive(value, key: key, reader: reader)
            default: throw reader.unknownKey(name, at: value, parent: "query", allowed: keys)
            }
        }
    }

    private static func applyRoute(_ node: Node, reader: YAMLReader, to route: inout RouteSettings) throws(ConfigError) {
        let keys = ["retries_max", "timeout_ms"]
        for (name, value) in try reader.entries(node, key: "route") {
            let key = "route.\(name)"
            switch name {
            case "retries_max": route.retriesMax = try bounded(value, key: key, 0...100, reader: reader)
            case "timeout_ms": route.timeoutMs = try positive(value, key: key, reader: reader)
            default: throw reader.unknownKey(name, at: value, parent: "route", allowed: keys)
            }
        }
    }

    private static func applyStorage(_ node: Node, reader: YAMLReader, to storage: inout EngineOptions) throws(ConfigError) {
        let keys = ["memtable_bytes_max", "memtable_age_ms_max", "sealed_memtables_max", "compression_level",
                    "compaction_trigger_segments", "compaction_input_bytes_max", "compaction_bytes_per_second_max", "compaction_idle_ms",
                    "scan_batch_points", "write_points_max", "fields_per_line_max", "series_per_write_max", "auto_create_schema", "path_depth_max", "level_bytes_max",
                    "series_per_database_max"]
        for (name, value) in try reader.entries(node, key: "storage") {
            let key = "storage.\(name)"
            switch name {
            case "memtable_bytes_max": storage.memtableBytesMax = try positive(value, key: key, reader: reader)
            case "memtable_age_ms_max": storage.memtableAgeMsMax = try positive(value, key: key, reader: reader)
            case "sealed_memtables_max": storage.sealedMemtablesMax = try positive(value, key: key, reader: reader)
            case "compression_level":
                let level = try reader.int(value, key: key)
                guard (1...19).contains(level) else { throw reader.error(at: value, key: key, "must be from 1 to 19 (got \(level))") }
                storage.compressionLevel = Int32(level)
            case "partition_interval_ms":
                throw reader.error(at: value, key: key, "is now the cluster-wide time_partition_interval_ms (a top-level key, fixed when the cluster is made)")
            case "compaction_trigger_segments":
                let count = try reader.int(value, key: key)
                guard count >= 2 else { throw reader.error(at: value, key: key, "must be at least 2 (got \(count))") }
                storage.compactionTriggerSegments = count
            case "compaction_input_bytes_max": storage.compactionInputBytesMax = try positive(value, key: key, reader: reader)
            case "compaction_bytes_per_second_max": storage.compactionBytesPerSecondMax = try positive(value, key: key, reader: reader)
            case "compaction_idle_ms":
                let ms = try reader.int(value, key: key)
                guard ms >= 0 else { throw reader.error(at: value, key: key, "must be 0 (never) or more (got \(ms))") }
                storage.compactionIdleMs = ms
            case "scan_batch_points": storage.scanBatchPoints = try positive(value, key: key, reader: reader)
            case "write_points_max": storage.writePointsMax = try positive(value, key: key, reader: reader)
            case "fields_per_line_max": storage.fieldsPerLineMax = try positive(value, key: key, reader: reader)
            case "series_per_write_max": storage.seriesPerWriteMax = try positive(value, key: key, reader: reader)
            case "auto_create_schema": storage.autoCreateSchema = try reader.bool(value, key: key)
            case "path_depth_max": storage.schemaLimits.pathDepthMax = try positive(value, key: key, reader: reader)
            case "level_bytes_max": storage.schemaLimits.levelBytesMax = try positive(value, key: key, reader: reader)
            case "series_per_database_max": storage.schemaLimits.seriesPerDatabaseMax = try positive(value, key: key, reader: reader)
            default: throw reader.unknownKey(name, at: value, parent: "storage", allowed: keys)
            }
        }
    }

    private static func walSync(_ node: Node, reader: YAMLReader) throws(ConfigError) -> WALSyncPolicy {
        if let intervalMs = node.int, case .scalar(let scalar) = node, scalar.style == .plain {
            guard intervalMs >= 1 else { throw reader.error(at: node, key: "wal_sync", "an interval must be at least 1 ms") }
            return .intervalMs(intervalMs)
        }
        switch try reader.string(node, key: "wal_sync") {
        case "always": return .always
        case "batch": return .batch
        case let word: throw reader.error(at: node, key: "wal_sync", "expected always, batch or an interval in ms, got \"\(word)\"")
        }
    }

    private static func bounded(_ node: Node, key: String, _ range: ClosedRange<Int>, reader: YAMLReader) throws(ConfigError) -> Int {
        let value = try reader.int(node, key: key)
        guard range.contains(value) else {
            throw reader.error(at: node, key: key, "must be from \(range.lowerBound) to \(range.upperBound) (got \(value))")
        }
        return value
    }

    private static func positive(_ node: Node, key: String, reader: YAMLReader) throws(ConfigError) -> Int {
        let value = try reader.int(node, key: key)
        guard value >= 1 else { throw reader.error(at: node, key: key, "must be at least 1 (got \(value))") }
        return value
    }

    private static func nonEmpty(_ value: String, _ node: Node, _ key: String, _ reader: YAMLReader) throws(ConfigError) -> String {
        guard !value.isEmpty else { throw reader.error(at: node, key: key, "must not be empty") }
        return value
    }
}
