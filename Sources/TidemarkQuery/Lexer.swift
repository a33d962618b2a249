import TidemarkCore
/// A token of IoTDB's SQL dialect, with where it starts.
public struct Token: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case identifier(String)  // words and path levels; keywords are identifiers matched case-insensitively
        case quoted(String)      // `backquoted` path level, kept with its quotes
        case string(String)      // 'text' or "text"
        case number(String)      // 12, -3 is two tokens, 1.5, 1e3
        case duration(String)    // 10s, 1d2h, 5ms
        case symbol(String)      // ( ) , . * ** = != <> < <= > >= + - / % ;
        case end
    }

    public let kind: Kind
    public let line: Int
    public let column: Int
}

/// Where the SQL is wrong and what was expected.
public typealias SQLError = SourceError

/// Splits SQL into tokens; `statementBytesMax` bounds the input.
public enum Lexer {
    public static func tokens(_ sql: String, statementBytesMax: Int = QueryLimits().statementBytesMax) throws(SQLError) -> [Token] {
        guard sql.utf8.count <= statementBytesMax else {
            throw SQLError(line: 1, column: 1, message: "statement is \(sql.utf8.count) bytes, over the \(statementBytesMax) allowed")
        }
        let characters = Array(sql.unicodeScalars)
        var tokens: [Token] = []
        var index = 0, line = 1, lineStart = 0
        func column(_ at: Int) -> Int { at - lineStart + 1 }
        while index < characters.count {
            let character = characters[index]
            if character == "\n" {
                line += 1
                index += 1
                lineStart = index
                continue
            }
            if character.properties.isWhitespace { index += 1; continue }
            if character == "-" && index + 1 < characters.count && characters[index + 1] == "-" {
                while index < characters.count && characters[index] != "\n" { index += 1 }
                continue
            }
            let start = index
            let startColumn = column(index)
            if character == "'" || character == "\"" {
                var text = String.UnicodeScalarView()
                index += 1
                while true {
                    guard index < characters.count else { throw SQLError(line: line, column: startColumn, message: "unterminated string") }
                    if characters[index] == character {
                        if index + 1 < characters.count && characters[index + 1] == character {
                            text.append(character)
                            index += 2
                            continue
                        }
                        index += 1
                        break
                    }
                    text.append(characters[index])
                    index += 1
                }
                tokens.append(Token(kind: .string(String(text)), line: line, column: startColumn))
                continue
            }
            if character == "`" {
                index += 1
                while true {
                    guard index < characters.count else { throw SQLError(line: line, column: startColumn, message: "unterminated backquote") }
                    if characters[index] == "`" {
                        if index + 1 < characters.count && characters[index + 1] == "`" { index += 2; continue }
                        index += 1
                        break
                    }
                    index += 1
                }
                tokens.append(Token(kind: .quoted(String(String.UnicodeScalarView(characters[start..<index]))), line: line, column: startColumn))
                continue
            }
            if character.properties.numericType != nil && character.isASCII {
                // A number, a duration (10s, 1h30m), or a date-time (2017-11-01T00:05:00.000+08:00).
                while index < characters.count, isWordCharacter(characters[index]) || characters[index] == "." && index + 1 < characters.count && isDigit(characters[index + 1]) {
                    index += 1
                }
                if index < characters.count, characters[index] == "-", index - start == 4, allDigits(characters[start..<index]) {
                    // yyyy-mm-dd[Thh:mm:ss[.fff][zone]]
                    while index < characters.count, isDateTimeCharacter(characters[index], previous: characters[index - 1]) { index += 1 }
                    tokens.append(Token(kind: .identifier(String(String.UnicodeScalarView(characters[start..<index]))), line: line, column: startColumn))
                    continue
                }
                let text = String(String.UnicodeScalarView(characters[start..<index]))
                if let exponent = text.firstIndex(where: { $0 == "e" || $0 == "E" }),
                   index < characters.count, characters[index] == "+" || characters[index] == "-", text.index(after: exponent) == text.endIndex,
                   Double(text[..<exponent]) != nil, index + 1 < characters.count, isDigit(characters[index + 1]) {
                    index += 1
                    while index < characters.count && isDigit(characters[index]) { index += 1 }
                    tokens.append(Token(kind: .number(String(String.UnicodeScalarView(characters[start..<index]))), line: line, column: startColumn))
                    continue
                }
                let isNumber = Double(text) != nil
                tokens.append(Token(kind: isNumber ? .number(text) : .duration(text), line: line, column: startColumn))
                continue
            }
            if isWordCharacter(character) {
                while index < characters.count && isWordCharacter(characters[index]) { index += 1 }
                tokens.append(Token(kind: .identifier(String(String.UnicodeScalarView(characters[start..<index]))), line: line, column: startColumn))
                continue
            }
            let two = index + 1 < characters.count ? String(character) + String(characters[index + 1]) : ""
            if ["**", "!=", "<>", "<=", ">=", "=="].contains(two) {
                tokens.append(Token(kind: .symbol(two == "==" ? "=" : two), line: line, column: startColumn))
                index += 2
                continue
            }
            if "(),.*=<>+-/%;[]".unicodeScalars.contains(character) {
                tokens.append(Token(kind: .symbol(String(character)), line: line, column: startColumn))
                index += 1
                continue
            }
            throw SQLError(line: line, column: startColumn, message: "unexpected character '\(character)'")
        }
        tokens.append(Token(kind: .end, line: line, column: column(index)))
        return tokens
    }

    private static func isDigit(_ c: Unicode.Scalar) -> Bool { c >= "0" && c <= "9" }
    private static func isWordCharacter(_ c: Unicode.Scalar) -> Bool {
        isDigit(c) || (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || c == "_" || (!c.isASCII && c.properties.isAlphabetic)
    }
    private static func allDigits(_ s: ArraySlice<Unicode.Scalar>) -> Bool { s.allSatisfy(isDigit) }
    private static func isDateTimeCharacter(_ c: Unicode.Scalar, previous: Unicode.Scalar) -> Bool {
        isDigit(c) || c == "-" || c == ":" || c == "T" || c == "." || c == "+" || c == "Z" || c == "/"
    }
}
