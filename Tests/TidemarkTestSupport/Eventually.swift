import Foundation

/// Polls `condition` until it holds or `seconds` of wall-clock time pass (however long each
/// poll takes); returns whether it held. For conditions no event can be waited on for
/// (another process's state), never as a stand-in for a sleep.
public func eventually(within seconds: Double = 10, pollingEveryMs pollMs: UInt32 = 20, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(pollMs * 1000)
    }
    return condition()
}
