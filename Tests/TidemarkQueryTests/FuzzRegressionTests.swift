import Foundation
import Testing
@testable import TidemarkQuery

/// Inputs libFuzzer once crashed the SQL front end with (fuzz/corpus/sql keeps them too).
@Suite struct FuzzRegressionTests {
    @Test(arguments: ["SELECT+80SE+80SECT+8CT+80V8V8", "select 1e", "select 9999999999999999999999 from root.a", "select a from root.a where time > 99999999999999999999", "select a from root.a where time > now() + 9000000000y + 9000000000y"])
    func parserRejectsWithoutCrashing(sql: String) {
        _ = try? Parser.parse(sql, nowMs: 0)
    }
}
