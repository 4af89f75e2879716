//! Settings (GUCs) under `webhook.*`.
//!
//! SQL reads them only through the functions here, never with
//! `current_setting()`: before this library is loaded in a session, a
//! `webhook.*` name is a placeholder that any role may SET, so a superuser-only
//! setting read that way could be forged. Calling one of these functions
//! loads the library first, which replaces the placeholder by the real
//! setting (dropping a value a non-superuser had no right to set).

use pgrx::prelude::*;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

static NOTIFY: GucSetting<bool> = GucSetting::<bool>::new(true);
static ALLOW_HTTP: GucSetting<bool> = GucSetting::<bool>::new(false);

/// Default of `webhook.max_event_size`: 1 MiB, as most receivers' request
/// size limits allow it and a claim batch of them stays bounded.
pub const DEFAULT_MAX_EVENT_SIZE: i32 = 1024 * 1024;
static MAX_EVENT_SIZE: GucSetting<i32> = GucSetting::<i32>::new(DEFAULT_MAX_EVENT_SIZE);

pub fn notify_enabled() -> bool {
    NOTIFY.get()
}

/// Largest event body, in bytes, that may enter the outbox.
pub fn max_event_size() -> usize {
    MAX_EVENT_SIZE.get().max(0) as usize
}

/// May endpoint URLs use plain http:// (superuser-only setting)?
#[pg_extern(stable, parallel_safe, name = "_allow_http")]
fn allow_http() -> bool {
    ALLOW_HTTP.get()
}

pub fn init() {
    GucRegistry::define_bool_guc(
        c"webhook.notify",
        c"Wake an idle dispatcher with NOTIFY when a transaction writes events.",
        c"Off: no NOTIFY is ever sent and dispatchers find events by polling (webhookd --no-listen).",
        &NOTIFY,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"webhook.allow_http",
        c"Allow plain http:// endpoint URLs.",
        c"Off by default: endpoints must use https://. Turn on for local development and tests.",
        &ALLOW_HTTP,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"webhook.max_event_size",
        c"Largest event body that may be captured or emitted.",
        c"A row change or emit() whose event body is larger fails with SQLSTATE 54000; nothing is written.",
        &MAX_EVENT_SIZE,
        256,
        // text values are at most 1 GB.
        1024 * 1024 * 1024 - 1,
        GucContext::Suset,
        GucFlags::UNIT_BYTE,
    );
}
