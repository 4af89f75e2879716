//! The catalogue and executor calls whose form changed between the
//! PostgreSQL versions pg_webhook builds for (13 to 18), each behind one
//! function here so the rest of the extension is the same code on every
//! version. A new version's difference goes here, as a `cfg(feature =
//! "pgNN")` arm of the call it changed, never as a copy of a caller.

use pgrx::pg_sys;

extern "C-unwind" {
    // catalog/partition.h, not among pgrx's bindings; PostgreSQL 14 added
    // the second argument.
    #[cfg(not(feature = "pg13"))]
    fn get_partition_parent(relid: pg_sys::Oid, even_if_detached: bool) -> pg_sys::Oid;
    #[cfg(feature = "pg13")]
    #[link_name = "get_partition_parent"]
    fn get_partition_parent_13(relid: pg_sys::Oid) -> pg_sys::Oid;
}

/// The partitioned table `relid` is a partition of.
///
/// # Safety
/// `relid` must be a partition (relispartition), inside a transaction.
pub(crate) unsafe fn partition_parent(relid: pg_sys::Oid) -> pg_sys::Oid {
    #[cfg(not(feature = "pg13"))]
    return get_partition_parent(relid, false);
    #[cfg(feature = "pg13")]
    return get_partition_parent_13(relid);
}

/// A tuple descriptor's attributes, `natts` of them. PostgreSQL 18 moved
/// them behind the descriptor's compact attributes (reached through
/// `TupleDescAttr`); before, they are the `attrs` array itself.
///
/// # Safety
/// `desc` must be a valid tuple descriptor that outlives the slice.
pub(crate) unsafe fn attributes<'a>(
    desc: pg_sys::TupleDesc,
) -> &'a [pg_sys::FormData_pg_attribute] {
    let n = (*desc).natts.max(0) as usize;
    #[cfg(not(feature = "pg18"))]
    {
        (*desc).attrs.as_slice(n)
    }
    #[cfg(feature = "pg18")]
    {
        if n == 0 {
            return &[];
        }
        // TupleDescAttr(desc, i) is element i of one contiguous array.
        std::slice::from_raw_parts(pg_sys::TupleDescAttr(desc, 0), n)
    }
}
