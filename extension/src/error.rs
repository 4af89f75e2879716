//! The catalogue of errors a user can see. Every variant carries the SQLSTATE a
//! client can match on and a hint that says what to do about it.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::PgSqlErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Secret and signature errors come from the shared signing crate as is.
    #[error(transparent)]
    Signing(#[from] webhook_signing::SigningError),
    /// An event body over `webhook.max_event_size`, refused where it enters
    /// the outbox (capture or emit), so nothing downstream holds it.
    #[error("{event_type} event of {size} bytes exceeds webhook.max_event_size ({max} bytes)")]
    EventTooLarge {
        event_type: String,
        size: usize,
        max: usize,
    },
    /// A capture trigger whose arguments `webhook.track()` did not write.
    #[error("webhook capture trigger {trigger:?} on {table} has invalid arguments: {why}")]
    TriggerArguments {
        trigger: String,
        table: String,
        why: String,
    },
    /// An index on the outbox that the capture path's direct insert cannot
    /// maintain (it has no executor to evaluate expressions or predicates).
    #[error("index {index:?} on webhook.event_log is not supported: it has {what}")]
    OutboxIndex { index: String, what: &'static str },
    #[error("{0}")]
    Internal(String),
}

impl WebhookError {
    fn code(&self) -> PgSqlErrorCode {
        use webhook_signing::SigningError as S;
        match self {
            WebhookError::Signing(S::InvalidSecret(_) | S::InvalidSignature(_)) => {
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE
            }
            WebhookError::EventTooLarge { .. } => PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            WebhookError::TriggerArguments { .. } => {
                PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED
            }
            WebhookError::OutboxIndex { .. } => PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            WebhookError::Signing(S::Internal(_)) | WebhookError::Internal(_) => {
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR
            }
        }
    }

    fn hint(&self) -> &'static str {
        use webhook_signing::SigningError as S;
        match self {
            WebhookError::Signing(S::InvalidSecret(_)) => {
                "Pass NULL to generate a secret, or a secret of the form whsec_<base64 of at least 24 bytes>."
            }
            WebhookError::Signing(S::InvalidSignature(_)) => {
                "A webhook-signature header is a space-separated list of v1,<base64> entries."
            }
            WebhookError::EventTooLarge { .. } => {
                "Nothing was written. Capture fewer columns (webhook.track(..., columns => ...)), or send an id the receiver can fetch the rest by; a superuser can raise webhook.max_event_size."
            }
            WebhookError::TriggerArguments { .. } => {
                "Capture triggers are installed by webhook.track(); drop this trigger and call webhook.track() for the table instead."
            }
            WebhookError::OutboxIndex { .. } => {
                "Captured events are written without the executor, so indexes on webhook.event_log must be plain column indexes. Drop the index; index a column (event_type, created_at) instead."
            }
            WebhookError::Signing(S::Internal(_)) | WebhookError::Internal(_) => {
                "This is a bug in pg_webhook; please report it."
            }
        }
    }

    /// Raise this error as a PostgreSQL ERROR (unwinds to pgrx's guard, which
    /// turns it into an ereport; never crosses the FFI boundary as a panic).
    pub fn raise(self) -> ! {
        let code = self.code();
        let hint = self.hint();
        ErrorReport::new(code, self.to_string(), "pg_webhook")
            .set_hint(hint)
            .report(pgrx::PgLogLevel::ERROR);
        unreachable!("ereport(ERROR) returned")
    }
}
