/// What a consensus group replicates (DESIGN.md section 3).
public enum GroupKind: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// The meta group: partition table, databases, nodes, users.
    case meta = 0
    /// A schema region: series definitions of some (database, slot)s.
    case schema = 1
    /// A data region: points of some (database, slot, time partition)s.
    case data = 2

    public var description: String {
        switch self {
        case .meta: "meta"
        case .schema: "schema"
        case .data: "data"
        }
    }
}

/// A consensus group: a kind and a number; a node hosts many groups of each kind.
public struct GroupID: Hashable, Sendable, CustomStringConvertible {
    public var kind: GroupKind
    public var number: UInt32

    public init(kind: GroupKind, number: UInt32) {
        self.kind = kind
        self.number = number
    }

    /// `data-7`: also the group's directory name.
    public var description: String { "\(kind)-\(number)" }
}
