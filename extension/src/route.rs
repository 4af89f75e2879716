//! Route: which endpoints an event goes to. Routing itself is SQL
//! (`webhook._route()` in schema.sql); the pattern match runs once per
//! (event, endpoint) pair, so it lives here rather than in a SQL function
//! (whose per-call executor start-up cost ten times the match).

use pgrx::prelude::*;

/// Does `event_type` match one of the endpoint's patterns: `*` (all), an
/// exact type (`orders.insert`) or a prefix (`orders.*`)?
pub fn matches<'a>(patterns: impl IntoIterator<Item = &'a str>, event_type: &str) -> bool {
    patterns.into_iter().any(|p| {
        p == "*"
            || p == event_type
            || p.strip_suffix('*')
                .is_some_and(|prefix| prefix.ends_with('.') && event_type.starts_with(prefix))
    })
}

#[pg_extern(immutable, strict, parallel_safe, name = "_matches")]
fn matches_sql(patterns: Array<'_, &str>, event_type: &str) -> bool {
    matches(patterns.iter().flatten(), event_type)
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
    }
}
