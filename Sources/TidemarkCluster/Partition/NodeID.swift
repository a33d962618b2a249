/// A node of the cluster, as the meta group numbers it (from 1, never reused). Region groups
/// are the consensus layer's `GroupID`s of kind schema or data, numbered by the meta group.
public typealias NodeID = UInt64
