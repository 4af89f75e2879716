//! The catalogue of errors a user can see. Every variant carries the SQLSTATE a
//! client can match on and a hint that says what to do about it.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::PgSqlErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Secret and signature errors come from the shared signing crate as is.
    #[error(transparent)]
    Signing(#[from] webhook_signing::SigningError),
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
