import Foundation
import Testing
import TidemarkCore
import TidemarkStorage
@testable import TidemarkConfig

/// Writes `text` to a fresh temporary file and returns its path.
func temporaryFile(_ text: String, name: String = "node.yaml") throws -> String {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tidemark-config-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let path = directory.appendingPathComponent(name).path
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

/// The error loading `yaml` as a node config gives, or nil when it loads.
func loadError(_ yaml: String) throws -> ConfigError? {
    let path = try temporaryFile(yaml)
    do {
        _ = try ConfigLoader.load(configPath: path)
        return nil
    } catch {
        return error
    }
}

@Suite struct ConfigLoaderTests {
    @Test func embeddedDefaultsAreTheRepositoryStagesFile() throws {
        let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let onDisk = try String(contentsOf: repositoryRoot.appendingPathComponent("stages.yaml"), encoding: .utf8)
        #expect(onDisk == ConfigLoader.embeddedStagesYAML)
        let stages = try ConfigLoader.defaultStages()
        #expect(Set(stages.keys) == Set(StageName.allCases))
        for (_, settings) in stages { #expect(settings.problem == nil) }
    }

    @Test func emptyConfigGivesDefaults() throws {
        let config = try ConfigLoader.load(configPath: try temporaryFile(""))
        #expect(config.stages == NodeConfig(stages: try ConfigLoader.defaultStages()).stages)
        #expect(config.storage.walSync == .batch)
        #expect(config.dataDir == "./data")
        #expect(config.http.listen == ListenAddress(host: "127.0.0.1", port: 18080))
    }

    @Test func nodeConfigOverridesOnlyTheKeysItNames() throws {
        let config = try ConfigLoader.load(configPath: try temporaryFile("""
            node_name: n7
            data_dir: /var/lib/tidemark/n7
            http:
              listen: 0.0.0.0:9000
              body_bytes_max: 1024
            internal: {listen: "[::1]:10731"}
            meta_peers: ["127.0.0.1:10730", "[::1]:10731"]
            cluster_secret: s3cret
            raft: {tick_ms: 20, election_ticks: 5, catch_up_bytes_max: 4096, apply_backlog_bytes_max: 8192, snapshot_chunk_bytes: 65536, snapshot_bytes_max: 1048576}
            wal_sync: 50
            storage: {memtable_bytes_max: 1048576, compression_level: 9, auto_create_schema: false}
            query: {statement_bytes_max: 4096, rows_default: 500, memory_bytes_max: 1048576}
            log_level: debug
            shutdown_timeout_ms: 2500
            stages:
              decode: {threads: 3}
              query: {inline: true, threads: 0, overflow: block}
            """))
        let defaults = try ConfigLoader.defaultStages()
        #expect(config.nodeName == "n7")
        #expect(config.dataDir == "/var/lib/tidemark/n7")
        #expect(config.http.listen == ListenAddress(host: "0.0.0.0", port: 9000))
        #expect(config.http.bodyBytesMax == 1024)
        #expect(config.http.headerBytesMax == HTTPSettings().headerBytesMax)
        #expect(config.internalListen == ListenAddress(host: "::1", port: 10731))
        #expect(config.metaPeers == [ListenAddress(host: "127.0.0.1", port: 10730), ListenAddress(host: "::1", port: 10731)])
        #expect(config.nodeID == 2 && config.clusterSecret == "s3cret" && config.raftTickMs == 20 && config.raftElectionTicks == 5)
        #expect(config.raftCatchUpBytesMax == 4096 && config.raftApplyBacklogBytesMax == 8192)
        #expect(config.raftSnapshotChunkBytes == 65536 && config.raftSnapshotBytesMax == 1 << 20)
        #expect(config.storage.walSync == .intervalMs(50))
        #expect(config.logLevel == .debug)
        #expect(config.storage.memtableBytesMax == 1_048_576 && config.storage.compressionLevel == 9 && !config.storage.autoCreateSchema)
        #expect(config.shutdownTimeoutMs == 2500)
        #expect(config.query.statementBytesMax == 4096 && config.query.rowsDefault == 500 && config.query.memoryBytesMax == 1_048_576)
        var decode = defaults[.decode]!
        decode.threads = 3
        #expect(config.stages[.decode] == decode)
        #expect(config.stages[.query]!.inline && config.stages[.query]!.threads == 0)
        #expect(config.stages[.query]!.overflow == .block)
        #expect(config.stages[.route] == defaults[.route])
    }

    @Test func stagesFileOverridesDefaultsAndNodeConfigOverridesBoth() throws {
        let stagesPath = try temporaryFile("route: {threads: 4, batch: 8}\n", name: "stages.yaml")
        let configPath = try temporaryFile("stages:\n  route: {threads: 2}\n")
        let config = try ConfigLoader.load(configPath: configPath, stagesPath: stagesPath)
        #expect(config.stages[.route]!.threads == 2)
        #expect(config.stages[.route]!.batchSize == 8)
    }

    @Test func unknownStageIsNamedWithItsLine() throws {
        let error = try #require(try loadError("log_level: info\nstages:\n  decdoe:\n    threads: 2\n"))
        #expect(error.key == "stages.decdoe")
        #expect(error.line == 4 || error.line == 3)
        #expect(error.message.contains("unknown key"))
        #expect(error.message.contains("decode"))
    }

    @Test func unknownKeysAreErrorsAtEveryLevel() throws {
        let top = try #require(try loadError("data_dri: /x\n"))
        #expect(top.key == "data_dri")
        #expect(top.line == 1)
        let inStage = try #require(try loadError("stages:\n  decode:\n    thread: 2\n"))
        #expect(inStage.key == "stages.decode.thread")
        #expect(inStage.line == 3)
        let inHTTP = try #require(try loadError("http:\n  port: 80\n"))
        #expect(inHTTP.key == "http.port")
        let noSecret = try #require(try loadError("internal: {listen: \"127.0.0.1:1\"}\nmeta_peers: [\"127.0.0.1:1\"]\n"))
        #expect(noSecret.key == "cluster_secret")
        let inQuery = try #require(try loadError("query:\n  memory_max: 80\n"))
        #expect(inQuery.key == "query.memory_max" && inQuery.message.contains("memory_bytes_max"))
    }

    @Test func wrongTypesSayWhatWasExpected() throws {
        let threads = try #require(try loadError("stages:\n  decode:\n    threads: two\n"))
        #expect(threads.key == "stages.decode.threads")
        #expect(threads.line == 3 && threads.column == 14)
        #expect(threads.message == "expected an integer, got \"two\"")
        #expect(threads.description.hasSuffix("node.yaml:3:14: stages.decode.threads: expected an integer, got \"two\""))
        let inline = try #require(try loadError("stages:\n  decode: {inline: yes please}\n"))
        #expect(inline.message.contains("expected true or false"))
        let overflow = try #require(try loadError("stages:\n  decode: {overflow: drop}\n"))
        #expect(overflow.message == "expected one of reject, block, got \"drop\"")
        let mapping = try #require(try loadError("http: 8080\n"))
        #expect(mapping.message == "expected a mapping, got \"8080\"")
        let listen = try #require(try loadError("http: {listen: localhost}\n"))
        #expect(listen.key == "http.listen")
        #expect(listen.message.contains("HOST:PORT"))
    }

    @Test func aSnapshotPieceMustFitAFrame() throws {
        let error = try #require(try loadError("raft: {snapshot_chunk_bytes: 33554432}\n"))
        #expect(error.key == "raft.snapshot_chunk_bytes" && error.line == 1)
        #expect(error.message.contains("at most 16777216"))
        #expect(try loadError("raft: {snapshot_chunk_bytes: 16777216}\n") == nil)
    }

    @Test func authAndEdgeBudgetKeysAreReadAndChecked() throws {
        let yaml = """
            http: {connection_reply_bytes_max: 1000, reply_bytes_pending_max: 2000, body_bytes_in_flight_max: 3000}
            auth: {failed_logins_per_client_max: 4, failed_logins_per_user_max: 5, failed_login_window_ms: 6000,
                   limiter_entries_max: 70, threads: 2, queue: 8}

            """
        let config = try ConfigLoader.load(configPath: try temporaryFile(yaml))
        #expect(config.http.connectionReplyBytesMax == 1000 && config.http.replyBytesPendingMax == 2000)
        #expect(config.http.bodyBytesInFlightMax == 3000)
        #expect(config.auth.failedLoginsPerClientMax == 4 && config.auth.failedLoginsPerUserMax == 5)
        #expect(config.auth.failedLoginWindowMs == 6000 && config.auth.limiterEntriesMax == 70)
        #expect(config.auth.threads == 2 && config.auth.queueCapacity == 8)
        #expect(try ConfigLoader.load(configPath: try temporaryFile("node_name: n\n")).auth == AuthSettings())
        #expect(try #require(try loadError("auth: {threads: 0}\n")).key == "auth.threads")
        #expect(try #require(try loadError("auth: {limiter_entries_max: 1}\n")).message.contains("at least 2"))
        #expect(try #require(try loadError("auth: {window_ms: 5}\n")).key == "auth.window_ms")
    }

    @Test func theConnectionBodyBoundIsReadAndHoldsOneBody() throws {
        #expect(HTTPSettings().connectionBodyBytesMax == 64 << 20)
        let config = try ConfigLoader.load(configPath: try temporaryFile("http: {connection_body_bytes_max: 5000, body_bytes_max: 4000}\n"))
        #expect(config.http.connectionBodyBytesMax == 5000 && config.http.bodyBytesMax == 4000)
        #expect(try #require(try loadError("http: {connection_body_bytes_max: 0}\n")).key == "http.connection_body_bytes_max")
        let small = try #require(try loadError("http: {connection_body_bytes_max: 1000}\n"))
        #expect(small.key == "http.connection_body_bytes_max" && small.message.contains("must not exceed"))
        let large = try #require(try loadError("http:\n  connection_body_bytes_max: 1000\n  body_bytes_max: 2000\n"))
        #expect(large.key == "http.body_bytes_max" && large.line == 3)
        #expect(try loadError("http: {body_bytes_max: 67108864}\n") == nil)
        #expect(try #require(try loadError("http: {body_bytes_max: 67108865}\n")).key == "http.body_bytes_max")
    }

    @Test func impossibleStageSizesAreRefused() throws {
        let noThreads = try #require(try loadError("stages:\n  apply: {threads: 0}\n"))
        #expect(noThreads.key == "stages.apply.threads")
        #expect(noThreads.message.contains("at least 1 unless inline"))
        #expect(try loadError("stages:\n  apply: {threads: 0, inline: true}\n") == nil)
        let queue = try #require(try loadError("stages:\n  apply: {queue: 0}\n"))
        #expect(queue.key == "stages.apply.queue")
        #expect(queue.message.contains("at least 1"))
        let batch = try #require(try loadError("stages:\n  apply: {batch: -3}\n"))
        #expect(batch.key == "stages.apply.batch")
    }

    @Test func unreadableAndMalformedFilesAreReported() throws {
        do {
            _ = try ConfigLoader.load(configPath: "/nonexistent/tidemark.yaml")
            Issue.record("loading a missing file must fail")
        } catch {
            #expect(error.description == "/nonexistent/tidemark.yaml: cannot read file: No such file or directory")
        }
        let invalid = try #require(try loadError("stages:\n  decode: {threads: 2\n"))
        #expect(invalid.message.hasPrefix("invalid YAML"))
        #expect(invalid.line != nil)
        let duplicate = try #require(try loadError("log_level: info\nlog_level: debug\n"))
        #expect(duplicate.message.contains("twice"))
        let notUTF8 = try temporaryFile("")
        try Data([0xff, 0xfe, 0x00]).write(to: URL(fileURLWithPath: notUTF8))
        #expect(throws: ConfigError.self) { try ConfigLoader.load(configPath: notUTF8) }
    }

    /// Every hello carries the cluster name, so it is bounded; the error names key and line.
    @Test func aClusterNameIsBoundedForTheHello() throws {
        let longest = String(repeating: "c", count: ClusterIdentity.nameBytesMax)
        #expect(try ConfigLoader.load(configPath: try temporaryFile("cluster_name: \(longest)\n")).clusterName == longest)
        let error = try #require(try loadError("log_level: info\ncluster_name: \(longest)c\n"))
        #expect(error.key == "cluster_name" && error.line == 2)
        #expect(error.message.contains("must be at most \(ClusterIdentity.nameBytesMax) bytes (got \(ClusterIdentity.nameBytesMax + 1))"))
    }

    /// The sample configs' secret is fine on loopback and refused wherever another machine
    /// could reach the node (a wildcard host included), with the key, line and a way out.
    @Test func thePlaceholderSecretIsRefusedOffLoopback() throws {
        func cluster(http: String = "127.0.0.1:18080", internalListen: String = "127.0.0.1:10731", secret: String = "change-me") -> String {
            """
            http: {listen: "\(http)"}
            internal: {listen: "\(internalListen)"}
            cluster_secret: \(secret)
            meta_peers: ["\(internalListen)"]
            """
        }
        #expect(try loadError(cluster()) == nil)
        #expect(try loadError(cluster(http: "[::1]:18080", internalListen: "[::1]:10731")) == nil)
        #expect(try loadError(cluster(http: "localhost:18080", internalListen: "127.3.0.1:10731")) == nil)
        for (http, internalListen, named) in [("0.0.0.0:18080", "127.0.0.1:10731", "http.listen 0.0.0.0:18080"),
                                              ("[::]:18080", "127.0.0.1:10731", "http.listen [::]:18080"),
                                              ("10.1.2.3:18080", "127.0.0.1:10731", "http.listen 10.1.2.3:18080"),
                                              ("127.0.0.1:18080", "10.1.2.3:10731", "internal.listen 10.1.2.3:10731")] {
            let error = try #require(try loadError(cluster(http: http, internalListen: internalListen)), "\(http) \(internalListen)")
            #expect(error.key == "cluster_secret" && error.line == 3)
            #expect(error.message.contains("\(named) is not a loopback address") && error.message.contains("openssl rand -hex 32"))
        }
        // A secret of its own may go anywhere.
        #expect(try loadError(cluster(http: "0.0.0.0:18080", internalListen: "10.1.2.3:10731", secret: "d41d8cd98f00b204e9800998ecf8427e")) == nil)
        // What tidemarkd checks again after --http-listen moved the node.
        var moved = try ConfigLoader.load(configPath: try temporaryFile(cluster()))
        moved.http.listen = ListenAddress(host: "0.0.0.0", port: 0)
        #expect(throws: ConfigError.self) { try ConfigLoader.checkSecretExposure(moved, file: "node.yaml") }
    }

    /// The sample configs under deploy/ load as shipped (the three-node one on loopback keeps
    /// the placeholder secret).
    @Test func everySampleConfigUnderDeployLoads() throws {
        let deploy = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("deploy")
        let samples = (FileManager.default.enumerator(atPath: deploy.path)?.allObjects as? [String] ?? []).filter { $0.hasSuffix(".yaml") }
        #expect(samples.count >= 4, "found \(samples)")
        for sample in samples {
            #expect(throws: Never.self, "\(sample)") { _ = try ConfigLoader.load(configPath: deploy.appendingPathComponent(sample).path) }
        }
    }

    @Test func loopbackAndWildcardHostsAndTheClientAddress() throws {
        func address(_ text: String) throws -> ListenAddress { try ListenAddress.parse(text).get() }
        for text in ["127.0.0.1:1", "127.255.0.9:1", "localhost:1", "[::1]:1", "[::ffff:127.0.0.1]:1"] { #expect(try address(text).isLoopback, "\(text)") }
        for text in ["0.0.0.0:1", "[::]:1", "10.0.0.1:1", "[2001:db8::1]:1", "128.0.0.1:1"] { #expect(try !address(text).isLoopback, "\(text)") }
        #expect(try address("0.0.0.0:1").isWildcard && address("[::]:1").isWildcard && !address("127.0.0.1:1").isWildcard)
        // A wildcard HTTP host is no address a client can dial: the internal host stands in.
        #expect(ClusterIdentity.clientAddress(http: try address("10.0.0.5:18080"), internalListen: try address("10.0.0.5:10730")) == "10.0.0.5:18080")
        #expect(ClusterIdentity.clientAddress(http: try address("0.0.0.0:18080"), internalListen: try address("10.0.0.5:10730")) == "10.0.0.5:18080")
        #expect(ClusterIdentity.clientAddress(http: try address("[::]:18080"), internalListen: try address("[fd00::5]:10730")) == "[fd00::5]:18080")
        // The longest address a config can hold fits a hello.
        #expect(try "\(address("[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535"))".utf8.count <= ClusterIdentity.clientAddressBytesMax)
    }
}

/// The settings fixed when the cluster is made (issue 29): read, bounded, and the old
/// storage.partition_interval_ms pointed at its new name.
@Suite struct FixedSettingsConfigTests {
    @Test func fixedSettingsAreReadAndChecked() throws {
        let config = try ConfigLoader.load(configPath: try temporaryFile("""
            series_slot_num: 10000
            time_partition_interval_ms: 86400000
            data_region_groups_per_database: 4
            schema_region_groups_per_database: 2
            schema_consensus: standalone
            """))
        #expect(config.fixed.seriesSlotNum == 10000 && config.storage.partitionInterval == 86_400_000)
        #expect(config.fixed.dataRegionGroupsPerDatabase == 4 && config.fixed.schemaRegionGroupsPerDatabase == 2 && config.fixed.schemaConsensus == .standalone)
        #expect(try ConfigLoader.load(configPath: try temporaryFile("")).fixed == FixedSettings())
        #expect(try loadError("series_slot_num: 0")?.message.contains("must be from 1") == true)
        #expect(try loadError("storage: {partition_interval_ms: 1000}")?.message.contains("time_partition_interval_ms") == true)
        #expect(try loadError("schema_consensus: multi_leader")?.message.contains("raft") == true)
        #expect(try loadError("data_replication_factor: 3")?.message.contains("a single node") == true)
        #expect(try loadError("data_replication_factor: 65")?.message.contains("must be from 1 to 64") == true)
    }
}
