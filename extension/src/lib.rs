//! pg_webhook: transactional, signed webhooks straight from PostgreSQL tables.
//!
//! Data path inside the database: capture (row triggers) → outbox
//! (`webhook.event_log`) → route (fan-out to `webhook.delivery`, in SQL) →
//! claim + sign (`webhook.claim`, signatures computed here) → record
//! (`webhook.record`) → retention. The SQL objects live in `../sql/`, one
//! file per stage, loaded in that order; this crate holds what must be fast
//! or must not leave the database (secrets).

use pgrx::prelude::*;

mod capture;
mod error;
mod guc;
mod outbox;
mod payload;
mod pgcompat;
mod route;
mod wake;

use error::WebhookError;
use webhook_signing as sign;

::pgrx::pg_module_magic!();

// First of all: one database holds one edition. Over the portable edition
// (the same objects, made without the library by `webhookd install`) the
// script would otherwise stop at its first CREATE with "function ...
// already exists"; this says what is there and what to do.
extension_sql!(
    r#"
DO $one_edition$
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = 'webhook' AND p.proname = 'edition' AND p.pronargs = 0) THEN
    RAISE EXCEPTION 'pg_webhook''s portable edition is installed in this database'
      USING ERRCODE = 'duplicate_schema',
            HINT = 'One database holds one edition: keep the portable one, or remove it with webhookd uninstall (its endpoints and events go with it) before CREATE EXTENSION pg_webhook.';
  END IF;
END
$one_edition$;
"#,
    name = "one_edition",
    bootstrap
);

// One file per stage, each after what it uses. Rust functions that a view
// or a SQL-language function calls when it is created are named too; a
// PL/pgSQL body is resolved only when it runs.
extension_sql_file!(
    "../sql/outbox.sql",
    name = "outbox",
    requires = [outbox::without_nul_escapes_sql]
);
extension_sql_file!(
    "../sql/endpoints.sql",
    name = "endpoints",
    requires = ["outbox"]
);
extension_sql_file!(
    "../sql/deliveries.sql",
    name = "deliveries",
    requires = ["endpoints"]
);
extension_sql_file!(
    "../sql/capture.sql",
    name = "capture",
    requires = ["deliveries"]
);
extension_sql_file!("../sql/route.sql", name = "route", requires = ["capture"]);
extension_sql_file!("../sql/claim.sql", name = "claim", requires = ["route"]);
extension_sql_file!("../sql/record.sql", name = "record", requires = ["claim"]);
extension_sql_file!("../sql/repair.sql", name = "repair", requires = ["record"]);
extension_sql_file!(
    "../sql/retention.sql",
    name = "retention",
    requires = ["repair", outbox::generation_start_sql]
);
extension_sql_file!(
    "../sql/operations.sql",
    name = "operations",
    requires = ["retention"]
);
extension_sql_file!("../sql/grants.sql", name = "grants", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    guc::init();
    capture::register_callbacks();
}

/// `v1,<base64>` Standard Webhooks signature of `msg_id.ts.body`.
#[pg_extern(immutable, strict, parallel_safe)]
fn sign(secret: &str, msg_id: &str, ts: i64, body: &str) -> String {
    sign::sign(secret, msg_id, ts, body.as_bytes())
        .unwrap_or_else(|e| WebhookError::from(e).raise())
}

/// The `webhook-signature` header: one `v1,` signature per secret, space
/// separated (several while a rotated-out secret is still signing).
#[pg_extern(immutable, strict, parallel_safe, name = "_sign_all")]
fn sign_all(secrets: Array<'_, &str>, msg_id: &str, ts: i64, body: &str) -> String {
    let mut header = String::new();
    for secret in secrets.iter().flatten() {
        let sig = sign::sign(secret, msg_id, ts, body.as_bytes())
            .unwrap_or_else(|e| WebhookError::from(e).raise());
        if !header.is_empty() {
            header.push(' ');
        }
        header.push_str(&sig);
    }
    header
}

/// Does any `v1,` entry of `signature` (a whole header is accepted) match?
#[pg_extern(immutable, strict, parallel_safe)]
fn verify(secret: &str, msg_id: &str, ts: i64, body: &str, signature: &str) -> bool {
    sign::verify(secret, msg_id, ts, body.as_bytes(), signature)
        .unwrap_or_else(|e| WebhookError::from(e).raise())
}

/// A fresh `whsec_` secret (32 random bytes).
#[pg_extern(volatile, parallel_safe, name = "_generate_secret")]
fn generate_secret() -> String {
    sign::generate_secret().unwrap_or_else(|e| WebhookError::from(e).raise())
}

/// Raise a clear error unless `secret` is a usable `whsec_` secret.
#[pg_extern(immutable, strict, parallel_safe, name = "_check_secret")]
fn check_secret(secret: &str) -> bool {
    sign::decode_secret(secret)
        .map(|_| true)
        .unwrap_or_else(|e| WebhookError::from(e).raise())
}

/// RFC 3339 UTC text of a timestamptz, as used in every envelope.
#[pg_extern(immutable, strict, parallel_safe, name = "_rfc3339")]
fn rfc3339(ts: pgrx::datum::TimestampWithTimeZone) -> String {
    let mut out = String::new();
    payload::push_timestamp(&mut out, ts.into_inner(), true);
    // push_timestamp writes a JSON string literal; callers want the bare text.
    out.trim_matches('"').to_string()
}

/// Note that this transaction wrote events (so its commit may wake the
/// dispatcher). Called by `webhook.emit()` and `webhook.send_test()`.
#[pg_extern(volatile, name = "_wrote_events")]
fn wrote_events() {
    capture::mark_written();
}

/// Dispatcher: "idle for the next `idle_ms` ms" (0: busy). See wake.rs.
#[pg_extern(volatile, strict, name = "_set_idle")]
fn set_idle(idle_ms: i64) {
    wake::set_idle(idle_ms).unwrap_or_else(|e: WebhookError| e.raise())
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn sign_matches_standard_webhooks_vector() {
        let sig = Spi::get_one::<String>(
            "SELECT webhook.sign('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, '{\"test\": 2432232314}')",
        );
        assert_eq!(
            sig,
            Ok(Some(
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".to_string()
            ))
        );
    }

    #[pg_test]
    fn capture_writes_one_event_per_row() {
        Spi::run(
            "CREATE TABLE t (id int PRIMARY KEY, n numeric, b bytea, ts timestamptz, a int[])",
        )
        .unwrap();
        Spi::run("SELECT webhook.track('t')").unwrap();
        Spi::run("INSERT INTO t VALUES (1, 12345678901234567890.000000001, '\\x0102', '2001-02-03 04:05:06.5+00', '{1,NULL,3}'), (2, 'NaN', NULL, NULL, '{}')").unwrap();
        let n = Spi::get_one::<i64>(
            "SELECT count(*) FROM webhook.events WHERE event_type = 't.insert'",
        );
        assert_eq!(n, Ok(Some(2)));
        let new = Spi::get_one::<String>(
            "SELECT (payload->'data'->'new')::text FROM webhook.events WHERE event_type = 't.insert' ORDER BY id LIMIT 1",
        );
        assert_eq!(
            new,
            Ok(Some(
                r#"{"a": [1, null, 3], "b": "AQI=", "n": 12345678901234567890.000000001, "id": 1, "ts": "2001-02-03T04:05:06.500000Z"}"#
                    .to_string()
            ))
        );
    }

    #[pg_test]
    #[should_panic(expected = "not valid base64")]
    fn malformed_secret_is_refused() {
        Spi::run("SELECT webhook._check_secret('whsec_!!!')").unwrap();
    }
}

#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
