//! What a failed statement says about the session it ran on: the one place
//! webhookd decides, for every connection of its own (claim, record,
//! maintain), whether to open another session, wait and retry, or treat
//! the request itself as refused.

/// How a failed statement bears on what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The session is gone or can no longer run webhookd's statements: no
    /// answer or a broken connection (class 08, or no server error at
    /// all), a prepared statement the session no longer has (class 26: a
    /// pooler in transaction mode moved webhookd to another server
    /// connection, or DISCARD ALL ran), operator intervention (57:
    /// shutdown, crash recovery). Open another session.
    Session,
    /// The database cannot do this now, whatever is asked: read-only after
    /// a failover (25), a deadlock or serialization failure (40), an
    /// object or privilege missing during an upgrade or a grant (42, 3F),
    /// resources (53), a lock not available (55), a system error (58).
    /// Retry later; splitting a batch would only multiply the failure.
    Unavailable,
    /// The database refused what this request carried (its data, its
    /// arguments): the same request would be refused again.
    Refused,
}

/// The decision for `e`.
/// A lost prepared statement also switches this process to unnamed
/// statements (db::statements), which no pooler can lose.
pub fn failure(e: &tokio_postgres::Error) -> Failure {
    match e.as_db_error() {
        None => Failure::Session,
        Some(db) => {
            if db.code().code().starts_with("26") {
                super::statements::lost_prepared_statements();
            }
            of_sqlstate(db.code().code())
        }
    }
}

fn of_sqlstate(code: &str) -> Failure {
    match code.get(..2).unwrap_or("") {
        "08" | "26" | "57" => Failure::Session,
        "25" | "40" | "42" | "3F" | "53" | "55" | "58" => Failure::Unavailable,
        _ => Failure::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_prepared_statement_is_a_lost_session_not_a_refused_request() {
        // `prepared statement "s9" does not exist`, what PgBouncer in
        // transaction mode without prepared statement support gives.
        assert_eq!(of_sqlstate("26000"), Failure::Session);
        assert_eq!(of_sqlstate("08006"), Failure::Session);
        assert_eq!(of_sqlstate("57P01"), Failure::Session);
        assert_eq!(of_sqlstate("25006"), Failure::Unavailable);
        assert_eq!(of_sqlstate("40P01"), Failure::Unavailable);
        assert_eq!(of_sqlstate("42883"), Failure::Unavailable);
        assert_eq!(of_sqlstate("22021"), Failure::Refused);
        assert_eq!(of_sqlstate("23505"), Failure::Refused);
        assert_eq!(of_sqlstate(""), Failure::Refused);
    }
}
