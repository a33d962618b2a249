import TidemarkIO
import ArgumentParser
import Foundation
import Logging
import TidemarkCluster
import TidemarkConfig
import TidemarkCore
import TidemarkServer
import TidemarkStorage

/// The Tidemark node: reads its config, serves until SIGTERM/SIGINT, then drains and exits.
@main
struct Tidemarkd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tidemarkd",
        abstract: "Run one Tidemark node.",
        discussion: """
            With no options it starts a single node on 127.0.0.1:18080 with data under ./data.
            Exit status: 0 after a clean stop, 1 when the stop passed shutdown_timeout_ms or the node
            failed at run time, 2 when the configuration is wrong, 3 when data on disk is damaged (a log
            damaged in the middle: the message names the file and byte; see --repair).
            """)

    @Option(name: .long, help: "Node config (YAML); see docs/configuration.md.")
    var config: String?

    @Option(name: .long, help: "A stages.yaml whose settings override the built-in defaults.")
    var stages: String?

    @Option(name: .long, help: "Override http.listen (HOST:PORT; port 0 lets the system choose).")
    var httpListen: String?

    @Option(name: .long, help: "Override data_dir.")
    var dataDir: String?

    @Option(name: .long, help: "Override log_level (trace, debug, info, notice, warning, error, critical).")
    var logLevel: String?

    @Flag(name: .long, help: "Check the configuration, print the effective stage sizing, and exit.")
    var checkConfig = false

    @Flag(name: .long, help: """
        Before starting, copy every log damaged in the middle to data_dir/quarantine/logs/ and cut it where the \
        damage starts (the records after it are lost), then start. A damaged Raft or multi-leader log is not cut: \
        the repair refuses (exit status 3). See docs/configuration.md, "Damaged logs".
        """)
    var repair = false

    func run() throws {
        var nodeConfig: NodeConfig
        do {
            nodeConfig = try effectiveConfig()
        } catch {
            FileHandle.standardError.write(Data("tidemarkd: config error: \(error)\n".utf8))
            throw ExitCode(2)
        }
        if checkConfig {
            print("configuration OK")
            for name in StageName.allCases {
                let s = nodeConfig.stages[name]!
                print("  \(name.rawValue): threads=\(s.threads) queue=\(s.queueCapacity) batch=\(s.batchSize) overflow=\(s.overflow.rawValue) inline=\(s.inline)  # \(name.summary)")
            }
            return
        }
        let level = Logger.Level(rawValue: nodeConfig.logLevel.rawValue) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "tidemarkd")
        unblockStopSignals()
        if !nodeConfig.metaPeers.isEmpty && !nodeConfig.isMetaMember {
            // A data-only node: its ID comes from the meta group (once; then from its data directory).
            do {
                nodeConfig.joinedNodeID = try NodeJoin.nodeID(config: nodeConfig, logger: logger)
            } catch let failure as NodeJoin.Failure {
                FileHandle.standardError.write(Data("tidemarkd: refusing to start: \(failure)\n".utf8))
                throw ExitCode(failure.isConfigMistake ? 2 : 1)
            } catch {
                logger.critical("cannot join the cluster", metadata: ["error": "\(error)"])
                throw ExitCode(error is CorruptDataError ? 3 : 1)
            }
        }
        let outcome: Node.Outcome
        do {
            let node = try Node(config: nodeConfig, logger: logger, repairLogs: repair)
            outcome = try node.run { address in
                // One line on stdout that scripts and tests wait for.
                FileHandle.standardOutput.write(Data("tidemarkd ready http=\(address)\n".utf8))
            }
        } catch let error as LogDamageError {
            logger.critical("refusing to start: a log is damaged in the middle", metadata: ["file": "\(error.path)", "offset": "\(error.offset)",
                                                                                             "error": "\(error)"])
            throw ExitCode(3)
        } catch let error as LogRepairRefused {
            logger.critical("refusing to repair: a replicated group's log is damaged", metadata: ["files": "\(error.paths)", "error": "\(error)"])
            throw ExitCode(3)
        } catch let error as CorruptDataError {
            logger.critical("refusing to start: data on disk is damaged", metadata: ["error": "\(error)"])
            throw ExitCode(3)
        } catch let error as FixedSettingMismatch {
            // A config mistake, as one line: exit 2 like every other.
            FileHandle.standardError.write(Data("tidemarkd: refusing to start: \(error)\n".utf8))
            throw ExitCode(2)
        } catch {
            logger.critical("cannot run the node", metadata: ["error": "\(error)"])
            throw ExitCode(1)
        }
        switch outcome {
        case .refused(let reason):
            // A config that disagrees with the cluster: one line, exit 2 like every config mistake.
            FileHandle.standardError.write(Data("tidemarkd: refusing to start: \(reason)\n".utf8))
            throw ExitCode(2)
        case .clean:
            logger.notice("stopped cleanly")
        case .timedOut(let reason):
            logger.error("stop passed shutdown_timeout_ms", metadata: ["reason": "\(reason)"])
            throw ExitCode(1)
        }
    }

    /// The config file and stages file, then the command-line overrides.
    private func effectiveConfig() throws -> NodeConfig {
        var nodeConfig = try ConfigLoader.load(configPath: config, stagesPath: stages)
        if let httpListen {
            switch ListenAddress.parse(httpListen) {
            case .success(let address): nodeConfig.http.listen = address
            case .failure(let error): throw ConfigError(file: "--http-listen", key: nil, line: nil, column: nil, message: error.reason)
            }
        }
        if let dataDir { nodeConfig.dataDir = dataDir }
        // --http-listen may have moved the node off loopback.
        try ConfigLoader.checkSecretExposure(nodeConfig, file: config ?? "(defaults)")
        if let logLevel {
            guard let level = LogLevelName(rawValue: logLevel) else {
                throw ConfigError(file: "--log-level", key: nil, line: nil, column: nil,
                                  message: "expected one of \(LogLevelName.allCases.map(\.rawValue).joined(separator: ", ")), got \"\(logLevel)\"")
            }
            nodeConfig.logLevel = level
        }
        return nodeConfig
    }
}

/// A parent may start us with SIGTERM/SIGINT blocked (the mask is inherited across exec);
/// unblock them before any thread exists, so every thread inherits a mask that lets them in.
private func unblockStopSignals() {
    var signals = sigset_t()
    sigemptyset(&signals)
    sigaddset(&signals, SIGTERM)
    sigaddset(&signals, SIGINT)
    pthread_sigmask(SIG_UNBLOCK, &signals, nil)
}
