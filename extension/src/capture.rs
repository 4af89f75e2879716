//! Capture: an AFTER ROW trigger turns each row change into one event and
//! writes it straight into the outbox (a heap insert, no SPI and no executor:
//! see outbox.rs), so a 100,000-row COPY costs 100,000 cheap inserts rather
//! than 100,000 SPI round trips. docs/bench/history.md compares this with the
//! buffered, statement-level design it replaced.
//!
//! Trigger arguments, written by `webhook.track()`:
//!   0: event type (`orders.insert`)
//!   1: empty (0.1.0 wrote the primary key's attribute numbers here; they
//!      are still checked as such, but the ordering key is the tracked
//!      table's primary key as it is now, so that it follows a migration
//!      that changes it)
//!   2: payload attribute numbers, comma separated, empty for all columns;
//!      an update is captured only if one of them changed
//!   3: the scope of the ordering keys: `<scope>:<primary key>`, so that
//!      rows of different tables never share a queue (0.1.0's triggers
//!      have no such argument: their scope is the table's name now)
//!   4: `skip_unchanged`, for an update trigger of every column: an update
//!      is captured only if some column changed (absent: every update)
//!
//! Nothing here is named in a WHEN clause but the capture's condition, so
//! that the triggers depend on no column but those the condition uses: a
//! migration may retype or rename any other column. The DDL that would
//! drop a capture or a column it sends is refused by capture.sql's event
//! triggers.

use std::cell::Cell;
use std::ffi::CStr;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error::WebhookError;
use crate::payload;
use crate::{outbox, pgcompat, wake};

/// One captured event, ready for the outbox.
pub struct Event {
    pub event_type: String,
    pub body: String,
    pub ordering_key: Option<String>,
    pub created_at: i64,
    /// The session's `webhook.traceparent`, if valid (guc.rs).
    pub traceparent: Option<String>,
}

thread_local! {
    /// This transaction wrote at least one event (decides the NOTIFY).
    static WROTE: Cell<bool> = const { Cell::new(false) };
}

pub fn mark_written() {
    WROTE.with(|w| w.set(true));
}

thread_local! {
    /// Capture is suspended in this transaction (webhook.suspend_capture()),
    /// since this subtransaction nesting level; None: it is not. Kept in
    /// the backend, not in a setting: a setting any writer could SET,
    /// and suspending capture is granted (trackers and managers only).
    static SUSPENDED: Cell<Option<i32>> = const { Cell::new(None) };
}

/// `webhook._suspend_capture(true)` suspends capture until the end of the
/// transaction (or of the savepoint it was called in, if that is rolled
/// back); `false` resumes it. Its callers (suspend_capture(),
/// resume_capture()) are granted; this one is executable by nobody else.
#[pg_extern(volatile, name = "_suspend_capture")]
fn suspend_capture(suspend: bool) {
    // SAFETY: reads the backend's transaction state.
    let level = unsafe { pg_sys::GetCurrentTransactionNestLevel() };
    SUSPENDED.with(|s| {
        s.set(match (suspend, s.get()) {
            (true, Some(since)) => Some(since.min(level)),
            (true, None) => Some(level),
            (false, _) => None,
        })
    });
}

/// A capture trigger's arguments, parsed and checked against its table
/// once (per trigger, until the next relcache invalidation), so that no
/// argument reaches a tuple unchecked: anyone allowed to use
/// `_capture_row` in CREATE TRIGGER could write them.
struct CaptureArgs {
    event_type: String,
    /// The tracked table: the trigger's own, or for a partition of a
    /// tracked partitioned table, that table (receivers subscribe to it,
    /// not to however it is partitioned). Its name is looked up through
    /// NAMES, which renames clear.
    tracked: pg_sys::Oid,
    /// Ordering key attribute numbers (the tracked table's primary key
    /// now): in range, not dropped.
    keys: Vec<i16>,
    /// Payload attribute numbers (None: every column), in range.
    only: Option<Vec<i16>>,
    /// The ordering keys' scope; None: the tracked table's name now.
    scope: Option<String>,
    /// Capture an update only if some column changed.
    skip_unchanged: bool,
}

/// Attribute numbers written by `track()`: comma separated, each one a
/// column of the table (1..=natts).
fn parse_attnums(s: &str, natts: usize) -> Result<Vec<i16>, String> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|p| match p.trim().parse::<i16>() {
            Ok(n) if n >= 1 && n as usize <= natts => Ok(n),
            Ok(n) => Err(format!("column number {n} is not a column of the table")),
            Err(_) => Err(format!("{p:?} is not a column number")),
        })
        .collect()
}

thread_local! {
    /// Checked arguments by trigger OID; cleared with NAMES (a trigger
    /// change or a column drop invalidates the table's relcache entry).
    static ARGS: std::cell::RefCell<std::collections::HashMap<pg_sys::Oid, std::rc::Rc<CaptureArgs>>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// The trigger's checked arguments, from the cache or parsed now.
///
/// # Safety
/// `trigger` and `rel` must be the firing trigger and its open relation.
unsafe fn capture_args(
    trigger: *const pg_sys::Trigger,
    rel: pg_sys::Relation,
) -> Result<std::rc::Rc<CaptureArgs>, WebhookError> {
    let tgoid = (*trigger).tgoid;
    if let Some(a) = ARGS.with(|m| m.borrow().get(&tgoid).cloned()) {
        return Ok(a);
    }
    ensure_callbacks();
    let invalid = |why: String| WebhookError::TriggerArguments {
        trigger: CStr::from_ptr((*trigger).tgname)
            .to_string_lossy()
            .into_owned(),
        table: name_of((*rel).rd_id),
        why,
    };
    let nargs = (*trigger).tgnargs.max(0) as usize;
    if !(3..=5).contains(&nargs) || (*trigger).tgargs.is_null() {
        return Err(invalid(format!("expected 3 to 5 arguments, got {nargs}")));
    }
    let raw = std::slice::from_raw_parts((*trigger).tgargs, nargs);
    let arg = |i: usize| CStr::from_ptr(raw[i]).to_string_lossy();
    let event_type = arg(0).into_owned();
    if !outbox::event_type_ok(&event_type) {
        return Err(invalid(format!("{event_type:?} is not a valid event type")));
    }
    // track() refuses the prefix too; this holds for a trigger made by hand.
    if outbox::event_type_reserved(&event_type) {
        return Err(invalid(format!(
            "event type {event_type:?} is reserved: webhook.* are pg_webhook's own"
        )));
    }
    // track() wrote the tracked table's column numbers; a partition's
    // trigger is a clone with the same arguments, and the partition's
    // columns may be numbered otherwise (attached with another order or
    // with dropped columns): map them by name.
    let tracked = tracked_table(trigger, rel);
    let natts_of = |relid: pg_sys::Oid| -> usize {
        let r = pg_sys::RelationIdGetRelation(relid);
        if r.is_null() {
            return 0;
        }
        let n = (*(*r).rd_att).natts.max(0) as usize;
        pg_sys::RelationClose(r);
        n
    };
    let map = |attnums: Vec<i16>| -> Vec<i16> {
        if tracked == (*rel).rd_id {
            return attnums;
        }
        attnums
            .into_iter()
            .filter_map(|a| {
                let name = pg_sys::get_attname(tracked, a, true);
                if name.is_null() {
                    return None;
                }
                let n = pg_sys::get_attnum((*rel).rd_id, name);
                (n > 0).then_some(n)
            })
            .collect()
    };
    let tupdesc = (*rel).rd_att;
    let rel_natts = (*tupdesc).natts.max(0) as usize;
    let natts = if tracked == (*rel).rd_id {
        rel_natts
    } else {
        natts_of(tracked)
    };
    let attrs = pgcompat::attributes(tupdesc);
    parse_attnums(&arg(1), natts).map_err(invalid)?;
    let keys = map(primary_key(tracked))
        .into_iter()
        .filter(|&n| payload::live_attribute(attrs, n).is_some())
        .collect();
    let only = match arg(2).as_ref() {
        "" => None,
        cols => Some(map(parse_attnums(cols, natts).map_err(invalid)?)),
    };
    let scope = match nargs {
        4.. => Some(outbox::check_key_scope(&arg(3)).map_err(invalid)?),
        _ => None,
    };
    let skip_unchanged = match nargs {
        5 if arg(4) == "skip_unchanged" => true,
        5 => return Err(invalid(format!("{:?} is not an option", arg(4)))),
        _ => false,
    };
    let args = std::rc::Rc::new(CaptureArgs {
        event_type,
        tracked,
        keys,
        only,
        scope,
        skip_unchanged,
    });
    ARGS.with(|m| m.borrow_mut().insert(tgoid, args.clone()));
    Ok(args)
}

/// The key column numbers of `relid`'s primary key (deferrable or not),
/// empty without one. Read once per trigger and relcache invalidation
/// (ARGS): adding or dropping a constraint invalidates the table.
///
/// # Safety
/// Inside a transaction.
unsafe fn primary_key(relid: pg_sys::Oid) -> Vec<i16> {
    let rel = pg_sys::RelationIdGetRelation(relid);
    if rel.is_null() {
        return Vec::new();
    }
    let list = pg_sys::RelationGetIndexList(rel);
    pg_sys::RelationClose(rel);
    let mut keys = Vec::new();
    if !list.is_null() {
        let n = (*list).length.max(0) as usize;
        for i in 0..n {
            let index = pg_sys::RelationIdGetRelation((*(*list).elements.add(i)).oid_value);
            if index.is_null() {
                continue;
            }
            let form = (*index).rd_index;
            if !form.is_null() && (*form).indisprimary {
                let nkeys = (*form).indnkeyatts.max(0) as usize;
                keys = (*form).indkey.values.as_slice(nkeys).to_vec();
            }
            pg_sys::RelationClose(index);
            if !keys.is_empty() {
                break;
            }
        }
        pg_sys::list_free(list);
    }
    // An expression column (0) cannot be in a primary key; never read one.
    keys.retain(|&a| a > 0);
    keys
}

/// Whether an update changed any of the columns `cols`: a NULL on one side
/// only, or values that the column type's default btree equality (in the
/// column's collation) says differ; types without one of their own (json,
/// arrays, enums, ranges, varchar through text's) compare their text forms.
/// The portable edition's `_columns_changed()` applies the same rule.
///
/// # Safety
/// `old` and `new` must be tuples of `tupdesc`.
unsafe fn changed(
    old: *mut pg_sys::HeapTupleData,
    new: *mut pg_sys::HeapTupleData,
    tupdesc: pg_sys::TupleDesc,
    cols: &[i16],
) -> bool {
    let attrs = pgcompat::attributes(tupdesc);
    for &attnum in cols {
        let Some(att) = payload::live_attribute(attrs, attnum) else {
            continue;
        };
        let (mut old_null, mut new_null) = (false, false);
        let a = pg_sys::heap_getattr(old, attnum as i32, tupdesc, &mut old_null);
        let b = pg_sys::heap_getattr(new, attnum as i32, tupdesc, &mut new_null);
        if old_null != new_null {
            return true;
        }
        if !old_null && !values_equal(a, b, att) {
            return true;
        }
    }
    false
}

/// # Safety
/// `a` and `b` must be non-NULL values of `att`'s type.
unsafe fn values_equal(
    a: pg_sys::Datum,
    b: pg_sys::Datum,
    att: &pg_sys::FormData_pg_attribute,
) -> bool {
    let typ = att.atttypid;
    let entry = pg_sys::lookup_type_cache(
        typ,
        (pg_sys::TYPECACHE_EQ_OPR_FINFO | pg_sys::TYPECACHE_BTREE_OPFAMILY) as i32,
    );
    if !entry.is_null()
        && (*entry).btree_opf != pg_sys::InvalidOid
        && ((*entry).btree_opintype == typ || (*entry).btree_opintype == pg_sys::getBaseType(typ))
        && (*entry).eq_opr_finfo.fn_oid != pg_sys::InvalidOid
    {
        let eq = pg_sys::FunctionCall2Coll(&mut (*entry).eq_opr_finfo, att.attcollation, a, b);
        return eq.value() != 0;
    }
    let mut output = pg_sys::InvalidOid;
    let mut varlena = false;
    pg_sys::getTypeOutputInfo(typ, &mut output, &mut varlena);
    let ta = pg_sys::OidOutputFunctionCall(output, a);
    let tb = pg_sys::OidOutputFunctionCall(output, b);
    let same = CStr::from_ptr(ta) == CStr::from_ptr(tb);
    pg_sys::pfree(ta.cast());
    pg_sys::pfree(tb.cast());
    same
}

/// The table `webhook.track()` installed `trigger` on: `rel` itself, or,
/// when `rel` is a partition and the trigger a clone of its parent's, the
/// highest ancestor that still has a trigger of that name (clones keep it).
///
/// # Safety
/// `trigger` and `rel` must be the firing trigger and its open relation.
unsafe fn tracked_table(trigger: *const pg_sys::Trigger, rel: pg_sys::Relation) -> pg_sys::Oid {
    let mut tracked = (*rel).rd_id;
    if !(*trigger).tgisclone {
        return tracked;
    }
    while pg_sys::get_rel_relispartition(tracked) {
        let parent = pgcompat::partition_parent(tracked);
        if pg_sys::get_trigger_oid(parent, (*trigger).tgname, true) == pg_sys::InvalidOid {
            break;
        }
        tracked = parent;
    }
    tracked
}

/// "schema.table" of a relation by OID, cached per backend (NAMES).
///
/// # Safety
/// Inside a transaction.
unsafe fn name_of(relid: pg_sys::Oid) -> String {
    if let Some(name) = NAMES.with(|n| n.borrow().get(&relid).cloned()) {
        return name;
    }
    ensure_callbacks();
    let relname = pg_sys::get_rel_name(relid);
    let nsp = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relid));
    let relname = if relname.is_null() {
        String::new()
    } else {
        CStr::from_ptr(relname).to_string_lossy().into_owned()
    };
    let name = if nsp.is_null() {
        relname
    } else {
        format!("{}.{}", CStr::from_ptr(nsp).to_string_lossy(), relname)
    };
    NAMES.with(|n| n.borrow_mut().insert(relid, name.clone()));
    name
}

fn op_name(event: u32) -> &'static str {
    match event & pg_sys::TRIGGER_EVENT_OPMASK {
        pg_sys::TRIGGER_EVENT_INSERT => "insert",
        pg_sys::TRIGGER_EVENT_UPDATE => "update",
        pg_sys::TRIGGER_EVENT_DELETE => "delete",
        _ => "truncate",
    }
}

thread_local! {
    /// relation OID → "schema.table"; cleared on any relcache or schema
    /// invalidation (renames are rare, lookups per row are not).
    static NAMES: std::cell::RefCell<std::collections::HashMap<pg_sys::Oid, String>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
    static NAMES_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// Relcache invalidation callback.
///
/// # Safety
/// Called by PostgreSQL's cache invalidation machinery only.
#[pg_guard]
unsafe extern "C-unwind" fn forget_names(_arg: pg_sys::Datum, _relid: pg_sys::Oid) {
    NAMES.with(|n| n.borrow_mut().clear());
    ARGS.with(|a| a.borrow_mut().clear());
}

/// Namespace syscache invalidation callback.
///
/// # Safety
/// Called by PostgreSQL's cache invalidation machinery only.
#[pg_guard]
unsafe extern "C-unwind" fn forget_names_schema(_arg: pg_sys::Datum, _cacheid: i32, _hash: u32) {
    NAMES.with(|n| n.borrow_mut().clear());
}

/// Registers the invalidation callbacks of NAMES and ARGS, once.
///
/// # Safety
/// Inside a backend.
unsafe fn ensure_callbacks() {
    if !NAMES_CALLBACK.with(|c| c.replace(true)) {
        pg_sys::CacheRegisterRelcacheCallback(Some(forget_names), pg_sys::Datum::from(0usize));
        // ALTER SCHEMA ... RENAME invalidates the namespace cache, not relcache.
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::NAMESPACEOID as i32,
            Some(forget_names_schema),
            pg_sys::Datum::from(0usize),
        );
    }
}

/// The AFTER ROW trigger installed by `webhook.track()`.
///
/// # Safety
/// Called by PostgreSQL's trigger manager with a valid `fcinfo`.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn webhook_capture_row(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    let ctx = (*fcinfo).context;
    if ctx.is_null() || (*ctx).type_ != pg_sys::NodeTag::T_TriggerData {
        pgrx::ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            "webhook capture functions can only be called as triggers",
            "Use webhook.track(table) to install them."
        );
    }
    let td = ctx as *mut pg_sys::TriggerData;
    let trigger = (*td).tg_trigger;
    let event = (*td).tg_event;
    if (event & pg_sys::TRIGGER_EVENT_ROW) == 0
        || (event & pg_sys::TRIGGER_EVENT_TIMINGMASK) != pg_sys::TRIGGER_EVENT_AFTER
    {
        pgrx::ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            "webhook capture must run as an AFTER ROW trigger",
            "Use webhook.track(table) to install it."
        );
    }
    if SUSPENDED.with(|s| s.get()).is_some() {
        return pg_sys::Datum::from(0usize);
    }
    let rel = (*td).tg_relation;
    let args = capture_args(trigger, rel).unwrap_or_else(|e| e.raise());
    let event_type = &args.event_type;
    let tupdesc = (*rel).rd_att;
    let op = op_name(event);
    let (new, old) = match op {
        "insert" => ((*td).tg_trigtuple, std::ptr::null_mut()),
        "update" => ((*td).tg_newtuple, (*td).tg_trigtuple),
        _ => (std::ptr::null_mut(), (*td).tg_trigtuple),
    };

    if op == "update" {
        let unchanged = match args.only.as_deref() {
            Some(cols) => !changed(old, new, tupdesc, cols),
            None if args.skip_unchanged => {
                let all: Vec<i16> = pgcompat::attributes(tupdesc)
                    .iter()
                    .filter(|a| !a.attisdropped)
                    .map(|a| a.attnum)
                    .collect();
                !changed(old, new, tupdesc, &all)
            }
            None => false,
        };
        if unchanged {
            return pg_sys::Datum::from(0usize);
        }
    }

    let created_at = payload::now_pg_usecs();
    // Until the key is written: no byte of the event may depend on the
    // writer's session settings.
    let fixed = payload::SessionIndependent::enter();
    let mut body = String::with_capacity(256);
    body.push_str("{\"type\":");
    payload::push_json_str(&mut body, event_type);
    body.push_str(",\"timestamp\":");
    payload::push_timestamp(&mut body, created_at, true);
    body.push_str(",\"data\":{\"table\":");
    payload::push_json_str(&mut body, &name_of(args.tracked));
    body.push_str(",\"op\":\"");
    body.push_str(op);
    body.push_str("\",\"new\":");
    if new.is_null() {
        body.push_str("null");
    } else {
        payload::push_row(&mut body, new, tupdesc, args.only.as_deref());
    }
    body.push_str(",\"old\":");
    if old.is_null() {
        body.push_str("null");
    } else {
        payload::push_row(&mut body, old, tupdesc, args.only.as_deref());
    }
    body.push_str("}}");

    // The application's statement fails, visibly, rather than an event
    // too large for receivers (or for the dispatcher's memory) being written.
    outbox::check_size(event_type, body.len()).unwrap_or_else(|e| e.raise());

    let key_tuple = if new.is_null() { old } else { new };
    let ordering_key = payload::key_text(key_tuple, tupdesc, &args.keys).map(|key| {
        let scope = match &args.scope {
            Some(scope) => std::borrow::Cow::Borrowed(scope.as_str()),
            None => std::borrow::Cow::Owned(name_of(args.tracked)),
        };
        outbox::scoped_key(&scope, key)
    });
    drop(fixed);
    outbox::insert(&Event {
        event_type: event_type.clone(),
        body,
        ordering_key,
        created_at,
        traceparent: crate::guc::traceparent(),
    });
    mark_written();
    pg_sys::Datum::from(0usize)
}

#[no_mangle]
pub extern "C" fn pg_finfo_webhook_capture_row() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

// ---- transaction hooks -----------------------------------------------------

/// Transaction callback: NOTIFY an idle dispatcher at pre-commit.
///
/// # Safety
/// Registered with RegisterXactCallback; called by PostgreSQL only.
#[pg_guard]
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    match event {
        // Pre-commit, not in the trigger: reading the flag as late as possible
        // narrows the window in which a dispatcher that has just gone idle
        // misses this commit (its poll timer covers what remains).
        pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT
            if WROTE.with(|w| w.get()) && crate::guc::notify_enabled() && wake::take_wakeup() =>
        {
            wake::notify();
        }
        pg_sys::XactEvent::XACT_EVENT_COMMIT
        | pg_sys::XactEvent::XACT_EVENT_ABORT
        | pg_sys::XactEvent::XACT_EVENT_PREPARE
        | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT => {
            WROTE.with(|w| w.set(false));
            SUSPENDED.with(|s| s.set(None));
        }
        _ => {}
    }
}

/// Subtransaction callback: a suspension made inside a savepoint that is
/// rolled back is undone with it, as the portable edition's (a row).
///
/// # Safety
/// Registered with RegisterSubXactCallback; called by PostgreSQL only.
#[pg_guard]
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    _mysubid: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        let level = pg_sys::GetCurrentTransactionNestLevel();
        SUSPENDED.with(|s| {
            if s.get().is_some_and(|since| since >= level) {
                s.set(None);
            }
        });
    }
}

pub fn register_callbacks() {
    // SAFETY: called once from _PG_init; the callbacks live for the process.
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact), std::ptr::null_mut());
    }
}
