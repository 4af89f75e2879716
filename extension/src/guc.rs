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
static TRACEPARENT: GucSetting<Option<std::ffi::CString>> =
    GucSetting::<Option<std::ffi::CString>>::new(None);
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

/// `webhook.traceparent`, when it is a W3C trace context `traceparent`
/// (`00-<32 hex>-<16 hex>-<2 hex>`, lowercase, ids not all zeros): the
/// application's tracing middleware sets it (`SET LOCAL`), events written
/// meanwhile carry it and webhookd sends it as the `traceparent` header.
/// Anything else is not carried (a bad value must not fail the
/// application's transaction).
pub fn traceparent() -> Option<String> {
    let v = TRACEPARENT.get()?;
    let v = v.to_str().ok()?;
    valid_traceparent(v).then(|| v.to_string())
}

pub fn valid_traceparent(v: &str) -> bool {
    let parts: Vec<&str> = v.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    parts.len() == 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && parts[1].bytes().any(|b| b != b'0')
        && hex(parts[2], 16)
        && parts[2].bytes().any(|b| b != b'0')
        && hex(parts[3], 2)
}

/// The session's trace context for events written by SQL (emit()).
#[pg_extern(stable, parallel_safe, name = "_traceparent")]
fn traceparent_sql() -> Option<String> {
    traceparent()
}

/// May endpoint URLs use plain http:// (superuser-only setting)?
#[pg_extern(stable, parallel_safe, name = "_allow_http")]
fn allow_http() -> bool {
    ALLOW_HTTP.get()
}

pub fn init() {
    GucRegistry::define_string_guc(
        c"webhook.traceparent",
        c"W3C trace context of the events this session writes.",
        c"Set by the application's tracing middleware (SET LOCAL webhook.traceparent = '00-...'); webhookd sends it as the traceparent header of their deliveries.",
        &TRACEPARENT,
        GucContext::Userset,
        GucFlags::default(),
    );
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

#[cfg(test)]
mod tests {
    use super::valid_traceparent;

    #[test]
    fn only_w3c_traceparents_are_carried() {
        assert!(valid_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(valid_traceparent(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        ));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nx: y",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(!valid_traceparent(bad), "{bad:?}");
        }
    }
}
