//! Route: which endpoints an event goes to. Routing itself is SQL
//! (`webhook._route()` in sql/route.sql); what it asks per event type
//! lives here rather than in a SQL function (whose per-call executor
//! start-up cost ten times the match).

use pgrx::prelude::*;

/// pg_webhook's own events (`webhook.endpoint.failing`, ...: operations.sql)
/// go only to endpoints that name them (`webhook.*` or more precisely):
/// `*` means every application event, so a customer's endpoint subscribed
/// to everything never learns about other endpoints.
pub const OPERATIONAL_PREFIX: &str = "webhook.";

fn operational(event_type: &str) -> bool {
    event_type.starts_with(OPERATIONAL_PREFIX)
}

/// Does `event_type` match one of the endpoint's patterns: `*` (every
/// application event), an exact type (`orders.insert`) or a prefix
/// (`orders.*`)?
pub fn matches<'a>(patterns: impl IntoIterator<Item = &'a str>, event_type: &str) -> bool {
    patterns.into_iter().any(|p| {
        (p == "*" && !operational(event_type))
            || p == event_type
            || p.strip_suffix('*')
                .is_some_and(|prefix| prefix.ends_with('.') && event_type.starts_with(prefix))
    })
}

#[pg_extern(immutable, strict, parallel_safe, name = "_matches")]
fn matches_sql(patterns: Array<'_, &str>, event_type: &str) -> bool {
    matches(patterns.iter().flatten(), event_type)
}

/// Every pattern that matches `event_type`: `*`, each prefix at a dot
/// (`orders.*` for `orders.line.insert`) and the type itself. Routing finds
/// an event type's endpoints with `event_types && patterns_for(type)`
/// through a GIN index on `webhook.endpoint (event_types)`, so it looks at
/// the endpoints that want the type, not at every endpoint. Exactly the
/// patterns `matches` accepts (tested below).
pub fn patterns_for(event_type: &str) -> Vec<String> {
    let mut out = Vec::new();
    if !operational(event_type) {
        out.push("*".to_string());
    }
    for (i, _) in event_type.match_indices('.') {
        out.push(format!("{}.*", &event_type[..i]));
    }
    out.push(event_type.to_string());
    out
}

#[pg_extern(immutable, strict, parallel_safe, name = "_patterns_for")]
fn patterns_for_sql(event_type: &str) -> Vec<String> {
    patterns_for(event_type)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn patterns() {
        assert!(matches(["*"], "orders.insert"));
        assert!(matches(["orders.insert"], "orders.insert"));
        assert!(!matches(["orders.insert"], "orders.update"));
        assert!(matches(["orders.*"], "orders.update"));
        assert!(matches(["orders.*"], "orders.line.insert"));
        assert!(!matches(["orders.*"], "orders_archive.insert"));
        assert!(!matches(["orders.*"], "orders"));
        assert!(!matches(["reviews.*", "orders.delete"], "orders.insert"));
        assert!(matches(["reviews.*", "orders.insert"], "orders.insert"));
        assert!(!matches([], "orders.insert"));
        // pg_webhook's own events only where named.
        assert!(!matches(["*"], "webhook.endpoint.failing"));
        assert!(matches(["webhook.*"], "webhook.endpoint.failing"));
        assert!(matches(
            ["*", "webhook.endpoint.*"],
            "webhook.endpoint.failing"
        ));
    }

    #[test]
    fn patterns_for_lists_exactly_the_matching_patterns() {
        use super::patterns_for;
        assert_eq!(
            patterns_for("orders.line.insert"),
            ["*", "orders.*", "orders.line.*", "orders.line.insert"]
        );
        assert_eq!(patterns_for("ping"), ["*", "ping"]);
        assert_eq!(
            patterns_for("webhook.endpoint.failing"),
            [
                "webhook.*",
                "webhook.endpoint.*",
                "webhook.endpoint.failing"
            ]
        );
        let types = [
            "orders.insert",
            "orders.line.insert",
            "orders_archive.insert",
            "a.b.c.d",
            "x",
            "webhook.delivery.dead",
        ];
        let candidates = [
            "*",
            "orders.*",
            "orders.insert",
            "orders.line.*",
            "orders.line.insert",
            "orders.update",
            "orders_archive.*",
            "a.*",
            "a.b.*",
            "a.b.c.*",
            "a.b.c.d",
            "a.b.c.d.*",
            "x",
            "x.*",
            "webhook.*",
            "webhook.delivery.dead",
        ];
        for t in types {
            for p in candidates {
                assert_eq!(
                    patterns_for(t).iter().any(|q| q == p),
                    matches([p], t),
                    "pattern {p} and type {t}"
                );
            }
        }
    }
}
