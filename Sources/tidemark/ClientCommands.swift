import ArgumentParser
import Foundation
import TidemarkNet
import TidemarkQuery

/// Connection flags shared by the client commands; the password comes from the environment.
struct Connection: ParsableArguments {
    @Option(help: "The node's HTTP address.")
    var url = NodeURL(argument: "http://127.0.0.1:18080")!

    @Option(help: "User name (the password comes from TIDEMARK_PASSWORD, default root).")
    var user = "root"

    @Option(help: "Give up on a request after this many milliseconds.")
    var timeoutMs: UInt64 = 60_000

    func send(_ method: String, _ target: String, body: [UInt8] = [], contentType: String = "application/json") throws -> HTTPClientResponse {
        let password = ProcessInfo.processInfo.environment["TIDEMARK_PASSWORD"] ?? "root"
        let credentials = Data("\(user):\(password)".utf8).base64EncodedString()
        do {
            return try HTTPClient.send(host: url.host, port: url.port, method: method, target: target, body: body,
                                       headers: [("Authorization", "Basic \(credentials)"), ("Content-Type", contentType)],
                                       timeoutMs: timeoutMs)
        } catch {
            throw ValidationFailure("cannot reach the node: \(error)")
        }
    }
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, csv, json
}

/// `tidemark sql`: one statement with -e, or an interactive shell.
struct SQL: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run SQL: one statement with -e, else an interactive shell (statements end with ';').")

    @OptionGroup var connection: Connection
    @Option(name: .shortAndLong, help: "Run this statement and exit.") var execute: String?
    @Option(help: "Output format.") var format: OutputFormat = .table

    func run() throws {
        if let execute {
            guard try runStatement(execute) else { throw ExitCode(1) }
            return
        }
        let interactive = isatty(0) != 0
        var buffer = ""
        var history: [String] = []
        while true {
            if interactive { FileHandle.standardOutput.write(Data((buffer.isEmpty ? "tidemark> " : "       -> ").utf8)) }
            guard let line = readLine() else { break }
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if buffer.isEmpty && (trimmed == "quit" || trimmed == "exit") { break }
            if buffer.isEmpty && trimmed == "history" {
                for (index, statement) in history.enumerated() { print("\(index + 1)  \(statement)") }
                continue
            }
            buffer += (buffer.isEmpty ? "" : "\n") + line
            guard trimmed.hasSuffix(";") else { continue }
            history.append(buffer)
            _ = try runStatement(buffer)
            buffer = ""
        }
        if !buffer.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { _ = try runStatement(buffer) }
    }

    /// Sends one statement and prints its answer; false when the node reports an error.
    private func runStatement(_ sql: String) throws -> Bool {
        let statement = sql.trimmingCharacters(in: .whitespacesAndNewlines).trimmingCharacters(in: CharacterSet(charactersIn: ";"))
        let isQuery = (try? Parser.parse(statement))?.isQuery ?? true
        let body = try JSONSerialization.data(withJSONObject: ["sql": statement])
        let started = Date()
        let response = try connection.send("POST", isQuery ? "/rest/v2/query" : "/rest/v2/nonQuery", body: Array(body))
        let seconds = Date().timeIntervalSince(started)
        guard let object = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] else {
            FileHandle.standardError.write(Data("error: HTTP \(response.status): \(String(decoding: response.body, as: UTF8.self))\n".utf8))
            return false
        }
        if let code = object["code"] as? Int {
            if code == 200 {
                print(String(format: "OK (%.3f s)", seconds))
                return true
            }
            FileHandle.standardError.write(Data("error \(code): \(object["message"] as? String ?? "")\n".utf8))
            if let leader = object["leader"] as? String {
                FileHandle.standardError.write(Data("hint: this node is not the leader; run it at the leader: --url http://\(leader)\n".utf8))
            }
            return false
        }
        if format == .json {
            print(String(decoding: response.body, as: UTF8.self))
            return true
        }
        let table = ResultTable(object)
        print(format == .csv ? table.csv() : table.aligned(), terminator: "")
        if format == .table { print(String(format: "%d row%@ (%.3f s)", table.rows.count, table.rows.count == 1 ? "" : "s", seconds)) }
        return true
    }
}

/// A REST result as rows, for printing.
struct ResultTable {
    var header: [String] = []
    var rows: [[String]] = []

    init(_ object: [String: Any]) {
        let names = (object["expressions"] as? [String]) ?? (object["column_names"] as? [String]) ?? []
        let columns = (object["values"] as? [[Any]]) ?? []
        let timestamps = object["timestamps"] as? [Any]
        header = (timestamps != nil ? ["Time"] : []) + names
        let count = timestamps?.count ?? columns.first?.count ?? 0
        for row in 0..<count {
            var cells: [String] = []
            if let timestamps { cells.append(Self.text(timestamps[row])) }
            for column in columns { cells.append(row < column.count ? Self.text(column[row]) : "") }
            rows.append(cells)
        }
    }

    static func text(_ value: Any) -> String {
        if value is NSNull { return "null" }
        if let number = value as? NSNumber {
            if String(cString: number.objCType) == "c" { return number.boolValue ? "true" : "false" }
            return "\(number)"
        }
        return "\(value)"
    }

    func aligned() -> String {
        let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
        let rule = "+" + widths.map { String(repeating: "-", count: $0 + 2) }.joined(separator: "+") + "+\n"
        func line(_ cells: [String]) -> String {
            "|" + cells.enumerated().map { " " + $1 + String(repeating: " ", count: widths[$0] - $1.count) + " " }.joined(separator: "|") + "|\n"
        }
        return rule + line(header) + rule + rows.map(line).joined() + rule
    }

    func csv() -> String {
        func field(_ text: String) -> String {
            text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) ? "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : text
        }
        return ([header] + rows).map { $0.map(field).joined(separator: ",") }.joined(separator: "\n") + "\n"
    }
}

/// `tidemark write FILE`: line protocol from a file or stdin, in batches, with a summary.
struct Write: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write InfluxDB line protocol from a file (or - for stdin).")

    @OptionGroup var connection: Connection
    @Argument(help: "File of line protocol, or - for standard input.") var file: String
    @Option(help: "Database (root.<db>).") var db: String
    @Option(help: "Timestamp precision: ns, us, ms or s.") var precision = "ns"
    @Option(help: "Lines per request.") var batchLines = 5000

    func run() throws {
        guard let handle = file == "-" ? FileHandle.standardInput : FileHandle(forReadingAtPath: file) else {
            throw ValidationFailure("cannot open \(file)")
        }
        let started = Date()
        var pending: [UInt8] = [], lines = 0, sent = 0, failed = 0, requests = 0
        var firstLine = 1
        func flush() throws {
            guard !pending.isEmpty else { return }
            let target = "/write?db=\(db.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? db)&precision=\(precision)"
            let response = try connection.send("POST", target, body: pending, contentType: "text/plain")
            requests += 1
            if response.status != 204 {
                failed += 1
                FileHandle.standardError.write(Data("\nlines \(firstLine)…\(lines): HTTP \(response.status) \(String(decoding: response.body, as: UTF8.self))\n".utf8))
            }
            sent = lines
            firstLine = lines + 1
            pending.removeAll(keepingCapacity: true)
            FileHandle.standardError.write(Data(String(format: "\r%d lines sent, %.0f lines/s", sent, Double(sent) / max(Date().timeIntervalSince(started), 0.001)).utf8))
        }
        var carry: [UInt8] = []
        while true {
            let chunk = handle.readData(ofLength: 1 << 20)
            if chunk.isEmpty { break }
            carry += chunk
            while let newline = carry.firstIndex(of: 10) {
                pending += carry[...newline]
                carry.removeSubrange(...newline)
                lines += 1
                if lines % batchLines == 0 { try flush() }
            }
        }
        if !carry.isEmpty { pending += carry; pending.append(10); lines += 1 }
        try flush()
        FileHandle.standardError.write(Data("\n".utf8))
        print(String(format: "%d lines in %d requests, %d with errors, %.2f s", lines, requests, failed, Date().timeIntervalSince(started)))
        if failed > 0 { throw ExitCode(1) }
    }
}
