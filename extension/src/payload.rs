//! Row → JSON, written straight from the tuple's datums.
//!
//! Why not `to_jsonb(NEW)`: it needs a round trip through the jsonb type (parse
//! and re-serialize), renders bytea as `\x` hex and cannot project columns. Here
//! every value is written once, in its faithful JSON form:
//! numbers as the exact digits PostgreSQL prints (numeric keeps every digit),
//! `NaN`/`Infinity` as strings, timestamps as RFC 3339 (timestamptz in UTC),
//! bytea as base64, money as a number of hundredths, ranges and multiranges
//! as their bounds, arrays and composites nested, json/jsonb embedded, and
//! every other type as the string its output function produces.
//!
//! Nothing here may depend on the writing session: the same row is the same
//! bytes whether a Django worker, a psql session in another time zone or a
//! cron job with `IntervalStyle = sql_standard` wrote it. The forms above
//! are computed from the datums; the output functions run under
//! [`SessionIndependent`], which fixes the settings they read.

use std::ffi::CStr;
use std::fmt::Write;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use pgrx::pg_guard;
use pgrx::pg_sys;

use crate::pgcompat;

/// Append `s` as a JSON string literal.
pub fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            0..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{:04x}", b);
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

// ---- dates and times -------------------------------------------------------
// PostgreSQL counts days and microseconds from 2000-01-01.

const PG_EPOCH_DAYS_FROM_UNIX: i64 = 10_957;
const USECS_PER_DAY: i64 = 86_400_000_000;

/// (year, month, day) from days since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn push_date(out: &mut String, unix_days: i64) {
    let (y, m, d) = civil_from_days(unix_days);
    if y < 0 {
        // ISO 8601 astronomical years for BC dates: 1 BC is year 0000,
        // written without a sign ("-0000" is no year: parsers refuse it),
        // 2 BC is -0001, 44 BC is -0043.
        let _ = write!(out, "-{:04}-{:02}-{:02}", -y, m, d);
    } else {
        let _ = write!(out, "{:04}-{:02}-{:02}", y, m, d);
    }
}

fn push_time_of_day(out: &mut String, usecs: i64) {
    let secs = usecs / 1_000_000;
    let frac = usecs % 1_000_000;
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    );
    // Always six digits, zeros kept: one fixed width that every ISO 8601
    // reader takes (Python's fromisoformat before 3.11 reads 3 or 6
    // digits only) and that sorts as text in time order (years 0 to 9999).
    let _ = write!(out, ".{frac:06}");
}

/// RFC 3339 text of a PostgreSQL timestamp (µs since 2000-01-01), `Z` when `utc`.
pub fn push_timestamp(out: &mut String, pg_usecs: i64, utc: bool) {
    if pg_usecs == i64::MAX {
        out.push_str("\"infinity\"");
        return;
    }
    if pg_usecs == i64::MIN {
        out.push_str("\"-infinity\"");
        return;
    }
    let days = pg_usecs.div_euclid(USECS_PER_DAY);
    let tod = pg_usecs.rem_euclid(USECS_PER_DAY);
    out.push('"');
    push_date(out, days + PG_EPOCH_DAYS_FROM_UNIX);
    out.push('T');
    push_time_of_day(out, tod);
    if utc {
        out.push('Z');
    }
    out.push('"');
}

/// Current wall-clock time as PostgreSQL microseconds since 2000-01-01.
pub fn now_pg_usecs() -> i64 {
    // SAFETY: GetCurrentTimestamp only reads the system clock.
    unsafe { pg_sys::GetCurrentTimestamp() }
}

// ---- datums ----------------------------------------------------------------

/// How values of one type are written; looked up once per type per backend
/// (the syscache lookups and fmgr setup otherwise dominate capture cost).
#[derive(Clone, Copy)]
enum Kind {
    Bool,
    Int2,
    Int4,
    Int8,
    /// float4/float8/numeric: output function text, a JSON number unless NaN/Infinity.
    Number(*mut pg_sys::FmgrInfo),
    /// json/jsonb: output function text, embedded as is.
    Json(*mut pg_sys::FmgrInfo),
    /// text, varchar: the bytes themselves.
    Text,
    Bytea,
    TimestampTz,
    Timestamp,
    Date,
    Time,
    TimeTz,
    Money,
    Range,
    Multirange,
    Array(pg_sys::Oid),
    Composite,
    /// reg* types: names, qualified as search_path says; written under
    /// [`with_catalog_search_path`].
    Reg(*mut pg_sys::FmgrInfo),
    /// Anything else: the output function's text as a JSON string.
    Other(*mut pg_sys::FmgrInfo),
}

thread_local! {
    static KINDS: std::cell::RefCell<std::collections::HashMap<pg_sys::Oid, Kind>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
    /// Output functions of ordering key columns, by type.
    static OUTPUTS: std::cell::RefCell<std::collections::HashMap<pg_sys::Oid, *mut pg_sys::FmgrInfo>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
    static CALLBACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// # Safety
/// Called by PostgreSQL's cache invalidation machinery only.
#[pg_guard]
unsafe extern "C-unwind" fn forget_types(_arg: pg_sys::Datum, _cacheid: i32, _hash: u32) {
    // A type changed (ALTER TYPE, a dropped and recreated domain...): start
    // over. The FmgrInfos stay allocated in TopMemoryContext; such changes
    // are rare enough that the few bytes do not matter.
    KINDS.with(|k| k.borrow_mut().clear());
    OUTPUTS.with(|o| o.borrow_mut().clear());
}

/// # Safety
/// Inside a transaction (catalog lookup); the FmgrInfo lives in
/// TopMemoryContext for the life of the backend.
unsafe fn output_fn(typid: pg_sys::Oid) -> *mut pg_sys::FmgrInfo {
    let mut func = pg_sys::InvalidOid;
    let mut varlena = false;
    pg_sys::getTypeOutputInfo(typid, &mut func, &mut varlena);
    let finfo = pg_sys::MemoryContextAllocZero(
        pg_sys::TopMemoryContext,
        std::mem::size_of::<pg_sys::FmgrInfo>(),
    ) as *mut pg_sys::FmgrInfo;
    pg_sys::fmgr_info_cxt(func, finfo, pg_sys::TopMemoryContext);
    finfo
}

/// # Safety
/// Inside a transaction (catalog lookups on a cache miss).
unsafe fn kind(typid: pg_sys::Oid) -> Kind {
    if let Some(k) = KINDS.with(|k| k.borrow().get(&typid).copied()) {
        return k;
    }
    if !CALLBACK.with(|c| c.replace(true)) {
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::TYPEOID as i32,
            Some(forget_types),
            pg_sys::Datum::from(0usize),
        );
    }
    let base = pg_sys::getBaseType(typid);
    let k = match base {
        pg_sys::BOOLOID => Kind::Bool,
        pg_sys::INT2OID => Kind::Int2,
        pg_sys::INT4OID => Kind::Int4,
        pg_sys::INT8OID => Kind::Int8,
        pg_sys::FLOAT4OID | pg_sys::FLOAT8OID | pg_sys::NUMERICOID => Kind::Number(output_fn(base)),
        pg_sys::JSONOID | pg_sys::JSONBOID => Kind::Json(output_fn(base)),
        pg_sys::TEXTOID | pg_sys::VARCHAROID => Kind::Text,
        pg_sys::BYTEAOID => Kind::Bytea,
        pg_sys::TIMESTAMPTZOID => Kind::TimestampTz,
        pg_sys::TIMESTAMPOID => Kind::Timestamp,
        pg_sys::DATEOID => Kind::Date,
        pg_sys::TIMEOID => Kind::Time,
        pg_sys::TIMETZOID => Kind::TimeTz,
        pg_sys::MONEYOID => Kind::Money,
        pg_sys::REGPROCOID
        | pg_sys::REGPROCEDUREOID
        | pg_sys::REGOPEROID
        | pg_sys::REGOPERATOROID
        | pg_sys::REGCLASSOID
        | pg_sys::REGTYPEOID
        | pg_sys::REGCOLLATIONOID
        | pg_sys::REGCONFIGOID
        | pg_sys::REGDICTIONARYOID
        | pg_sys::REGNAMESPACEOID
        | pg_sys::REGROLEOID => Kind::Reg(output_fn(base)),
        _ => {
            let elem = pg_sys::get_element_type(base);
            let typtype = pg_sys::get_typtype(base) as u8;
            if elem != pg_sys::InvalidOid {
                Kind::Array(elem)
            } else if typtype == b'c' || base == pg_sys::RECORDOID {
                Kind::Composite
            } else if typtype == b'r' {
                Kind::Range
            } else if typtype == b'm' {
                Kind::Multirange
            } else {
                Kind::Other(output_fn(base))
            }
        }
    };
    KINDS.with(|m| m.borrow_mut().insert(typid, k));
    k
}

/// Integers without the formatting machinery (this runs for every key column).
fn push_int(out: &mut String, v: i64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = v.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push('-');
    }
    // The buffer holds ASCII digits only.
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or_default());
}

/// # Safety
/// `finfo` must be the output function of `value`'s type.
unsafe fn call_output(finfo: *mut pg_sys::FmgrInfo, value: pg_sys::Datum) -> String {
    let cstr = pg_sys::OutputFunctionCall(finfo, value);
    let s = CStr::from_ptr(cstr).to_string_lossy().into_owned();
    pg_sys::pfree(cstr.cast());
    s
}

/// The bytes of a non-null varlena datum (text, bytea), detoasted.
///
/// # Safety
/// `value` must be a valid, non-null varlena datum; the slice lives as long
/// as the current memory context.
unsafe fn bytes_of<'a>(value: pg_sys::Datum) -> &'a [u8] {
    let v = pg_sys::pg_detoast_datum_packed(value.cast_mut_ptr());
    pgrx::varlena::varlena_to_byte_slice(v)
}

/// The string of a non-null text datum. The server encoding is UTF-8 in
/// every cluster we support writing JSON from; lossy conversion only guards
/// against bugs.
///
/// # Safety
/// As for [`bytes_of`].
unsafe fn text_of<'a>(value: pg_sys::Datum) -> std::borrow::Cow<'a, str> {
    String::from_utf8_lossy(bytes_of(value))
}

/// Append the JSON form of a non-null datum of type `typid`.
///
/// # Safety
/// `value` must be a valid, non-null datum of type `typid`, and the call must
/// happen inside a PostgreSQL backend with a memory context that may be reset
/// afterwards (output functions palloc).
pub unsafe fn push_datum(out: &mut String, value: pg_sys::Datum, typid: pg_sys::Oid) {
    match kind(typid) {
        Kind::Bool => out.push_str(if value.value() != 0 { "true" } else { "false" }),
        Kind::Int2 => push_int(out, value.value() as i16 as i64),
        Kind::Int4 => push_int(out, value.value() as i32 as i64),
        Kind::Int8 => push_int(out, value.value() as i64),
        Kind::Number(f) => {
            let text = call_output(f, value);
            // NaN and ±Infinity have no JSON number form.
            if text
                .bytes()
                .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E')
            {
                push_json_str(out, &text);
            } else {
                out.push_str(&text);
            }
        }
        Kind::Json(f) => out.push_str(&call_output(f, value)),
        Kind::Text => push_json_str(out, &text_of(value)),
        Kind::Bytea => {
            out.push('"');
            B64.encode_string(bytes_of(value), out);
            out.push('"');
        }
        Kind::TimestampTz => push_timestamp(out, value.value() as i64, true),
        Kind::Timestamp => push_timestamp(out, value.value() as i64, false),
        Kind::Date => {
            let days = value.value() as i32;
            if days == i32::MAX {
                out.push_str("\"infinity\"");
            } else if days == i32::MIN {
                out.push_str("\"-infinity\"");
            } else {
                out.push('"');
                push_date(out, days as i64 + PG_EPOCH_DAYS_FROM_UNIX);
                out.push('"');
            }
        }
        Kind::Time => {
            out.push('"');
            push_time_of_day(out, value.value() as i64);
            out.push('"');
        }
        Kind::TimeTz => {
            out.push('"');
            push_timetz(out, value);
            out.push('"');
        }
        Kind::Money => push_money(out, value.value() as i64),
        Kind::Range => push_range(out, value, pg_sys::getBaseType(typid)),
        Kind::Multirange => push_multirange(out, value, pg_sys::getBaseType(typid)),
        Kind::Array(elem) => push_array(out, value, elem),
        Kind::Composite => push_composite(out, value),
        Kind::Reg(f) => push_json_str(out, &with_catalog_search_path(|| call_output(f, value))),
        Kind::Other(f) => push_json_str(out, &call_output(f, value)),
    }
}

/// A timetz as `HH:MM:SS.ffffff+HH:MM` (`+HH:MM:SS` for an offset with
/// seconds): the time as a time column is written, the offset in full.
///
/// # Safety
/// `value` must be a valid, non-null timetz datum.
unsafe fn push_timetz(out: &mut String, value: pg_sys::Datum) {
    let t = value.cast_mut_ptr::<pg_sys::TimeTzADT>();
    push_time_of_day(out, (*t).time);
    push_utc_offset(out, (*t).zone);
}

/// `zone` counts seconds west of UTC, as PostgreSQL stores it.
fn push_utc_offset(out: &mut String, zone: i32) {
    let secs = zone.unsigned_abs();
    out.push(if zone <= 0 { '+' } else { '-' });
    let _ = write!(out, "{:02}:{:02}", secs / 3600, (secs / 60) % 60);
    if !secs.is_multiple_of(60) {
        let _ = write!(out, ":{:02}", secs % 60);
    }
}

/// money as a JSON number: its count of the currency's smallest unit, read
/// as hundredths, always two fraction digits (`-1234.50`). money's own
/// output follows `lc_monetary`, which every session may set; the stored
/// count does not, and no locale is consulted here (docs/capture.md).
fn push_money(out: &mut String, cents: i64) {
    let abs = cents.unsigned_abs();
    if cents < 0 {
        out.push('-');
    }
    let _ = write!(out, "{}.{:02}", abs / 100, abs % 100);
}

/// # Safety
/// `bound` must come from `range_deserialize` of a range of `typcache`.
unsafe fn push_bound(
    out: &mut String,
    bound: &pg_sys::RangeBound,
    typcache: *mut pg_sys::TypeCacheEntry,
) {
    if bound.infinite {
        out.push_str("null");
    } else {
        push_datum(out, bound.val, (*(*typcache).rngelemtype).type_id);
    }
}

/// A range as `{"lower": …, "upper": …, "lower_inc": …, "upper_inc": …}`,
/// each bound written as a value of the range's subtype (null when
/// unbounded), or `{"empty": true}`.
///
/// # Safety
/// `range` must be a detoasted range of the type `typcache` describes.
unsafe fn push_range_of(
    out: &mut String,
    range: *const pg_sys::RangeType,
    typcache: *mut pg_sys::TypeCacheEntry,
) {
    let mut lower: pg_sys::RangeBound = std::mem::zeroed();
    let mut upper: pg_sys::RangeBound = std::mem::zeroed();
    let mut empty = false;
    pg_sys::range_deserialize(typcache, range, &mut lower, &mut upper, &mut empty);
    if empty {
        out.push_str("{\"empty\":true}");
        return;
    }
    out.push_str("{\"lower\":");
    push_bound(out, &lower, typcache);
    out.push_str(",\"upper\":");
    push_bound(out, &upper, typcache);
    out.push_str(if lower.inclusive {
        ",\"lower_inc\":true"
    } else {
        ",\"lower_inc\":false"
    });
    out.push_str(if upper.inclusive {
        ",\"upper_inc\":true}"
    } else {
        ",\"upper_inc\":false}"
    });
}

/// # Safety
/// `value` must be a valid, non-null datum of the range type `base`.
unsafe fn push_range(out: &mut String, value: pg_sys::Datum, base: pg_sys::Oid) {
    let typcache = pg_sys::lookup_type_cache(base, pg_sys::TYPECACHE_RANGE_INFO as i32);
    let range = pg_sys::pg_detoast_datum(value.cast_mut_ptr()) as *const pg_sys::RangeType;
    push_range_of(out, range, typcache);
}

// multirangetypes.h, which pgrx does not bind (the same signature on every
// supported version); called through pg_guard_ffi_boundary only.
extern "C-unwind" {
    fn multirange_deserialize(
        rangetyp: *mut pg_sys::TypeCacheEntry,
        multirange: *const std::ffi::c_void,
        range_count: *mut i32,
        ranges: *mut *mut *mut pg_sys::RangeType,
    );
}

/// A multirange as the JSON array of its ranges, in order.
///
/// # Safety
/// `value` must be a valid, non-null datum of the multirange type `base`.
unsafe fn push_multirange(out: &mut String, value: pg_sys::Datum, base: pg_sys::Oid) {
    let typcache = pg_sys::lookup_type_cache(base, pg_sys::TYPECACHE_MULTIRANGE_INFO as i32);
    let range_typcache = (*typcache).rngtype;
    let mr = pg_sys::pg_detoast_datum(value.cast_mut_ptr()) as *const std::ffi::c_void;
    let mut count: i32 = 0;
    let mut ranges: *mut *mut pg_sys::RangeType = std::ptr::null_mut();
    // An error in it (out of memory) becomes a Rust panic, not a longjmp
    // over Rust frames.
    pg_sys::ffi::pg_guard_ffi_boundary(|| {
        multirange_deserialize(range_typcache, mr, &mut count, &mut ranges)
    });
    out.push('[');
    for i in 0..usize::try_from(count).unwrap_or(0) {
        if i > 0 {
            out.push(',');
        }
        push_range_of(out, *ranges.add(i), range_typcache);
    }
    out.push(']');
}

/// The settings output functions read, fixed while a row is written:
/// DateStyle ISO (MDY), IntervalStyle iso_8601, extra_float_digits 1
/// (the shortest text that reads back as the same float) and TimeZone
/// UTC; the session's are put back when this is dropped, on an error too
/// (pgrx unwinds through it). The portable edition's capture function
/// sets the same ones with its SET clauses.
pub struct SessionIndependent {
    date_style: i32,
    date_order: i32,
    interval_style: i32,
    extra_float_digits: i32,
    timezone: *mut pg_sys::pg_tz,
}

thread_local! {
    static UTC: std::cell::Cell<*mut pg_sys::pg_tz> = const { std::cell::Cell::new(std::ptr::null_mut()) };
}

impl SessionIndependent {
    /// # Safety
    /// In a backend, inside a transaction (the first call loads UTC's zone).
    pub unsafe fn enter() -> Self {
        let saved = SessionIndependent {
            date_style: pg_sys::DateStyle,
            date_order: pg_sys::DateOrder,
            interval_style: pg_sys::IntervalStyle,
            extra_float_digits: pg_sys::extra_float_digits,
            timezone: pg_sys::session_timezone,
        };
        pg_sys::DateStyle = pg_sys::USE_ISO_DATES as i32;
        pg_sys::DateOrder = pg_sys::DATEORDER_MDY as i32;
        pg_sys::IntervalStyle = pg_sys::INTSTYLE_ISO_8601 as i32;
        pg_sys::extra_float_digits = 1;
        let mut utc = UTC.with(|u| u.get());
        if utc.is_null() {
            // pg_tzset caches the zone for the life of the backend;
            // a fixed offset needs no time zone files at all.
            utc = pg_sys::pg_tzset(c"UTC".as_ptr());
            if utc.is_null() {
                utc = pg_sys::pg_tzset_offset(0);
            }
            UTC.with(|u| u.set(utc));
        }
        if !utc.is_null() {
            pg_sys::session_timezone = utc;
        }
        saved
    }
}

impl Drop for SessionIndependent {
    fn drop(&mut self) {
        // SAFETY: the backend's own globals, put back as they were.
        unsafe {
            pg_sys::DateStyle = self.date_style;
            pg_sys::DateOrder = self.date_order;
            pg_sys::IntervalStyle = self.interval_style;
            pg_sys::extra_float_digits = self.extra_float_digits;
            pg_sys::session_timezone = self.timezone;
        }
    }
}

/// Run `f` with `search_path = pg_catalog, pg_temp` and
/// `quote_all_identifiers = off`, as a function's SET clauses would (the
/// portable capture function has these): reg* values name objects
/// qualified unless in pg_catalog, whatever the writer's search_path.
/// Only reg* values pay for it.
///
/// # Safety
/// In a backend, inside a transaction.
unsafe fn with_catalog_search_path<T>(f: impl FnOnce() -> T) -> T {
    let level = pg_sys::NewGUCNestLevel();
    for (name, value) in [
        (c"search_path", c"pg_catalog, pg_temp"),
        (c"quote_all_identifiers", c"off"),
    ] {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
    }
    let v = f();
    // On an error the transaction's abort unwinds the nest level.
    pg_sys::AtEOXact_GUC(true, level);
    v
}

/// Append the text of `value` an ordering key is compared in: what
/// `value::text` gives under [`SessionIndependent`]'s settings, except for
/// the types written otherwise in the payload (timestamps, dates, times,
/// bytea, money), which are written as there: the same row must get the
/// same key from every session, or an ordered endpoint could deliver two
/// changes of it at once. Integer and text keys, the usual primary keys,
/// are written directly; other types through their output function,
/// looked up once per type.
///
/// # Safety
/// `value` must be a valid, non-null datum of type `typid`, inside a
/// transaction (catalog lookups on a cache miss).
unsafe fn push_output_text(out: &mut String, value: pg_sys::Datum, typid: pg_sys::Oid) {
    match kind(typid) {
        Kind::Int2 => push_int(out, value.value() as i16 as i64),
        Kind::Int4 => push_int(out, value.value() as i32 as i64),
        Kind::Int8 => push_int(out, value.value() as i64),
        Kind::Text => out.push_str(&text_of(value)),
        Kind::TimestampTz
        | Kind::Timestamp
        | Kind::Date
        | Kind::Time
        | Kind::TimeTz
        | Kind::Bytea
        | Kind::Money => {
            // The payload's form, plain ASCII; a string's quotes dropped.
            let mut json = String::new();
            push_datum(&mut json, value, typid);
            out.push_str(json.trim_matches('"'));
        }
        Kind::Reg(f) => out.push_str(&with_catalog_search_path(|| call_output(f, value))),
        _ => {
            let cached = OUTPUTS.with(|o| o.borrow().get(&typid).copied());
            let finfo = cached.unwrap_or_else(|| {
                let f = output_fn(typid);
                OUTPUTS.with(|o| o.borrow_mut().insert(typid, f));
                f
            });
            out.push_str(&call_output(finfo, value));
        }
    }
}

/// # Safety
/// `value` must be a valid array datum whose elements are of type `elem`.
unsafe fn push_array(out: &mut String, value: pg_sys::Datum, elem: pg_sys::Oid) {
    let arr = pg_sys::pg_detoast_datum(value.cast_mut_ptr()) as *mut pg_sys::ArrayType;
    let ndim = (*arr).ndim;
    if ndim <= 0 {
        out.push_str("[]");
        return;
    }
    // The dimensions follow the fixed ArrayType header (ARR_DIMS).
    let dims_ptr = (arr as *const u8).add(std::mem::size_of::<pg_sys::ArrayType>()) as *const i32;
    let dims: Vec<usize> = (0..ndim as usize)
        .map(|i| *dims_ptr.add(i) as usize)
        .collect();

    let mut len: i16 = 0;
    let mut byval = false;
    let mut align: std::ffi::c_char = 0;
    pg_sys::get_typlenbyvalalign(elem, &mut len, &mut byval, &mut align);
    let mut elems: *mut pg_sys::Datum = std::ptr::null_mut();
    let mut nulls: *mut bool = std::ptr::null_mut();
    let mut n: i32 = 0;
    pg_sys::deconstruct_array(
        arr,
        elem,
        len.into(),
        byval,
        align,
        &mut elems,
        &mut nulls,
        &mut n,
    );
    let mut idx = 0usize;
    push_array_dim(out, &dims, 0, elems, nulls, n as usize, &mut idx, elem);
}

#[allow(clippy::too_many_arguments)]
/// # Safety
/// `elems`/`nulls` must hold `n` entries from `deconstruct_array` of an
/// array with dimensions `dims`.
unsafe fn push_array_dim(
    out: &mut String,
    dims: &[usize],
    level: usize,
    elems: *mut pg_sys::Datum,
    nulls: *mut bool,
    n: usize,
    idx: &mut usize,
    elem: pg_sys::Oid,
) {
    out.push('[');
    for i in 0..dims[level] {
        if i > 0 {
            out.push(',');
        }
        if level + 1 < dims.len() {
            push_array_dim(out, dims, level + 1, elems, nulls, n, idx, elem);
        } else if *idx < n {
            if *nulls.add(*idx) {
                out.push_str("null");
            } else {
                push_datum(out, *elems.add(*idx), elem);
            }
            *idx += 1;
        }
    }
    out.push(']');
}

/// # Safety
/// `value` must be a valid composite (record) datum.
unsafe fn push_composite(out: &mut String, value: pg_sys::Datum) {
    let header = pg_sys::pg_detoast_datum(value.cast_mut_ptr()) as pg_sys::HeapTupleHeader;
    let datum_fields = (*header).t_choice.t_datum;
    let tupdesc =
        pg_sys::lookup_rowtype_tupdesc(datum_fields.datum_typeid, datum_fields.datum_typmod);
    let mut tuple = pg_sys::HeapTupleData {
        t_len: pgrx::varlena::varsize(header as *const pg_sys::varlena) as u32,
        t_self: pg_sys::ItemPointerData::default(),
        t_tableOid: pg_sys::InvalidOid,
        t_data: header,
    };
    push_row(out, &mut tuple, tupdesc, None);
    pg_sys::DecrTupleDescRefCount(tupdesc);
}

/// Append a JSON object with the columns of `tuple` (all live columns, or only
/// the attribute numbers in `only`, in table order).
///
/// # Safety
/// `tuple` must be a valid heap tuple described by `tupdesc`.
pub unsafe fn push_row(
    out: &mut String,
    tuple: *mut pg_sys::HeapTupleData,
    tupdesc: pg_sys::TupleDesc,
    only: Option<&[i16]>,
) {
    let natts = (*tupdesc).natts as usize;
    let mut values = vec![pg_sys::Datum::from(0usize); natts];
    let mut isnull = vec![false; natts];
    pg_sys::heap_deform_tuple(tuple, tupdesc, values.as_mut_ptr(), isnull.as_mut_ptr());
    let attrs = pgcompat::attributes(tupdesc);
    out.push('{');
    let mut first = true;
    for (i, att) in attrs.iter().enumerate() {
        if att.attisdropped {
            continue;
        }
        if let Some(cols) = only {
            if !cols.contains(&att.attnum) {
                continue;
            }
        }
        if !first {
            out.push(',');
        }
        first = false;
        let name = CStr::from_ptr(att.attname.data.as_ptr()).to_string_lossy();
        push_json_str(out, &name);
        out.push(':');
        if isnull[i] {
            out.push_str("null");
        } else {
            push_datum(out, values[i], att.atttypid);
        }
    }
    out.push('}');
}

/// The live column `attnum` of `attrs`: a column number out of range or
/// of a dropped column must never reach heap_getattr.
pub fn live_attribute(
    attrs: &[pg_sys::FormData_pg_attribute],
    attnum: i16,
) -> Option<&pg_sys::FormData_pg_attribute> {
    usize::try_from(i32::from(attnum) - 1)
        .ok()
        .and_then(|i| attrs.get(i))
        .filter(|a| !a.attisdropped)
}

/// The text of the given key columns, joined by commas (an ordering key).
///
/// # Safety
/// As for [`push_row`].
pub unsafe fn key_text(
    tuple: *mut pg_sys::HeapTupleData,
    tupdesc: pg_sys::TupleDesc,
    keys: &[i16],
) -> Option<String> {
    if keys.is_empty() {
        return None;
    }
    let mut out = String::new();
    let attrs = pgcompat::attributes(tupdesc);
    for (n, &attnum) in keys.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        // Checked by the caller too.
        let Some(att) = live_attribute(attrs, attnum) else {
            continue;
        };
        let mut isnull = false;
        let value = pg_sys::heap_getattr(tuple, attnum as i32, tupdesc, &mut isnull);
        if !isnull {
            push_output_text(&mut out, value, att.atttypid);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        let mut s = String::new();
        push_json_str(&mut s, "a\"b\\c\nd\u{1}é€😀");
        assert_eq!(s, "\"a\\\"b\\\\c\\nd\\u0001é€😀\"");
    }

    #[test]
    fn integers() {
        for v in [0i64, 7, -7, 1234567890, i64::MIN, i64::MAX] {
            let mut s = String::new();
            push_int(&mut s, v);
            assert_eq!(s, v.to_string());
        }
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let mut s = String::new();
        push_timestamp(&mut s, 0, true);
        assert_eq!(s, "\"2000-01-01T00:00:00.000000Z\"");
        s.clear();
        // 2026-11-27 19:50:15.1234 UTC
        let unix = 1_795_809_015_123_400i64;
        push_timestamp(&mut s, unix - PG_EPOCH_DAYS_FROM_UNIX * USECS_PER_DAY, true);
        assert_eq!(s, "\"2026-11-27T19:50:15.123400Z\"");
        s.clear();
        push_timestamp(&mut s, -USECS_PER_DAY, false);
        assert_eq!(s, "\"1999-12-31T00:00:00.000000\"");
    }

    #[test]
    fn money_is_hundredths_with_two_digits() {
        for (cents, want) in [
            (0i64, "0.00"),
            (5, "0.05"),
            (-5, "-0.05"),
            (123_450, "1234.50"),
            (i64::MAX, "92233720368547758.07"),
            (i64::MIN, "-92233720368547758.08"),
        ] {
            let mut s = String::new();
            push_money(&mut s, cents);
            assert_eq!(s, want);
        }
    }

    #[test]
    fn utc_offsets_are_written_in_full() {
        for (zone, want) in [
            (0, "+00:00"),
            (-20_700, "+05:45"),
            (43_200, "-12:00"),
            (-57_540, "+15:59"),
            (3_723, "-01:02:03"),
        ] {
            let mut s = String::new();
            push_utc_offset(&mut s, zone);
            assert_eq!(s, want);
        }
    }

    #[test]
    fn bc_years_are_astronomical_and_year_zero_has_no_sign() {
        // Days from 2000-01-01 to 1 BC-01-01, 2 BC-12-31, 44 BC-03-15 and AD 1-01-01.
        for (days, want) in [
            (-730_485i64, "\"0000-01-01T00:00:00.000000Z\""),
            (-730_486, "\"-0001-12-31T00:00:00.000000Z\""),
            (-746_117, "\"-0043-03-15T00:00:00.000000Z\""),
            (-730_119, "\"0001-01-01T00:00:00.000000Z\""),
        ] {
            let mut s = String::new();
            push_timestamp(&mut s, days * USECS_PER_DAY, true);
            assert_eq!(s, want);
        }
    }
}
