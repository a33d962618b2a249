import TidemarkIO
import Crypto
import Foundation
import TidemarkCluster
import Logging
import Synchronization
import TidemarkCore
import TidemarkStorage
import _CryptoExtras

/// What a user may do, per path pattern (IoTDB's privilege names).
enum Privilege: String, CaseIterable, Sendable {
    case readData = "READ_DATA"
    case writeData = "WRITE_DATA"
    case readSchema = "READ_SCHEMA"
    case writeSchema = "WRITE_SCHEMA"
    case manageUser = "MANAGE_USER"
}

/// A refusal from the user store, with IoTDB's status code.
struct UserError: Error, Sendable, CustomStringConvertible {
    let code: Int
    let message: String
    var description: String { message }
}

/// Users with salted PBKDF2-SHA256 password hashes and privileges per path pattern,
/// persisted in a CRC-checked log under the data directory and replayed at start.
///
/// In a node, a change is an entry of the consensus group that holds the node's replicated
/// state (`routeChanges`): the proposing node hashes, every replica applies the same record
/// at the same log position (`apply`), so every node authenticates against the same users.
/// Each record in the users log carries the index of its entry, so a replay of the group's
/// log after a restart changes nothing the users log already holds.
///
/// Verifying a password costs tens of milliseconds of CPU by design, so a verified
/// `Authorization` header is remembered (as IoTDB does) until `cacheSeconds` pass or
/// the user changes. Verification runs on the auth stage (`Authenticator`), never on the
/// decode thread, and costs the same for a name that does not exist.
final class UserStore: Sendable {
    struct User: Sendable {
        var name: String
        var salt: [UInt8]
        var hash: [UInt8]
        var rounds: Int
        var grants: [Privilege: [String]]
    }

    static let rounds = 210_000
    /// 1–64 ASCII letters, digits and underscores, not starting with a digit.
    static func isValidName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, !("0"..."9").contains(first), name.unicodeScalars.count <= 64 else { return false }
        return name.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_") }
    }
    /// The first byte of a user entry in the group's log (the engine's kinds are below 16).
    static let entryKind: UInt8 = RegionStateMachine.userEntryKind
    private let log: FileWAL
    private let logger: Logger
    /// How a change reaches the group's log; nil: changes are logged here at once (tools, tests).
    private let proposer = Mutex<(@Sendable ([UInt8]) throws -> Void)?>(nil)
    /// One change at a time on this node: each reads a user, changes it and proposes it whole.
    private let changeLock = NSLock()
    private let cacheSeconds: Double
    private let state = Mutex<(users: [String: User], verified: [String: (user: String, until: Date)], appliedIndex: UInt64)>(([:], [:], 0))
    /// Password hashes computed, real or dummy (for `/metrics`, and for tests that check
    /// where and how often hashing happens).
    let hashesComputed = Atomic<UInt64>(0)
    /// PBKDF2 rounds those hashes took, so tests can check that an unknown name costs the
    /// same work as a known one, not only the same number of hashes.
    let hashRoundsComputed = Atomic<UInt64>(0)
    /// An unknown name is checked against these, so it costs what a known one costs and its
    /// answer takes as long: response times do not tell which names exist.
    private let dummySalt: [UInt8]
    private let dummyHash: [UInt8]

    /// `warnDefaultPassword`: say so when root still has the default password (not for a
    /// store built only to receive another's users).
    init(directory: String, logger: Logger, cacheSeconds: Double = 8 * 3600, health: StorageHealth? = nil, warnDefaultPassword: Bool = true) throws {
        self.logger = logger
        self.cacheSeconds = cacheSeconds
        var generator = SystemRandomNumberGenerator()
        dummySalt = (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }
        dummyHash = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        // A whole last record failing its CRC may be an acknowledged password change: cutting
        // it as a torn tail would bring back the password before (perhaps root's default).
        log = try FileWAL(directory: directory, policy: .always, health: health, wholeLastRecordIsDamage: true)
        var users: [String: User] = [:]
        var appliedIndex: UInt64 = 0
        // Damage in the middle of the log throws (naming file and offset): start is refused,
        // never answered with fewer users or a reset root.
        let report = try log.replay { _, payload in
            let (record, index) = try Self.decode(payload)
            if record.hash.isEmpty { users[record.name] = nil } else { users[record.name] = record }
            appliedIndex = max(appliedIndex, index)
        }
        if report.bytesCut > 0 {
            logger.warning("cut a torn tail of the users log", metadata: [
                "file": "\(report.cutPath ?? "")", "offset": "\(report.cutOffset)", "bytes": "\(report.bytesCut)", "records": "\(report.records)"])
        }
        try Self.checkRecovered(users: users, records: report.records, directory: directory)
        state.withLock { state in
            state.users = users
            state.appliedIndex = appliedIndex
        }
        // Every node starts with root/root on its own (index 0); a change of it is an entry.
        if users["root"] == nil { try store(try Self.make(name: "root", password: "root", grants: [:]), index: 0) }
        if warnDefaultPassword && verify(name: "root", password: "root") {
            logger.warning("user root still has the default password 'root'; change it with ALTER USER root SET PASSWORD '…'")
        }
    }

    func close() { log.close() }

    /// The node's users, under `<data_dir>/meta/users` beside the meta state whose log changes
    /// them. A data directory of an earlier version kept them in `<data_dir>/users`, numbered
    /// by the data group's log: they are copied in once (at index 0, before every meta
    /// entry) and that directory is renamed `users.previous`, so it is never read again.
    static func open(dataDir: String, logger: Logger, health: StorageHealth?) throws -> UserStore {
        let path = dataDir + "/meta/users", previousPath = dataDir + "/users"
        guard !FileIO.exists(path), FileIO.exists(previousPath) else { return try UserStore(directory: path, logger: logger, health: health) }
        let previous = try UserStore(directory: previousPath, logger: logger, health: health, warnDefaultPassword: false)
        defer { previous.close() }
        try FileIO.makeDirectory(dataDir + "/meta")
        // Built aside and moved in whole: a crash midway leaves no half-copied store to trust.
        let building = dataDir + "/meta/users.upgrading"
        if FileIO.exists(building) { try FileManager.default.removeItem(atPath: building) }
        let copy = try UserStore(directory: building, logger: logger, health: health, warnDefaultPassword: false)
        try copy.seed(from: previous)
        copy.close()
        try FileManager.default.moveItem(atPath: building, toPath: path)
        try FileManager.default.moveItem(atPath: previousPath, toPath: previousPath + ".previous")
        logger.notice("users moved into the meta group's directory", metadata: ["from": "\(previousPath)", "to": "\(path)",
                                                                             "users": "\(previous.list().count)"])
        return try UserStore(directory: path, logger: logger, health: health)
    }

    /// A users log that `tidemarkd --repair` cut may have lost users and password changes,
    /// root's among them (its first record, password root, would then be the one that counts):
    /// it is not used until the operator says how, by removing the copy the repair set aside.
    /// And root is the first record of every users log: a log without it lost its start, and
    /// default credentials must not take its place. Only a log that never held a record gets
    /// the default root.
    private static func checkRecovered(users: [String: User], records: Int, directory: String) throws {
        // `--repair` sets a log aside under `<data_dir>/quarantine/logs/<its path there>`.
        let parts = directory.split(separator: "/").map(String.init)
        let inMeta = parts.count >= 2 && parts[parts.count - 2] == "meta"
        let dataDir = directory + (inMeta ? "/../.." : "/..")
        let aside = URL(fileURLWithPath: dataDir + "/quarantine/logs/" + (inMeta ? "meta/" : "") + (parts.last ?? "")).standardizedFileURL.path
        if FileManager.default.fileExists(atPath: aside) {
            throw CorruptDataError("""
                \(directory): the users log was cut by `tidemarkd --repair` (what it cut is in \(aside)) and may have lost \
                users or password changes, root's among them, so it is not used as it is. Restore \(directory) from a backup \
                (and remove \(aside)); or remove \(aside) to use the repaired log as it is; or remove both to start over \
                with only root/root
                """)
        }
        guard users["root"] == nil, records > 0 else { return }
        throw CorruptDataError("""
            \(directory): the users log holds no root user (\(records) records; a damaged log?). Refusing to fall back to \
            the default root/root: restore the users log from a backup, or remove \(directory) to start over with only root/root
            """)
    }

    // MARK: - Authentication

    enum Authentication {
        case user(String)
        case missing
        case malformed
        case wrongPassword
    }

    /// Checks an `Authorization: Basic …` header, hashing on the calling thread when it is
    /// not remembered. The node calls the parts below from the edge and the auth stage instead.
    func authenticate(_ header: String?) -> Authentication {
        guard let header else { return .missing }
        if let user = rememberedUser(header) { return .user(user) }
        guard let (name, password) = Self.basicCredentials(header) else { return .malformed }
        return verify(header: header, name: name, password: password) ? .user(name) : .wrongPassword
    }

    /// The user a header was verified for, while that is remembered. Cheap: no hashing.
    func rememberedUser(_ header: String) -> String? {
        guard let cached = state.withLock({ $0.verified[header] }), cached.until > Date() else { return nil }
        return cached.user
    }

    /// The name and password of a `Basic` header; nil when it does not decode.
    static func basicCredentials(_ header: String) -> (name: String, password: String)? {
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "basic", let data = Data(base64Encoded: String(parts[1])),
              let text = String(data: data, encoding: .utf8), let colon = text.firstIndex(of: ":") else { return nil }
        return (String(text[..<colon]), String(text[text.index(after: colon)...]))
    }

    /// Verifies a password (one hash, whether the user exists or not) and remembers `header`
    /// when it is right.
    func verify(header: String, name: String, password: String) -> Bool {
        guard verify(name: name, password: password) else { return false }
        state.withLock { state in
            if state.verified.count >= 10_000 { state.verified.removeAll() }  // bounded: forget, then re-verify
            state.verified[header] = (name, Date().addingTimeInterval(cacheSeconds))
        }
        return true
    }

    private func verify(name: String, password: String) -> Bool {
        let user = state.withLock { $0.users[name] }
        let rounds = user?.rounds ?? Self.rounds
        hashesComputed.add(1, ordering: .relaxed)
        hashRoundsComputed.add(UInt64(rounds), ordering: .relaxed)
        guard let derived = try? Self.derive(password, salt: user?.salt ?? dummySalt, rounds: rounds) else {
            return false
        }
        let expected = user?.hash ?? dummyHash
        // Constant-time comparison of the two hashes; an unknown name fails after the same work.
        let equal = derived.count == expected.count && zip(derived, expected).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
        return equal && user != nil
    }

    // MARK: - Authorization

    /// Whether `user` holds `privilege` over every path `pattern` can name; root holds everything.
    func allows(_ user: String, _ privilege: Privilege, on pattern: String) -> Bool {
        if user == "root" { return true }
        guard let grants = state.withLock({ $0.users[user]?.grants[privilege] }),
              let wanted = try? PathPattern(parsing: pattern) else { return false }
        return grants.contains { granted in (try? PathPattern(parsing: granted))?.covers(wanted) ?? false }
    }

    // MARK: - Management

    /// Sends this node's changes through the group's log: `propose` returns once the entry
    /// is applied here, and throws when it is not (not the leader, no quorum).
    func routeChanges(through propose: @escaping @Sendable ([UInt8]) throws -> Void) {
        proposer.withLock { $0 = propose }
    }

    func create(name: String, password: String) throws {
        changeLock.lock()
        defer { changeLock.unlock() }
        guard Self.isValidName(name) else {
            throw UserError(code: 303, message: "user names are 1–64 letters, digits and underscores, starting with a letter")
        }
        guard password.count >= 4 && password.utf8.count <= 256 else { throw UserError(code: 303, message: "passwords are 4 to 256 characters") }
        guard state.withLock({ $0.users[name] }) == nil else { throw UserError(code: 602, message: "user \(name) already exists") }
        try save(try Self.make(name: name, password: password, grants: [:]))
    }

    func drop(_ name: String) throws {
        changeLock.lock()
        defer { changeLock.unlock() }
        guard name != "root" else { throw UserError(code: 603, message: "the root user cannot be dropped") }
        guard state.withLock({ $0.users[name] }) != nil else { throw UserError(code: 604, message: "user \(name) does not exist") }
        try save(User(name: name, salt: [], hash: [], rounds: 0, grants: [:]))  // no hash: a drop
    }

    func setPassword(_ name: String, _ password: String) throws {
        changeLock.lock()
        defer { changeLock.unlock() }
        guard var user = state.withLock({ $0.users[name] }) else { throw UserError(code: 604, message: "user \(name) does not exist") }
        guard password.count >= 4 && password.utf8.count <= 256 else { throw UserError(code: 303, message: "passwords are 4 to 256 characters") }
        let fresh = try Self.make(name: name, password: password, grants: user.grants)
        user.salt = fresh.salt
        user.hash = fresh.hash
        try save(user)
    }

    func change(_ name: String, privileges: [String], patterns: [String], grant: Bool) throws {
        changeLock.lock()
        defer { changeLock.unlock() }
        guard var user = state.withLock({ $0.users[name] }) else { throw UserError(code: 604, message: "user \(name) does not exist") }
        var chosen: [Privilege] = []
        for word in privileges {
            if word == "ALL" { chosen += Privilege.allCases; continue }
            guard let privilege = Privilege(rawValue: word) else {
                throw UserError(code: 303, message: "unknown privilege \(word) (one of \(Privilege.allCases.map(\.rawValue).joined(separator: ", ")), ALL)")
            }
            chosen.append(privilege)
        }
        for pattern in patterns {
            guard (try? PathPattern(parsing: pattern)) != nil else { throw UserError(code: 509, message: "invalid path pattern \(pattern)") }
        }
        for privilege in chosen {
            var list = user.grants[privilege] ?? []
            for pattern in patterns {
                if grant { if !list.contains(pattern) { list.append(pattern) } } else { list.removeAll { $0 == pattern } }
            }
            user.grants[privilege] = list
        }
        try save(user)
    }

    func list() -> [String] { state.withLock { $0.users.keys.sorted() } }

    /// Proposes the user's new record (a drop when it has no hash), or without a group
    /// stores it at once.
    private func save(_ user: User) throws {
        if let propose = proposer.withLock({ $0 }) {
            try propose([Self.entryKind] + Self.encode(user, index: 0))
        } else {
            try store(user, index: state.withLock { $0.appliedIndex })
        }
    }

    /// Applies a user entry of the group's log at `index`: the same on every replica, once
    /// (an entry the users log holds already, replayed after a restart, changes nothing).
    func apply(index: UInt64, entry: [UInt8]) throws {
        precondition(entry.first == Self.entryKind, "a user entry starts with its kind")
        guard index > state.withLock({ $0.appliedIndex }) else { return }
        let (user, _) = try Self.decode(Array(entry.dropFirst()))
        try store(user, index: index)
    }

    /// Logs the user's record (with the entry's index), then makes it the one that counts.
    private func store(_ user: User, index: UInt64) throws {
        _ = try log.append([Self.encode(user, index: index)])
        state.withLock { state in
            state.users[user.name] = user.hash.isEmpty ? nil : user
            state.verified = state.verified.filter { $0.value.user != user.name }
            state.appliedIndex = max(state.appliedIndex, index)
        }
    }

    /// Copies every user of `previous` (a users log of an earlier version, whose indexes were
    /// those of the data group's log) into this fresh store at index 0: the meta log's
    /// entries, numbered from 1, all come after them.
    func seed(from previous: UserStore) throws {
        let users = previous.state.withLock { $0.users.values.sorted { $0.name < $1.name } }
        for user in users { try store(user, index: 0) }
    }

    /// The index of the last entry of the group's log the users log holds.
    var appliedIndex: UInt64 { state.withLock { $0.appliedIndex } }

    /// Every user, as one image for a replica that fell behind the group's compacted log.
    func exportImage() -> [UInt8] {
        let users = state.withLock { $0.users.values.sorted { $0.name < $1.name } }
        var writer = ByteWriter()
        writer.write(varint: UInt64(users.count))
        for user in users { writer.write(lengthPrefixed: Self.encode(user, index: 0)) }
        return writer.bytes
    }

    /// Replaces every user with those of an image covering the group's log through `index`,
    /// unless the users log holds that much already.
    func install(image: [UInt8], index: UInt64) throws {
        guard !image.isEmpty, index > state.withLock({ $0.appliedIndex }) else { return }
        var reader = ByteReader(image)
        var incoming: [User] = []
        var seen = Set<String>()
        for _ in 0..<(try reader.readCount(max: 1_000_000, what: "users")) {
            let user = try Self.decode(Array(try reader.readLengthPrefixed(max: 1 << 24))).user
            // Checked before anything is logged: an image is input from another node.
            guard seen.insert(user.name).inserted else { throw CorruptDataError("a region image names user \(user.name) twice") }
            guard !user.hash.isEmpty else { throw CorruptDataError("a region image holds user \(user.name) without a password hash") }
            incoming.append(user)
        }
        guard reader.isAtEnd else { throw CorruptDataError("bytes after the users of a region image") }
        let names = Set(incoming.map(\.name))
        let gone = state.withLock { $0.users.keys.filter { !names.contains($0) } }
        let records = gone.sorted().map { User(name: $0, salt: [], hash: [], rounds: 0, grants: [:]) } + incoming
        // One append: the users log holds the whole image or, after a crash, none of its index.
        _ = try log.append(records.map { Self.encode($0, index: index) })
        state.withLock { state in
            state.users = Dictionary(uniqueKeysWithValues: incoming.map { ($0.name, $0) })
            state.verified = [:]
            state.appliedIndex = index
        }
    }

    // MARK: - Hashing and records

    private static func make(name: String, password: String, grants: [Privilege: [String]]) throws -> User {
        var generator = SystemRandomNumberGenerator()
        let salt = (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return User(name: name, salt: salt, hash: try derive(password, salt: salt, rounds: rounds), rounds: rounds, grants: grants)
    }

    private static func derive(_ password: String, salt: [UInt8], rounds: Int) throws -> [UInt8] {
        let key = try KDF.Insecure.PBKDF2.deriveKey(from: Array(password.utf8), salt: salt, using: .sha256, outputByteCount: 32, rounds: rounds)
        return key.withUnsafeBytes { Array($0) }
    }

    /// A user's record; `index` (the group's log entry it came from, 0 for none) ends it.
    static func encode(_ user: User, index: UInt64) -> [UInt8] {
        var writer = ByteWriter()
        writer.write(lengthPrefixed: user.name)
        writer.write(lengthPrefixed: user.salt)
        writer.write(lengthPrefixed: user.hash)
        writer.write(varint: UInt64(user.rounds))
        writer.write(varint: UInt64(user.grants.count))
        for (privilege, patterns) in user.grants.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            writer.write(lengthPrefixed: privilege.rawValue)
            writer.write(varint: UInt64(patterns.count))
            for pattern in patterns { writer.write(lengthPrefixed: pattern) }
        }
        writer.write(varint: index)
        return writer.bytes
    }

    /// A record and its entry's index (0 in records from before users were replicated).
    private static func decode(_ bytes: [UInt8]) throws -> (user: User, index: UInt64) {
        var reader = ByteReader(bytes)
        func text() throws -> String {
            guard let value = try reader.readText(max: 4096) else {
                throw CorruptDataError("user record text is not UTF-8")
            }
            return value
        }
        let name = try text()
        let salt = Array(try reader.readLengthPrefixed(max: 64))
        let hash = Array(try reader.readLengthPrefixed(max: 64))
        let rounds = try reader.readCount(max: 100_000_000, what: "rounds")
        var grants: [Privilege: [String]] = [:]
        for _ in 0..<(try reader.readCount(max: 64, what: "privileges")) {
            guard let privilege = Privilege(rawValue: try text()) else { throw CorruptDataError("unknown privilege in the user log") }
            var patterns: [String] = []
            for _ in 0..<(try reader.readCount(max: 100_000, what: "patterns")) { patterns.append(try text()) }
            grants[privilege] = patterns
        }
        let index = reader.isAtEnd ? 0 : try reader.readVarint()
        guard reader.isAtEnd else { throw CorruptDataError("bytes after a user record") }
        return (User(name: name, salt: salt, hash: hash, rounds: rounds, grants: grants), index)
    }
}

/// Users are kept beside the meta state: `.user` entries of the meta log change them, and
/// the meta group's images carry them.
extension UserStore: MetaExtension {
    func apply(index: UInt64, record: [UInt8]) throws {
        guard record.first == Self.entryKind else { throw CorruptDataError("a user entry of the meta log does not start with its kind") }
        try apply(index: index, entry: record)
    }
}
