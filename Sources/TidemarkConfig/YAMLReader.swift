#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TidemarkCore
import Yams

/// Reads typed values out of a YAML node tree, turning every mismatch into a
/// `ConfigError` that names the file, the dotted key and the line and column.
struct YAMLReader {
    let file: String

    /// Parses `text`; an empty document is an empty mapping.
    func root(of text: String) throws(ConfigError) -> Node {
        do {
            return try Yams.compose(yaml: text) ?? Node.mapping(.init([]))
        } catch let error as YamlError {
            throw describe(error)
        } catch {
            throw ConfigError(file: file, key: nil, line: nil, column: nil, message: "\(error)")
        }
    }

    /// The entries of a mapping, keys as strings, duplicates refused.
    func entries(_ node: Node, key: String?) throws(ConfigError) -> [(name: String, node: Node)] {
        guard case .mapping(let mapping) = node else { throw mismatch(node, key: key, expected: "a mapping") }
        var seen = Set<String>()
        var result: [(name: String, node: Node)] = []
        for (keyNode, value) in mapping {
            guard case .scalar(let scalar) = keyNode else {
                throw ConfigError(file: file, key: key, line: keyNode.mark?.line, column: keyNode.mark?.column,
                                  message: "keys must be plain names")
            }
            let childKey = key.map { "\($0).\(scalar.string)" } ?? scalar.string
            guard seen.insert(scalar.string).inserted else {
                throw error(at: keyNode, key: childKey, "appears twice")
            }
            result.append((scalar.string, value))
        }
        return result
    }

    func int(_ node: Node, key: String) throws(ConfigError) -> Int {
        guard case .scalar = node, let value = node.int else { throw mismatch(node, key: key, expected: "an integer") }
        return value
    }

    func bool(_ node: Node, key: String) throws(ConfigError) -> Bool {
        guard case .scalar(let scalar) = node, scalar.style == .plain, let value = node.bool else {
            throw mismatch(node, key: key, expected: "true or false")
        }
        return value
    }

    func string(_ node: Node, key: String) throws(ConfigError) -> String {
        guard case .scalar(let scalar) = node else { throw mismatch(node, key: key, expected: "a string") }
        return scalar.string
    }

    func strings(_ node: Node, key: String) throws(ConfigError) -> [String] {
        guard case .sequence(let sequence) = node else { throw mismatch(node, key: key, expected: "a list of strings") }
        var result: [String] = []
        for (index, element) in sequence.enumerated() {
            result.append(try string(element, key: "\(key)[\(index)]"))
        }
        return result
    }

    /// One of a fixed set of words.
    func choice<T: RawRepresentable & CaseIterable>(_ node: Node, key: String, as: T.Type) throws(ConfigError) -> T
    where T.RawValue == String {
        let word = try string(node, key: key)
        guard let value = T(rawValue: word) else {
            let allowed = T.allCases.map(\.rawValue).joined(separator: ", ")
            throw error(at: node, key: key, "expected one of \(allowed), got \"\(word)\"")
        }
        return value
    }

    func listenAddress(_ node: Node, key: String) throws(ConfigError) -> ListenAddress {
        switch ListenAddress.parse(try string(node, key: key)) {
        case .success(let address): return address
        case .failure(let failure): throw error(at: node, key: key, failure.reason)
        }
    }

    func error(at node: Node, key: String?, _ message: String) -> ConfigError {
        ConfigError(file: file, key: key, line: node.mark?.line, column: node.mark?.column, message: message)
    }

    func unknownKey(_ name: String, at node: Node, parent: String?, allowed: [String]) -> ConfigError {
        let key = parent.map { "\($0).\(name)" } ?? name
        return error(at: node, key: key, "unknown key (expected one of: \(allowed.joined(separator: ", ")))")
    }

    private func mismatch(_ node: Node, key: String?, expected: String) -> ConfigError {
        let got: String
        switch node {
        case .scalar(let scalar): got = "\"\(scalar.string)\""
        case .mapping: got = "a mapping"
        case .sequence: got = "a list"
        case .alias: got = "an alias"
        }
        return error(at: node, key: key, "expected \(expected), got \(got)")
    }

    private func describe(_ error: YamlError) -> ConfigError {
        switch error {
        case .scanner(let context, let problem, let mark, _),
             .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            let detail = context.map { "\(problem) (\($0.text))" } ?? problem
            return ConfigError(file: file, key: nil, line: mark.line, column: mark.column, message: "invalid YAML: \(detail)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            return ConfigError(file: file, key: duplicates.first, line: context.mark.line, column: context.mark.column,
                               message: "appears twice")
        default:
            return ConfigError(file: file, key: nil, line: nil, column: nil, message: "invalid YAML: \(error)")
        }
    }
}


/// Reads a whole file as UTF-8, or says why it cannot.
func readConfigFile(_ path: String) throws(ConfigError) -> String {
    guard let handle = fopen(path, "rb") else {
        throw ConfigError(file: path, key: nil, line: nil, column: nil,
                          message: "cannot read file: \(String(cString: strerror(errno)))")
    }
    defer { fclose(handle) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 64 * 1024)
    let fileBytesMax = 16 * 1024 * 1024
    while true {
        let count = fread(&chunk, 1, chunk.count, handle)
        if count > 0 { bytes.append(contentsOf: chunk[0..<count]) }
        if bytes.count > fileBytesMax {
            throw ConfigError(file: path, key: nil, line: nil, column: nil,
                              message: "file is larger than \(fileBytesMax) bytes")
        }
        if count < chunk.count {
            if ferror(handle) != 0 {
                throw ConfigError(file: path, key: nil, line: nil, column: nil,
                                  message: "cannot read file: \(String(cString: strerror(errno)))")
            }
            break
        }
    }
    guard let text = String(validating: bytes, as: UTF8.self) else {
        throw ConfigError(file: path, key: nil, line: nil, column: nil, message: "file is not valid UTF-8")
    }
    return text
}
