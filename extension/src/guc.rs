//! Settings (GUCs) under `webhook.*`.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

static NOTIFY: GucSetting<bool> = GucSetting::<bool>::new(true);
static ALLOW_HTTP: GucSetting<bool> = GucSetting::<bool>::new(false);

pub fn notify_enabled() -> bool {
    NOTIFY.get()
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
}
