import Logging
import TidemarkCluster
import TidemarkCore
import TidemarkStorage

/// Brings into the meta group what a region holds but the meta group does not know: the
/// databases and (slot, time partition)s of a data directory written before the meta group
/// kept them (an upgrade in place), so `SHOW REGIONS` and the partition table describe the
/// data that is there. Run once the node is ready; idempotent (what exists is left as it is).
enum MetaReconcile {
    static func run(engines: [StorageEngine], agent: MetaAgent, logger: Logger) {
        let known = agent.machine.current.databases
        let missing = Set(engines.flatMap { $0.databases() }).filter { known[$0] == nil }.sorted()
        guard !missing.isEmpty else { return }
        let settings = agent.machine.settings
        let partitions = engines.reduce(into: Set<Int64>()) { $0.formUnion($1.timePartitions()) }.sorted()
        var allDevices: [String]?
        for database in missing {
            switch agent.proposeAndWait(.createDatabase(DatabaseRecord(name: database, defaults: settings))) {
            case .success: break
            case .failure(.refused(let refusal)) where refusal.code == 501: break  // made meanwhile (a write)
            case .failure(let error):
                return logger.warning("could not bring a database into the meta group; the next start tries again",
                                      metadata: ["database": "\(database)", "error": "\(error)"])
            }
            // Every slot with a device, in every partition the region holds (a slot without
            // points in one of them only has its place there early).
            if allDevices == nil, let pattern = try? PathPattern(parsing: "root.**") { allDevices = engines.flatMap { $0.devices(matching: pattern) } }
            let slots = Set((allDevices ?? []).filter { $0.hasPrefix(database + ".") }.map {
                SeriesSlots.slot(ofDevice: $0, slotCount: settings.seriesSlotCount)
            })
            let requests = slots.sorted().map { SlotRequest(slot: $0, timePartitions: partitions) }
            if !requests.isEmpty, case .failure(let error) = agent.proposeAndWait(.allocate(database: database, requests)) {
                return logger.warning("could not allocate a database's partitions in the meta group; the next start tries again",
                                      metadata: ["database": "\(database)", "error": "\(error)"])
            }
            logger.notice("brought a database into the meta group", metadata: ["database": "\(database)", "slots": "\(slots.count)",
                                                                             "time_partitions": "\(partitions.count)"])
        }
    }
}
