//! The request headers that are pg_webhook's own, in one place: those
//! every delivery carries (the Standard Webhooks request), those the HTTP
//! client writes from the request itself, and those never forwarded. An
//! endpoint's own headers may not name any of them. webhookd builds its
//! requests and drops reserved names from these lists, the console shows
//! them, and the SQL API's `_check_headers` (extension/sql/endpoints.sql)
//! and the reference (docs/sql-api.md) are checked against them by the
//! tests below.

pub const WEBHOOK_ID: &str = "webhook-id";
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";
pub const CONTENT_TYPE: &str = "content-type";
pub const USER_AGENT: &str = "user-agent";

/// What every delivery's body is.
pub const JSON: &str = "application/json";

/// The headers every delivery carries, set by webhookd (in the order the
/// console shows them).
pub const STANDARD: [&str; 5] = [
    CONTENT_TYPE,
    USER_AGENT,
    WEBHOOK_ID,
    WEBHOOK_TIMESTAMP,
    WEBHOOK_SIGNATURE,
];

/// Written by the HTTP client from the request itself (its framing).
pub const FRAMING: [&str; 3] = ["host", "content-length", "transfer-encoding"];

/// Every name starting so is the Standard Webhooks request's.
pub const STANDARD_PREFIX: &str = "webhook-";

/// About the connection, not the request (RFC 9110, 7.6.1), or asking the
/// receiver for an interim answer: never forwarded.
pub const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "te",
    "upgrade",
    "keep-alive",
    "trailer",
    "expect",
];

/// Every name starting so is about a proxy hop.
pub const HOP_BY_HOP_PREFIX: &str = "proxy-";

/// Why an endpoint may not set a header itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    /// webhookd sets it (the Standard Webhooks request and its framing).
    SetByWebhookd,
    /// It is about the connection, not the request.
    HopByHop,
}

/// Whether `name` (any case) is reserved, and why.
pub fn reserved(name: &str) -> Option<Reserved> {
    let lower = name.to_ascii_lowercase();
    let lower = lower.as_str();
    if STANDARD.contains(&lower) || FRAMING.contains(&lower) || lower.starts_with(STANDARD_PREFIX) {
        Some(Reserved::SetByWebhookd)
    } else if HOP_BY_HOP.contains(&lower) || lower.starts_with(HOP_BY_HOP_PREFIX) {
        Some(Reserved::HopByHop)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_file(path: &str) -> String {
        let full = format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
    }

    /// The quoted names of the SQL line that carries `marker`.
    fn sql_names(sql: &str, marker: &str) -> Vec<String> {
        let line = sql
            .lines()
            .find(|l| l.contains(marker))
            .unwrap_or_else(|| panic!("no line marked {marker} in endpoints.sql"));
        line.split('\'')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn names_are_reserved_whatever_their_case() {
        assert_eq!(reserved("Webhook-Signature"), Some(Reserved::SetByWebhookd));
        assert_eq!(reserved("webhook-anything"), Some(Reserved::SetByWebhookd));
        assert_eq!(reserved("HOST"), Some(Reserved::SetByWebhookd));
        assert_eq!(reserved("Upgrade"), Some(Reserved::HopByHop));
        assert_eq!(reserved("proxy-authorization"), Some(Reserved::HopByHop));
        assert_eq!(reserved("authorization"), None);
        assert_eq!(reserved("x-webhook-id"), None);
    }

    #[test]
    fn the_sql_api_refuses_exactly_these_names() {
        let sql = repo_file("extension/sql/endpoints.sql");
        let mut set: Vec<String> = STANDARD
            .iter()
            .chain(FRAMING.iter())
            .map(|s| s.to_string())
            .collect();
        set.push(format!("{STANDARD_PREFIX}%"));
        let mut hop: Vec<String> = HOP_BY_HOP.iter().map(|s| s.to_string()).collect();
        hop.push(format!("{HOP_BY_HOP_PREFIX}%"));
        for (marker, mut want) in [
            ("headers::SET_BY_WEBHOOKD", set),
            ("headers::HOP_BY_HOP", hop),
        ] {
            let mut got = sql_names(&sql, marker);
            got.sort();
            want.sort();
            assert_eq!(
                got, want,
                "extension/sql/endpoints.sql, the line marked {marker}"
            );
        }
    }

    #[test]
    fn the_reference_names_every_reserved_header() {
        let doc = repo_file("docs/sql-api.md");
        let row = doc
            .lines()
            .find(|l| l.starts_with("| `headers` |"))
            .expect("docs/sql-api.md's create_endpoint table has a headers row");
        let names = STANDARD
            .iter()
            .chain(FRAMING.iter())
            .chain(HOP_BY_HOP.iter())
            .map(|n| format!("`{n}`"))
            .chain([
                format!("`{STANDARD_PREFIX}*`"),
                format!("`{HOP_BY_HOP_PREFIX}*`"),
            ]);
        for name in names {
            assert!(
                row.contains(&name),
                "docs/sql-api.md's headers row does not name {name}: {row}"
            );
        }
    }
}
