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
use crate::error::WebhookError;
use crate::guc;

extern "C-unwind" {
    // commands/sequence.h is not among pgrx's bindings; exported since
    // PostgreSQL 10 (identity columns use it) with this signature.
    fn nextval_internal(relid: pg_sys::Oid, check_permissions: bool) -> i64;
}

const SCHEMA: &CStr = c"webhook";
const TABLE: &CStr = c"event_log";
const SEQUENCE: &CStr = c"event_id_seq";
/// Columns of webhook.event_log, in order (checked when the table is opened).
/// A database not yet updated from 0.1.0 has all but the last.
const COLUMNS: [&str; 8] = [
    "id",
    "txid",
    "event_type",
    "body",
    "ordering_key",
    "endpoint_id",
    "created_at",
    "traceparent",
];
/// Columns of 0.1.0's outbox (no traceparent).
const COLUMNS_0_1_0: usize = 7;

thread_local! {
    /// (event_log, event_id_seq) OIDs, looked up once per backend and again
    /// whenever the table is no longer what we expect (extension recreated).
    static TARGET: Cell<Option<(pg_sys::Oid, pg_sys::Oid)>> = const { Cell::new(None) };
    /// (generation, its partition's OID): the partition events go to, looked
    /// up again when the generation changes or the partition is not it.
    static LEAF: Cell<Option<(i64, pg_sys::Oid)>> = const { Cell::new(None) };
}

/// The outbox is partitioned by id into generations of 2^40 ids each:
/// generation k holds ids [k << 40, (k + 1) << 40) in partition
/// `webhook.event_log_p<k>`, and the deliveries and attempts of its events
/// in `delivery_p<k>` and `attempt_log_p<k>`. `webhook.maintain()` starts a
/// new generation (creates its partitions, then moves the id sequence to
/// its first id) every partition interval, and drops a whole generation
/// once it is older than the retention and nothing in it is pending: no
/// DELETE, no VACUUM. An id's partition is known from the id alone, so a
/// lookup by event id reads one partition, and capture writes its partition
/// directly (below). 2^40 ids a generation, 2^23 generations in a bigint.
pub const GENERATION_BITS: u32 = 40;

pub fn generation_of(id: i64) -> i64 {
    id >> GENERATION_BITS
}

/// The generation an event id belongs to.
#[pg_extern(immutable, strict, parallel_safe, name = "_generation")]
fn generation_sql(id: i64) -> i64 {
    generation_of(id)
}

/// The first id of generation `k` (the last is the next one's first - 1).
#[pg_extern(immutable, strict, parallel_safe, name = "_generation_start")]
fn generation_start_sql(k: i64) -> i64 {
    if !(0..(1 << (63 - GENERATION_BITS))).contains(&k) {
        pgrx::ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
            format!("generation {k} is out of range"),
            "Generations are numbered from 0 to 8388607."
        );
    }
    k << GENERATION_BITS
}

/// The one rule for event type names (and so for prefixes and patterns):
/// dot-separated parts of letters, digits, `_` and `-`, at most 200 bytes.
/// Receivers route on them and they appear in URLs and logs, so nothing
/// else (spaces, quotes, control characters) may enter the outbox.
pub fn event_type_ok(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 200
        && t.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

#[pg_extern(immutable, parallel_safe, name = "_event_type_ok")]
fn event_type_ok_sql(t: Option<&str>) -> bool {
    t.is_some_and(event_type_ok)
}

/// Event types `webhook.*` are pg_webhook's own (operational events, the
/// test event): they reach the operator's `webhook.*` endpoints signed, so
/// neither `emit()`, `track()` nor a capture trigger may write one.
pub fn event_type_reserved(t: &str) -> bool {
    t == "webhook" || t.starts_with("webhook.")
}

#[pg_extern(immutable, parallel_safe, name = "_event_type_reserved")]
fn event_type_reserved_sql(t: Option<&str>) -> bool {
    t.is_some_and(event_type_reserved)
}

/// The most bytes an ordering key is stored with.
pub const ORDERING_KEY_MAX: usize = 256;

/// The ordering key as stored: as given, or, when longer than
/// [`ORDERING_KEY_MAX`] bytes, `sha256:` and its digest in hex. Keys are
/// compared, never read, so the digest orders exactly as the key would;
/// stored whole, a key over ~2.7 KB would not fit the btree that finds an
/// endpoint's ordered deliveries, and routing would fail for everyone.
pub fn ordering_key(key: String) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write;
    if key.len() <= ORDERING_KEY_MAX {
        return key;
    }
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in Sha256::digest(key.as_bytes()) {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A captured row's ordering key: its table's scope, `:`, and its primary
/// key as [`ordering_key`] stores it (so a key of 0.1.0, which had no
/// scope, becomes this one by prefixing it: the upgrade does).
pub fn scoped_key(scope: &str, key: String) -> String {
    let key = ordering_key(key);
    let mut out = String::with_capacity(scope.len() + 1 + key.len());
    out.push_str(scope);
    out.push(':');
    out.push_str(&key);
    out
}

/// The longest key scope a capture trigger may carry: a schema and a
/// table name (63 bytes each), a dot, `#` and an oid.
pub const KEY_SCOPE_MAX: usize = 140;

/// A capture trigger's key scope, as track() writes it: not empty, at
/// most [`KEY_SCOPE_MAX`] bytes.
pub fn check_key_scope(scope: &str) -> Result<String, String> {
    if scope.is_empty() || scope.len() > KEY_SCOPE_MAX {
        return Err(format!(
            "the key scope must be 1 to {KEY_SCOPE_MAX} bytes, not {}",
            scope.len()
        ));
    }
    Ok(scope.to_string())
}

#[pg_extern(immutable, parallel_safe, strict, name = "_ordering_key")]
fn ordering_key_sql(key: String) -> String {
    ordering_key(key)
}

/// Refuse an event body larger than `webhook.max_event_size`.
pub fn check_size(event_type: &str, size: usize) -> Result<(), WebhookError> {
    let max = guc::max_event_size();
    if size > max {
        return Err(WebhookError::EventTooLarge {
            event_type: event_type.to_string(),
            size,
            max,
        });
    }
    Ok(())
}

/// `emit()`'s size check (the capture trigger calls `check_size` itself).
#[pg_extern(stable, parallel_safe, name = "_check_event_size")]
fn check_size_sql(event_type: &str, size: i64) {
    check_size(event_type, size.max(0) as usize).unwrap_or_else(|e| e.raise())
}

/// `body` with every `\u0000` escape replaced by `\ufffd`: jsonb (whose
/// strings are PostgreSQL text) cannot hold U+0000, but the json type
/// accepts the escape, so a captured json column may carry one. Used by
/// the `webhook.events` view only when the body contains the escape; the
/// body itself, what receivers get, is never changed.
pub fn without_nul_escapes(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    // In valid JSON a backslash only occurs inside a string, where it
    // starts a two-character escape (or \uXXXX): take escapes whole, so an
    // escaped backslash followed by "u0000" is left alone.
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let esc = &rest[i..];
        if let Some(after) = esc.strip_prefix("\\u0000") {
            out.push_str("\\ufffd");
            rest = after;
        } else {
            let len = esc[1..].chars().next().map_or(1, |c| 1 + c.len_utf8());
            out.push_str(&esc[..len]);
            rest = &esc[len..];
        }
    }
    out.push_str(rest);
    out
}

#[pg_extern(immutable, strict, parallel_safe, name = "_without_nul_escapes")]
fn without_nul_escapes_sql(body: &str) -> String {
    without_nul_escapes(body)
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
    name == TABLE && is_partitioned(rel).is_some() && has_outbox_columns(rel)
}

/// Some(true) for the partitioned outbox, Some(false) for 0.1.0's plain
/// table (a database whose library is new but which has not run
/// `ALTER EXTENSION pg_webhook UPDATE` yet must go on capturing), None
/// for anything else.
/// # Safety
/// `rel` must be an open relation.
unsafe fn is_partitioned(rel: pg_sys::Relation) -> Option<bool> {
    match (*(*rel).rd_rel).relkind as u8 {
        k if k == pg_sys::RELKIND_PARTITIONED_TABLE => Some(true),
        k if k == pg_sys::RELKIND_RELATION => Some(false),
        _ => None,
    }
}

/// # Safety
/// `rel` must be an open relation.
unsafe fn has_outbox_columns(rel: pg_sys::Relation) -> bool {
    let desc = (*rel).rd_att;
    let n = (*desc).natts as usize;
    if n != COLUMNS.len() && n != COLUMNS_0_1_0 {
        return false;
    }
    let attrs = crate::pgcompat::attributes(desc);
    attrs.iter().zip(COLUMNS).all(|(a, c)| {
        !a.attisdropped && CStr::from_ptr(a.attname.data.as_ptr()).to_bytes() == c.as_bytes()
    })
}

/// Is `leaf` generation `k`'s partition of `parent`, with the parent's
/// columns and types, attribute for attribute (the row is formed from the
/// outbox's column list)? Checked when a generation's partition is first
/// opened by a backend; later opens check only that it is still a
/// partition of that name (see open_leaf).
/// # Safety
/// `parent` and `leaf` must be open relations.
unsafe fn is_partition(parent: pg_sys::Relation, leaf: pg_sys::Relation, k: i64) -> bool {
    let name = CStr::from_ptr((*(*leaf).rd_rel).relname.data.as_ptr());
    if name.to_bytes() != format!("event_log_p{k}").as_bytes()
        || !(*(*leaf).rd_rel).relispartition
        || (*(*leaf).rd_rel).relkind != pg_sys::RELKIND_RELATION as std::ffi::c_char
        || crate::pgcompat::partition_parent((*leaf).rd_id) != (*parent).rd_id
        || !has_outbox_columns(leaf)
    {
        return false;
    }
    let n = (*(*parent).rd_att).natts as usize;
    if (*(*leaf).rd_att).natts as usize != n {
        return false;
    }
    let ours = crate::pgcompat::attributes((*parent).rd_att);
    let theirs = crate::pgcompat::attributes((*leaf).rd_att);
    ours.iter()
        .zip(theirs)
        .all(|(a, b)| a.atttypid == b.atttypid && a.attlen == b.attlen && a.attbyval == b.attbyval)
}

/// Open generation `k`'s partition of the outbox, RowExclusiveLock.
/// # Safety
/// Inside a transaction; `parent` is the open webhook.event_log.
unsafe fn open_leaf(parent: pg_sys::Relation, k: i64) -> pg_sys::Relation {
    let name = std::ffi::CString::new(format!("event_log_p{k}")).unwrap_or_default();
    if let Some((cached_k, oid)) = LEAF.with(|l| l.get()) {
        if cached_k == k {
            let leaf = pg_sys::try_table_open(oid, pg_sys::RowExclusiveLock as i32);
            if !leaf.is_null() {
                // Cheap on every row: the full check (a pg_inherits lookup)
                // ran when this backend first opened it; a detach, drop or
                // rename since would show here.
                let r = (*leaf).rd_rel;
                if (*r).relispartition
                    && CStr::from_ptr((*r).relname.data.as_ptr()) == name.as_c_str()
                    && has_outbox_columns(leaf)
                {
                    return leaf;
                }
                pg_sys::table_close(leaf, pg_sys::RowExclusiveLock as i32);
            }
        }
    }
    let oid = pg_sys::get_relname_relid(name.as_ptr(), (*(*parent).rd_rel).relnamespace);
    let leaf = if oid == pg_sys::InvalidOid {
        std::ptr::null_mut()
    } else {
        pg_sys::try_table_open(oid, pg_sys::RowExclusiveLock as i32)
    };
    if leaf.is_null() || !is_partition(parent, leaf, k) {
        pgrx::ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("the outbox has no partition for generation {k} (webhook.event_log_p{k})"),
            "webhook.maintain() creates each generation's partitions before ids reach it; \
             run SELECT webhook.maintain(); or check that webhook.event_id_seq was not moved by hand."
        );
    }
    LEAF.with(|l| l.set(Some((k, oid))));
    leaf
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
        let leaf = if is_partitioned(rel) == Some(true) {
            open_leaf(rel, generation_of(id))
        } else {
            pg_sys::table_open((*rel).rd_id, pg_sys::RowExclusiveLock as i32)
        };
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
            event
                .traceparent
                .as_deref()
                .map(|t| text_datum(t))
                .unwrap_or(pg_sys::Datum::from(0usize)),
        ];
        let mut nulls = [
            false,
            false,
            false,
            false,
            event.ordering_key.is_none(),
            true,
            false,
            event.traceparent.is_none(),
        ];
        // heap_form_tuple reads as many as the relation has: 0.1.0's
        // outbox has no traceparent.
        let tuple =
            pg_sys::heap_form_tuple((*leaf).rd_att, values.as_mut_ptr(), nulls.as_mut_ptr());
        // The catalog-style insert maintains plain indexes only; one with an
        // expression, a predicate or an exclusion constraint would be read
        // past its end. Refused here (an ERROR, never a crash) as well as
        // when it is created (webhook._guard_outbox_index). The row goes
        // straight to its generation's partition, which is_partition()
        // checked has the parent's layout; the id is within its bounds by
        // construction (generation_of).
        let indexes = pg_sys::CatalogOpenIndexes(leaf);
        if let Err(e) = check_indexes(indexes) {
            pg_sys::CatalogCloseIndexes(indexes);
            e.raise();
        }
        pg_sys::CatalogTupleInsertWithInfo(leaf, tuple, indexes);
        pg_sys::CatalogCloseIndexes(indexes);
        pg_sys::heap_freetuple(tuple);
        pg_sys::table_close(leaf, pg_sys::NoLock as i32);
        pg_sys::table_close(rel, pg_sys::NoLock as i32);
    }
}

/// Every index of the outbox must be one `CatalogTupleInsertWithInfo` can
/// maintain: plain columns, no predicate, no exclusion constraint.
///
/// # Safety
/// `indexes` must come from `CatalogOpenIndexes` and not be closed yet.
unsafe fn check_indexes(indexes: pg_sys::CatalogIndexState) -> Result<(), WebhookError> {
    let n = (*indexes).ri_NumIndices.max(0) as usize;
    if n == 0 {
        return Ok(());
    }
    let infos = std::slice::from_raw_parts((*indexes).ri_IndexRelationInfo, n);
    let rels = std::slice::from_raw_parts((*indexes).ri_IndexRelationDescs, n);
    for (info, rel) in infos.iter().zip(rels) {
        let what = if !(**info).ii_Expressions.is_null() {
            "an expression"
        } else if !(**info).ii_Predicate.is_null() {
            "a predicate (partial index)"
        } else if !(**info).ii_ExclusionOps.is_null() {
            "an exclusion constraint"
        } else {
            continue;
        };
        // A partition's index is named after the index made on the
        // outbox itself, the one the user wrote.
        let named = if (*(**rel).rd_rel).relispartition {
            pg_sys::get_rel_name(crate::pgcompat::partition_parent((**rel).rd_id))
        } else {
            std::ptr::null_mut()
        };
        let index = if named.is_null() {
            CStr::from_ptr((*(**rel).rd_rel).relname.data.as_ptr())
        } else {
            CStr::from_ptr(named)
        }
        .to_string_lossy()
        .into_owned();
        return Err(WebhookError::OutboxIndex { index, what });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{
        event_type_ok, event_type_reserved, ordering_key, without_nul_escapes, ORDERING_KEY_MAX,
    };

    #[test]
    fn long_ordering_keys_are_digests_and_short_ones_stay() {
        let short = "é".repeat(ORDERING_KEY_MAX / 2);
        assert_eq!(ordering_key(short.clone()), short);
        let long = format!("{short}x");
        let a = ordering_key(long.clone());
        assert_eq!(a.len(), 7 + 64);
        assert!(a.starts_with("sha256:"));
        assert_eq!(a, ordering_key(long));
        assert_ne!(a, ordering_key(format!("{short}y")));
    }

    #[test]
    fn webhook_types_are_reserved() {
        for t in ["webhook", "webhook.test", "webhook.endpoint.failing"] {
            assert!(event_type_reserved(t), "{t}");
        }
        for t in ["webhooks.x", "shop.webhook", "webhook_x.insert"] {
            assert!(!event_type_reserved(t), "{t}");
        }
    }

    #[test]
    fn nul_escapes_become_replacement_characters() {
        assert_eq!(
            without_nul_escapes(r#"{"a":"x\u0000y\u0000","b":"\\u0000","c":"\"\u0000"}"#),
            r#"{"a":"x\ufffdy\ufffd","b":"\\u0000","c":"\"\ufffd"}"#
        );
        assert_eq!(without_nul_escapes("{\"é\":\"\\é\"}"), "{\"é\":\"\\é\"}");
        assert_eq!(without_nul_escapes("\\"), "\\");
    }

    #[test]
    fn event_types() {
        for ok in [
            "orders.insert",
            "a",
            "shop-1.orders_2.insert",
            "webhook.test",
        ] {
            assert!(event_type_ok(ok), "{ok}");
        }
        let long = "a".repeat(201);
        for bad in [
            "",
            ".",
            "a.",
            ".a",
            "a..b",
            "a b",
            "any \"weird\" type!",
            "é.x",
            "a.*",
            long.as_str(),
        ] {
            assert!(!event_type_ok(bad), "{bad}");
        }
    }
}
