//! The catalogue of errors a user can see. Every variant carries the SQLSTATE a
//! client can match on and a hint that says what to do about it.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::PgSqlErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("invalid webhook secret: {0}")]
    InvalidSecret(String),
    #[error("invalid signature header: {0}")]
    InvalidSignature(String),
    #[error("{0}")]
    Internal(String),
}

impl From<webhook_signing::SigningError> for WebhookError {
    fn from(e: webhook_signing::SigningError) -> Self {
        use webhook_signing::SigningError as S;
        match e {
            S::InvalidSecret(m) => WebhookError::InvalidSecret(m),
            S::InvalidSignature(m) => WebhookError::InvalidSignature(m),
            S::Internal(m) => WebhookError::Internal(m),
        }
    }
}

impl WebhookError {
    fn code(&self) -> PgSqlErrorCode {
        match self {
            WebhookError::InvalidSecret(_) | WebhookError::InvalidSignature(_) => {
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE
            }
            WebhookError::Internal(_) => PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        }
    }

    fn hint(&self) -> &'static str {
        match self {
            WebhookError::InvalidSecret(_) => {
                "Pass NULL to generate a secret, or a secret of the form whsec_<base64 of at least 24 bytes>."
            }
            WebhookError::InvalidSignature(_) => {
                "A webhook-signature header is a space-separated list of v1,<base64> entries."
            }
            WebhookError::Internal(_) => "This is a bug in pg_webhook; please report it.",
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
