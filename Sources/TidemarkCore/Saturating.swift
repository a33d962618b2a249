/// Arithmetic on numbers a client controls (LIMIT, OFFSET, time bounds, durations): it stops
/// at the type's ends instead of trapping, which is what "no limit" or "after everything" means.
extension FixedWidthInteger {
    /// `self + other`, or the nearest end of the type when that overflows.
    @inlinable public func saturatingAdd(_ other: Self) -> Self {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? (other > 0 ? .max : .min) : sum
    }

    /// `self - other`, or the nearest end of the type when that overflows.
    @inlinable public func saturatingSubtract(_ other: Self) -> Self {
        let (difference, overflow) = subtractingReportingOverflow(other)
        return overflow ? (other > 0 ? .min : .max) : difference
    }
}
