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

import TidemarkIO

/// A consensus group: a kind and a number; a node hosts many groups of each kind. The meta
/// group numbers the region groups (schema and data) it makes, never reusing a number.
public struct GroupID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var kind: GroupKind
    public var number: UInt32

    public init(kind: GroupKind, number: UInt32) {
        self.kind = kind
        self.number = number
    }

    /// `data-7`: also the group's directory name.
    public var description: String { "\(kind)-\(number)" }

    /// By number, then kind: region groups in the order the meta group made them.
    public static func < (a: GroupID, b: GroupID) -> Bool { (a.number, a.kind.rawValue) < (b.number, b.kind.rawValue) }

    /// `kind byte | varint number`, as Raft records and meta commands carry it.
    public func write(to writer: inout ByteWriter) {
        writer.write(kind.rawValue)
        writer.write(varint: UInt64(number))
    }

    public init(from reader: inout ByteReader) throws(CorruptDataError) {
        guard let kind = GroupKind(rawValue: try reader.readByte()) else { throw CorruptDataError("unknown group kind") }
        let number = try reader.readVarint()
        guard number <= UInt64(UInt32.max) else { throw CorruptDataError("group number \(number) out of range") }
        self.init(kind: kind, number: UInt32(number))
    }
}
