//! The outbox: `webhook.event_log`, written in the capturing transaction.
//!
//! Each event row carries the 64-bit id of its top-level transaction. Routing
//! (`webhook.route()`, in SQL) picks up events by transaction visibility
//! between two snapshots rather than by id, because ids are assigned at insert
//! and a lower id can commit after a higher one.

use std::cell::Cell;
use std::ffi::CString;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::capture::Pending;

const INSERT_SQL: &str = "INSERT INTO webhook.event_log (txid, event_type, body, ordering_key, created_at) \
     SELECT $1, u.t, u.b, u.k, u.c FROM unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[]) AS u(t, b, k, c)";

thread_local! {
    /// The prepared insert, kept for the life of the backend. PostgreSQL's
    /// plan cache re-plans it if the table is dropped and recreated.
    static PLAN: Cell<pg_sys::SPIPlanPtr> = const { Cell::new(std::ptr::null_mut()) };
}

/// Top-level transaction id as a plain bigint (xid8 without the epoch games).
pub fn current_txid() -> i64 {
    // SAFETY: we are inside a transaction; this assigns an xid if none yet.
    unsafe { pg_sys::GetTopFullTransactionId().value as i64 }
}

unsafe fn text_array(
    items: impl ExactSizeIterator<Item = Option<String>>,
) -> (pg_sys::Datum, bool) {
    let n = items.len();
    let mut datums: Vec<pg_sys::Datum> = Vec::with_capacity(n);
    let mut nulls: Vec<bool> = Vec::with_capacity(n);
    for item in items {
        match item {
            Some(s) => {
                datums.push(pg_sys::Datum::from(pg_sys::cstring_to_text_with_len(
                    s.as_ptr().cast(),
                    s.len() as i32,
                )));
                nulls.push(false);
            }
            None => {
                datums.push(pg_sys::Datum::from(0usize));
                nulls.push(true);
            }
        }
    }
    let mut dims = [n as i32];
    let mut lbs = [1i32];
    let arr = pg_sys::construct_md_array(
        datums.as_mut_ptr(),
        nulls.as_mut_ptr(),
        1,
        dims.as_mut_ptr(),
        lbs.as_mut_ptr(),
        pg_sys::TEXTOID,
        -1,
        false,
        pg_sys::TYPALIGN_INT as std::ffi::c_char,
    );
    (pg_sys::Datum::from(arr), false)
}

unsafe fn timestamptz_array(items: &[i64]) -> pg_sys::Datum {
    let mut datums: Vec<pg_sys::Datum> = items.iter().map(|&t| pg_sys::Datum::from(t)).collect();
    let arr = pg_sys::construct_array(
        datums.as_mut_ptr(),
        datums.len() as i32,
        pg_sys::TIMESTAMPTZOID,
        8,
        true,
        pg_sys::TYPALIGN_DOUBLE as std::ffi::c_char,
    );
    pg_sys::Datum::from(arr)
}

unsafe fn plan() -> pg_sys::SPIPlanPtr {
    let existing = PLAN.with(|p| p.get());
    if !existing.is_null() {
        return existing;
    }
    let sql = CString::new(INSERT_SQL).unwrap_or_default();
    let mut types = [
        pg_sys::INT8OID,
        pg_sys::TEXTARRAYOID,
        pg_sys::TEXTARRAYOID,
        pg_sys::TEXTARRAYOID,
        pg_sys::TIMESTAMPTZARRAYOID,
    ];
    let plan = pg_sys::SPI_prepare(sql.as_ptr(), types.len() as i32, types.as_mut_ptr());
    if plan.is_null() {
        let code = pg_sys::SPI_result;
        pgrx::ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("pg_webhook: preparing the outbox insert failed (SPI code {code})"),
            "Check that the webhook schema is intact; ALTER EXTENSION pg_webhook UPDATE or reinstall it."
        );
    }
    pg_sys::SPI_keepplan(plan);
    PLAN.with(|p| p.set(plan));
    plan
}

/// Insert `events` into the outbox with one SPI call.
pub fn insert(events: &[Pending]) {
    // SAFETY: SPI is used in a connect/finish pair within this transaction;
    // errors raised by PostgreSQL unwind through pg_guard'ed callers.
    unsafe {
        if pg_sys::SPI_connect() != pg_sys::SPI_OK_CONNECT as i32 {
            pgrx::ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                "pg_webhook: SPI_connect failed",
                "This is a bug in pg_webhook; please report it."
            );
        }
        // Capture runs as whoever wrote the row; the outbox is not theirs
        // to write. Like a SECURITY DEFINER function, run this one fixed
        // statement as the bootstrap superuser (the error path restores the
        // user id as part of transaction abort).
        let mut saved_user = pg_sys::InvalidOid;
        let mut saved_ctx = 0;
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_ctx);
        pg_sys::SetUserIdAndSecContext(
            pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID),
            saved_ctx | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
        );
        let plan = plan();
        let (types, _) = text_array(events.iter().map(|e| Some(e.event_type.clone())));
        let (bodies, _) = text_array(events.iter().map(|e| Some(e.body.clone())));
        let (keys, _) = text_array(events.iter().map(|e| e.ordering_key.clone()));
        let times: Vec<i64> = events.iter().map(|e| e.created_at).collect();
        let mut values = [
            pg_sys::Datum::from(current_txid()),
            types,
            bodies,
            keys,
            timestamptz_array(&times),
        ];
        let nulls = c"     ";
        let rc = pg_sys::SPI_execute_plan(plan, values.as_mut_ptr(), nulls.as_ptr(), false, 0);
        pg_sys::SetUserIdAndSecContext(saved_user, saved_ctx);
        if rc != pg_sys::SPI_OK_INSERT as i32 {
            pgrx::ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                format!(
                    "pg_webhook: writing {} event(s) to the outbox failed (SPI code {rc})",
                    events.len()
                ),
                "Check that the webhook schema is intact."
            );
        }
        pg_sys::SPI_finish();
    }
}
