#if canImport(Glibc)
import Glibc
#endif
import TidemarkCore

/// One field value of a line-protocol point.
public enum LineFieldValue: Sendable, Equatable {
    case float(Double)
    case integer(Int64)
    case unsigned(UInt64)
    case boolean(Bool)
    case string(String)
}

/// One `key=value` tag of a line.
public struct LineTag: Sendable, Equatable {
    public var key: String
    public var value: String
}

/// One `key=value` field of a line.
public struct LineField: Sendable, Equatable {
    public var key: String
    public var value: LineFieldValue
}

/// One parsed line: `measurement,tags fields timestamp`.
public struct LinePoint: Sendable, Equatable {
    public var measurement: String
    /// Tags sorted by key (InfluxDB's canonical order).
    public var tags: [LineTag]
    public var fields: [LineField]
    /// In the request's precision; nil when the line has none (server time).
    public var timestamp: Int64?
    /// 1-based line number in the request body.
    public var line: Int
    /// Lines of one parse with the same series key (measurement and tags, byte for byte)
    /// share this number, so a mapping can build their device once; -1 when not tracked.
    public var seriesKey: Int = -1
}

/// A line that does not parse (or cannot be written), with where and why.
public typealias LineError = SourceError

/// InfluxDB line protocol, parsed line by line: a bad line is reported and skipped, the
/// good ones are kept (as InfluxDB does with a partial write).
public enum LineProtocol {
    public struct Parsed: Sendable {
        public var points: [LinePoint] = []
        public var errors: [LineError] = []
    }

    public static func parse(_ body: [UInt8], linesMax: Int = 10_000_000, fieldsPerLineMax: Int = 10_000) -> Parsed {
        var points: [LinePoint] = []
        let errors = forEachPoint(in: body, linesMax: linesMax, fieldsPerLineMax: fieldsPerLineMax) { points.append($0) }
        return Parsed(points: points, errors: errors)
    }

    /// Parses `body` line by line, handing each good line to `visit` in order, and returns
    /// the bad lines. A line's fields array is reused for the next line unless `visit` keeps
    /// it, so a caller that maps lines to rows allocates nothing per line for fields. A line
    /// with more than `fieldsPerLineMax` fields is refused as soon as the parser reaches that field.
    public static func forEachPoint(in body: [UInt8], linesMax: Int = 10_000_000, fieldsPerLineMax: Int = 10_000,
                                    _ visit: (LinePoint) -> Void) -> [LineError] {
        precondition(fieldsPerLineMax > 0)
        var errors: [LineError] = []
        var lineNumber = 0
        var start = 0
        var seriesKeys = SeriesKeys()
        var fields: [LineField] = []
        body.withUnsafeBufferPointer { bytes in
            while start < bytes.count {
                var end = start
                while end < bytes.count && bytes[end] != UInt8(ascii: "\n") { end += 1 }
                lineNumber += 1
                var lineEnd = end
                if lineEnd > start && bytes[lineEnd - 1] == UInt8(ascii: "\r") { lineEnd -= 1 }
                if lineNumber > linesMax {
                    errors.append(LineError(line: lineNumber, column: 1, message: "more than \(linesMax) lines in one request"))
                    return
                }
                var parser = LineParser(bytes: UnsafeBufferPointer(rebasing: bytes[start..<lineEnd]), line: lineNumber,
                                        fieldsMax: fieldsPerLineMax)
                switch parser.parse(seriesKeys: &seriesKeys, fields: &fields) {
                case .success(let point?): visit(point)
                case .success(nil): break
                case .failure(let error): errors.append(error)
                }
                start = end + 1
            }
        }
        return errors
    }
}

/// The measurement and sorted tags of every distinct series key (the bytes before a line's
/// first unescaped space) seen in one request: a device's later lines skip that part.
private struct SeriesKeys {
    struct Entry {
        let key: [UInt8]
        let measurement: String
        let tags: [LineTag]
        /// The field keys of the key's last line, known to be distinct: a line with the
        /// same keys needs no check for repeats (and its fields array has the right size).
        var fieldKeys: [String] = []
    }

    /// Distinct keys remembered per request; past it lines are parsed in full (memory stays bounded).
    static let entriesMax = 65_536
    private(set) var entries: [Entry] = []
    private var byHash: [Int: [Int]] = [:]

    static func hash(_ key: UnsafeBufferPointer<UInt8>) -> Int {
        var hasher = Hasher()
        hasher.combine(bytes: UnsafeRawBufferPointer(key))
        return hasher.finalize()
    }

    /// The entry's number, if `key` was seen.
    func find(_ key: UnsafeBufferPointer<UInt8>, hash: Int) -> Int? {
        byHash[hash]?.first { index in
            entries[index].key.count == key.count && entries[index].key.withUnsafeBufferPointer { known in
                key.isEmpty || memcmp(known.baseAddress!, key.baseAddress!, key.count) == 0
            }
        }
    }

    mutating func noteFieldKeys(_ fields: [LineField], of entry: Int) {
        entries[entry].fieldKeys = fields.map(\.key)
    }

    /// Remembers `key`; returns its number, or -1 when full.
    mutating func insert(_ key: UnsafeBufferPointer<UInt8>, hash: Int, measurement: String, tags: [LineTag]) -> Int {
        guard entries.count < Self.entriesMax else { return -1 }
        entries.append(Entry(key: Array(key), measurement: measurement, tags: tags))
        byHash[hash, default: []].append(entries.count - 1)
        return entries.count - 1
    }
}

/// Parses one line. Escapes: in measurements `\,` and `\ `; in tag keys, tag values and
/// field keys also `\=`; in string field values `\"` and `\\`.
private struct LineParser {
    let bytes: UnsafeBufferPointer<UInt8>
    let line: Int
    let fieldsMax: Int
    var position = 0

    init(bytes: UnsafeBufferPointer<UInt8>, line: Int, fieldsMax: Int) {
        self.bytes = bytes
        self.line = line
        self.fieldsMax = fieldsMax
    }

    private func fail(_ reason: String, at column: Int? = nil) -> LineError {
        LineError(line: line, column: (column ?? position) + 1, message: reason)
    }

    private var current: UInt8? { position < bytes.count ? bytes[position] : nil }

    /// The end of the series key that starts at `position`: its first unescaped space (or the line's end).
    private func seriesKeyEnd() -> Int {
        var index = position
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\\"), index + 1 < bytes.count, Self.isEscapable(bytes[index + 1]) {
                index += 2
                continue
            }
            if byte == UInt8(ascii: " ") { break }
            index += 1
        }
        return index
    }

    /// The line's point; `fields` is scratch space, emptied first.
    mutating func parse(seriesKeys: inout SeriesKeys, fields: inout [LineField]) -> Result<LinePoint?, LineError> {
        while current == UInt8(ascii: " ") || current == UInt8(ascii: "\t") { position += 1 }
        if current == nil || current == UInt8(ascii: "#") { return .success(nil) }
        do {
            let key = UnsafeBufferPointer(rebasing: bytes[position..<seriesKeyEnd()])
            let keyHash = SeriesKeys.hash(key)
            let measurement: String
            let sortedTags: [LineTag]
            let seriesKey: Int
            if let known = seriesKeys.find(key, hash: keyHash) {
                // Seen in this request: the same bytes parse to the same measurement and tags.
                measurement = seriesKeys.entries[known].measurement
                sortedTags = seriesKeys.entries[known].tags
                seriesKey = known
                position += key.count
            } else {
                (measurement, sortedTags) = try measurementAndTags()
                seriesKey = seriesKeys.insert(key, hash: keyHash, measurement: measurement, tags: sortedTags)
            }
            guard current == UInt8(ascii: " ") else { throw fail("expected a space and fields after the measurement and tags") }
            while current == UInt8(ascii: " ") { position += 1 }
            fields.removeAll(keepingCapacity: true)
            let knownKeys = seriesKey >= 0 ? seriesKeys.entries[seriesKey].fieldKeys : []
            fields.reserveCapacity(knownKeys.isEmpty ? 4 : knownKeys.count)
            repeat {
                if !fields.isEmpty { position += 1 }
                guard fields.count < fieldsMax else { throw fail("more than \(fieldsMax) fields in one line (fields_per_line_max)") }
                let key = try name(stop1: UInt8(ascii: ","), stop2: UInt8(ascii: " "), allowEquals: false, what: "field key")
                guard current == UInt8(ascii: "=") else { throw fail("expected '=' after field key \(key)") }
                position += 1
                fields.append(LineField(key: key, value: try fieldValue()))
            } while current == UInt8(ascii: ",")
            var timestamp: Int64?
            if current == UInt8(ascii: " ") {
                while current == UInt8(ascii: " ") { position += 1 }
                if current != nil { timestamp = try integerTimestamp() }
            }
            while current == UInt8(ascii: " ") { position += 1 }
            guard current == nil else { throw fail("unexpected text after the timestamp") }
            // The keys of this series' last line were checked then.
            if fields.count != knownKeys.count || !zip(fields, knownKeys).allSatisfy({ $0.key == $1 }) {
                try checkDistinct(fields)
                if seriesKey >= 0 { seriesKeys.noteFieldKeys(fields, of: seriesKey) }
            }
            return .success(LinePoint(measurement: measurement, tags: sortedTags, fields: fields, timestamp: timestamp, line: line,
                                      seriesKey: seriesKey))
        } catch let error as LineError {
            return .failure(error)
        } catch {
            return .failure(fail("\(error)"))
        }
    }

    private func checkDistinct(_ fields: [LineField]) throws {
        if fields.count <= 16 {
            // A few fields: comparing pairs beats hashing every key.
            for index in fields.indices.dropFirst() where fields[..<index].contains(where: { $0.key == fields[index].key }) {
                throw fail("field \(fields[index].key) appears twice", at: 0)
            }
        } else {
            var seen = Set<String>()
            for field in fields where !seen.insert(field.key).inserted { throw fail("field \(field.key) appears twice", at: 0) }
        }
    }

    /// The measurement and the tags (sorted by key, each key once), up to the space before the fields.
    private mutating func measurementAndTags() throws -> (String, [LineTag]) {
        let measurement = try name(stop1: UInt8(ascii: ","), stop2: UInt8(ascii: " "), allowEquals: true, what: "measurement")
        var tags: [LineTag] = []
        while current == UInt8(ascii: ",") {
            position += 1
            let key = try name(stop1: UInt8(ascii: ","), stop2: UInt8(ascii: " "), allowEquals: false, what: "tag key")
            guard current == UInt8(ascii: "=") else { throw fail("expected '=' after tag key \(key)") }
            position += 1
            let value = try name(stop1: UInt8(ascii: ","), stop2: UInt8(ascii: " "), allowEquals: false, what: "tag value")
            tags.append(LineTag(key: key, value: value))
        }
        let sortedTags = tags.sorted { $0.key < $1.key }
        for index in sortedTags.indices.dropFirst() where sortedTags[index].key == sortedTags[index - 1].key {
            throw fail("tag \(sortedTags[index].key) appears twice", at: 0)
        }
        return (measurement, sortedTags)
    }

    /// A measurement, tag key/value or field key, unescaped; ends at an unescaped stop byte
    /// (`stop1`, `stop2`, or `=` unless `allowEquals`).
    private mutating func name(stop1: UInt8, stop2: UInt8, allowEquals: Bool, what: String) throws -> String {
        let start = position
        var escaped = false
        var highBits: UInt8 = 0
        while let byte = current {
            if byte == UInt8(ascii: "\\"), position + 1 < bytes.count, Self.isEscapable(bytes[position + 1]) {
                escaped = true
                position += 2
                continue
            }
            if byte == stop1 || byte == stop2 || (byte == UInt8(ascii: "=") && !allowEquals) { break }
            highBits |= byte
            position += 1
        }
        guard position > start else { throw fail("missing \(what)", at: start) }
        let raw = UnsafeBufferPointer(rebasing: bytes[start..<position])
        // ASCII (the usual case) is valid UTF-8 as it stands: no validation pass.
        if highBits < 0x80 && !escaped { return String(decoding: raw, as: UTF8.self) }
        let text = escaped ? String(validating: Self.unescaped(raw), as: UTF8.self) : String(validating: raw, as: UTF8.self)
        guard let text else { throw fail("\(what) is not valid UTF-8", at: start) }
        return text
    }

    private static func isEscapable(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: ",") || byte == UInt8(ascii: " ") || byte == UInt8(ascii: "=") || byte == UInt8(ascii: "\\")
    }

    private static func unescaped(_ raw: UnsafeBufferPointer<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(raw.count)
        var index = 0
        while index < raw.count {
            if raw[index] == UInt8(ascii: "\\"), index + 1 < raw.count, isEscapable(raw[index + 1]) { index += 1 }
            out.append(raw[index])
            index += 1
        }
        return out
    }

    private mutating func fieldValue() throws -> LineFieldValue {
        let start = position
        guard let first = current else { throw fail("missing field value") }
        if first == UInt8(ascii: "\"") {
            position += 1
            var out: [UInt8] = []
            while true {
                guard let byte = current else { throw fail("unterminated string field value", at: start) }
                if byte == UInt8(ascii: "\\"), position + 1 < bytes.count,
                   bytes[position + 1] == UInt8(ascii: "\"") || bytes[position + 1] == UInt8(ascii: "\\") {
                    out.append(bytes[position + 1])
                    position += 2
                    continue
                }
                position += 1
                if byte == UInt8(ascii: "\"") { break }
                out.append(byte)
            }
            guard let text = String(validating: out, as: UTF8.self) else { throw fail("string field value is not valid UTF-8", at: start) }
            return .string(text)
        }
        while let byte = current, byte != UInt8(ascii: ","), byte != UInt8(ascii: " ") { position += 1 }
        let token = UnsafeBufferPointer(rebasing: bytes[start..<position])
        if let value = NumberScan.value(token) { return value }
        throw fail("invalid field value \(String(decoding: token, as: UTF8.self))", at: start)
    }

    private mutating func integerTimestamp() throws -> Int64 {
        let start = position
        while let byte = current, byte != UInt8(ascii: " ") { position += 1 }
        let token = UnsafeBufferPointer(rebasing: bytes[start..<position])
        guard let value = NumberScan.int64(token) else { throw fail("invalid timestamp \(String(decoding: token, as: UTF8.self))", at: start) }
        return value
    }
}
