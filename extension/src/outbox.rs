//! The outbox: `webhook.event_log`, written in the capturing transaction.
//!
//! Each event row carries the 64-bit id of its top-level transaction. Routing
//! (`webhook.route()`, in SQL) picks up events by transaction visibility
//! between two snapshots rather than by id, because ids are assigned at insert
//! and a lower id can commit after a higher one.

use std::cell::Cell;
use std::ffi::CStr;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::capture::Event;

extern "C-unwind" {
    // commands/sequence.h is not among pgrx's bindings; exported since
    // PostgreSQL 10 (identity columns use it) with this signature.
    fn nextval_internal(relid: pg_sys::Oid, check_permissions: bool) -> i64;
}

const SCHEMA: &CStr = c"webhook";
const TABLE: &CStr = c"event_log";
const SEQUENCE: &CStr = c"event_id_seq";
/// Columns of webhook.event_log, in order (checked when the table is opened).
const COLUMNS: [&str; 7] = [
    "id",
    "txid",
    "event_type",
    "body",
    "ordering_key",
    "endpoint_id",
    "created_at",
];

thread_local! {
    /// (event_log, event_id_seq) OIDs, looked up once per backend and again
    /// whenever the table is no longer what we expect (extension recreated).
    static TARGET: Cell<Option<(pg_sys::Oid, pg_sys::Oid)>> = const { Cell::new(None) };
}

/// Top-level transaction id as a plain bigint (xid8 without the epoch games).
pub fn current_txid() -> i64 {
    // SAFETY: we are inside a transaction; this assigns an xid if none yet.
    unsafe { pg_sys::GetTopFullTransactionId().value as i64 }
}

fn schema_broken(what: &str) -> ! {
    pgrx::ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
        format!("pg_webhook's outbox is missing or altered: {what}"),
        "Reinstall the extension: DROP EXTENSION pg_webhook CASCADE; CREATE EXTENSION pg_webhook;"
    );
}

/// # Safety
/// Inside a transaction (catalog lookups).
unsafe fn lookup() -> (pg_sys::Oid, pg_sys::Oid) {
    let nsp = pg_sys::get_namespace_oid(SCHEMA.as_ptr(), true);
    if nsp == pg_sys::InvalidOid {
        schema_broken("schema webhook does not exist");
    }
    let rel = pg_sys::get_relname_relid(TABLE.as_ptr(), nsp);
    let seq = pg_sys::get_relname_relid(SEQUENCE.as_ptr(), nsp);
    if rel == pg_sys::InvalidOid || seq == pg_sys::InvalidOid {
        schema_broken("webhook.event_log or webhook.event_id_seq does not exist");
    }
    TARGET.with(|t| t.set(Some((rel, seq))));
    (rel, seq)
}

/// Does `rel` look like webhook.event_log, column for column?
/// # Safety
/// `rel` must be an open relation.
unsafe fn is_event_log(rel: pg_sys::Relation) -> bool {
    let name = CStr::from_ptr((*(*rel).rd_rel).relname.data.as_ptr());
    let desc = (*rel).rd_att;
    if name != TABLE || (*desc).natts as usize != COLUMNS.len() {
        return false;
    }
    let attrs = (*desc).attrs.as_slice(COLUMNS.len());
    attrs.iter().zip(COLUMNS).all(|(a, c)| {
        !a.attisdropped && CStr::from_ptr(a.attname.data.as_ptr()).to_bytes() == c.as_bytes()
    })
}

/// # Safety
/// Allocates in CurrentMemoryContext: inside a backend only.
unsafe fn text_datum(s: &str) -> pg_sys::Datum {
    pg_sys::Datum::from(pg_sys::cstring_to_text_with_len(
        s.as_ptr().cast(),
        s.len() as i32,
    ))
}

/// Insert one event into the outbox.
///
/// This is the capture hot path, so it skips SPI and the executor: one heap
/// insert plus its index entries, like COPY does per row. That is safe here
/// because the table is ours: no user triggers, rules, RLS or constraints
/// beyond NOT NULL (which we satisfy) hang on it. Permissions are not
/// checked, as for a SECURITY DEFINER function: whoever may write a tracked
/// table may produce its events. A failed (sub)transaction takes the row
/// with it, as for any insert.
pub fn insert(event: &Event) {
    // SAFETY: inside a transaction (we are called from a trigger); the
    // relation is opened with RowExclusiveLock, held to the end of the
    // transaction; datums live in the current memory context until the
    // tuple is formed and written.
    unsafe {
        let (mut rel_oid, mut seq_oid) = TARGET.with(|t| t.get()).unwrap_or_else(|| lookup());
        let mut rel = pg_sys::try_table_open(rel_oid, pg_sys::RowExclusiveLock as i32);
        if rel.is_null() || !is_event_log(rel) {
            if !rel.is_null() {
                pg_sys::table_close(rel, pg_sys::RowExclusiveLock as i32);
            }
            (rel_oid, seq_oid) = lookup();
            rel = pg_sys::table_open(rel_oid, pg_sys::RowExclusiveLock as i32);
            if !is_event_log(rel) {
                schema_broken("webhook.event_log does not have the expected columns");
            }
        }
        let id = nextval_internal(seq_oid, false);
        let mut values = [
            pg_sys::Datum::from(id),
            pg_sys::Datum::from(current_txid()),
            text_datum(&event.event_type),
            text_datum(&event.body),
            event
                .ordering_key
                .as_deref()
                .map(|k| text_datum(k))
                .unwrap_or(pg_sys::Datum::from(0usize)),
            pg_sys::Datum::from(0usize),
            pg_sys::Datum::from(event.created_at),
        ];
        let mut nulls = [
            false,
            false,
            false,
            false,
            event.ordering_key.is_none(),
            true,
            false,
        ];
        let tuple = pg_sys::heap_form_tuple((*rel).rd_att, values.as_mut_ptr(), nulls.as_mut_ptr());
        pg_sys::CatalogTupleInsert(rel, tuple);
        pg_sys::heap_freetuple(tuple);
        pg_sys::table_close(rel, pg_sys::NoLock as i32);
    }
}
