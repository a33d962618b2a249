/// What a region group holds: series definitions (schema) or points (data).
public enum RegionKind: UInt8, Sendable, Hashable, CaseIterable {
    case schema = 1
    case data = 2
}

/// A region group of the cluster: one consensus group, numbered by the meta group in the
/// order it made them (numbers are never reused).
public struct RegionGroupID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var kind: RegionKind
    public var number: UInt32

    public init(_ kind: RegionKind, _ number: UInt32) {
        self.kind = kind
        self.number = number
    }

    public static func < (a: RegionGroupID, b: RegionGroupID) -> Bool { (a.number, a.kind.rawValue) < (b.number, b.kind.rawValue) }

    public var description: String { "\(kind == .schema ? "schema" : "data")-\(number)" }
}

/// A node of the cluster, as the meta group numbers it (from 1, never reused).
public typealias NodeID = UInt64
