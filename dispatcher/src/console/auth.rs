//! Who may do what in the console: bearer tokens from the environment (an
//! admin token, a read-only token), compared in constant time; the web
//! console's sign-in cookie; CSRF tokens for its forms.

use base64::Engine;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read endpoints (header values hidden), deliveries and events.
    Read,
    /// Everything: changes, repairs, secrets.
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Admin => "admin",
        }
    }
}

/// The environment variables the tokens come from (never flags: a command
/// line is visible to every user of the host).
pub const ADMIN_TOKEN_ENV: &str = "WEBHOOKD_CONSOLE_ADMIN_TOKEN";
pub const READ_TOKEN_ENV: &str = "WEBHOOKD_CONSOLE_READ_TOKEN";
/// Shorter tokens are refused at start: they could be guessed.
pub const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("no token: set {ADMIN_TOKEN_ENV} (and, for read-only access, {READ_TOKEN_ENV})")]
    None,
    #[error("{0} is shorter than {MIN_TOKEN_LEN} characters")]
    Short(&'static str),
    #[error("{ADMIN_TOKEN_ENV} and {READ_TOKEN_ENV} are the same token")]
    Same,
}

/// The tokens, kept as SHA-256 digests: a comparison then takes the same
/// time whatever the presented token's length or content.
pub struct Tokens {
    admin: Option<[u8; 32]>,
    read: Option<[u8; 32]>,
    /// Signs CSRF tokens; new at each start (forms of an older process
    /// are refused, and the user signs in again).
    csrf_key: [u8; 64],
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

impl Tokens {
    pub fn new(admin: Option<String>, read: Option<String>) -> Result<Tokens, TokenError> {
        let admin = admin.filter(|t| !t.is_empty());
        let read = read.filter(|t| !t.is_empty());
        if admin.is_none() && read.is_none() {
            return Err(TokenError::None);
        }
        for (name, t) in [(ADMIN_TOKEN_ENV, &admin), (READ_TOKEN_ENV, &read)] {
            if t.as_ref()
                .is_some_and(|t| t.chars().count() < MIN_TOKEN_LEN)
            {
                return Err(TokenError::Short(name));
            }
        }
        if admin.is_some() && admin == read {
            return Err(TokenError::Same);
        }
        Ok(Tokens {
            admin: admin.as_deref().map(digest),
            read: read.as_deref().map(digest),
            csrf_key: rand::random(),
        })
    }

    /// The role of a presented token, if it is one of ours. Both tokens
    /// are always compared, in constant time.
    pub fn role(&self, presented: &str) -> Option<Role> {
        let p = digest(presented);
        let is = |t: &Option<[u8; 32]>| t.map_or(subtle::Choice::from(0), |t| t.ct_eq(&p));
        let admin = bool::from(is(&self.admin));
        let read = bool::from(is(&self.read));
        if admin {
            Some(Role::Admin)
        } else if read {
            Some(Role::Read)
        } else {
            None
        }
    }

    /// The CSRF token of a signed-in session: bound to its token, so a
    /// page of one session cannot post for another, and unknown to any
    /// other site (it is only ever written into our own pages).
    pub fn csrf(&self, session_token: &str) -> String {
        // A key of HMAC-SHA256's block size: no length to check.
        let mut mac = <Hmac<Sha256> as KeyInit>::new(&self.csrf_key.into());
        mac.update(session_token.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    pub fn csrf_ok(&self, session_token: &str, presented: &str) -> bool {
        let expected = self.csrf(session_token);
        digest(&expected).ct_eq(&digest(presented)).into()
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let h = header?.trim();
    let (scheme, token) = h.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "admin-token-0123456789";
    const R: &str = "read-token-0123456789";

    #[test]
    fn tokens_have_roles_and_nothing_else_does() {
        let t = Tokens::new(Some(A.into()), Some(R.into())).unwrap();
        assert_eq!(t.role(A), Some(Role::Admin));
        assert_eq!(t.role(R), Some(Role::Read));
        for wrong in [
            "",
            "admin",
            &A[..A.len() - 1],
            &format!("{A}x"),
            "ADMIN-TOKEN-0123456789",
        ] {
            assert_eq!(t.role(wrong), None, "{wrong}");
        }
        let only_read = Tokens::new(None, Some(R.into())).unwrap();
        assert_eq!(only_read.role(A), None);
        assert_eq!(only_read.role(R), Some(Role::Read));
    }

    #[test]
    fn weak_or_missing_tokens_are_refused_at_start() {
        assert_eq!(Tokens::new(None, None).err(), Some(TokenError::None));
        assert_eq!(
            Tokens::new(Some(String::new()), None).err(),
            Some(TokenError::None)
        );
        assert_eq!(
            Tokens::new(Some("short".into()), None).err(),
            Some(TokenError::Short(ADMIN_TOKEN_ENV))
        );
        assert_eq!(
            Tokens::new(Some(A.into()), Some("x".into())).err(),
            Some(TokenError::Short(READ_TOKEN_ENV))
        );
        assert_eq!(
            Tokens::new(Some(A.into()), Some(A.into())).err(),
            Some(TokenError::Same)
        );
    }

    #[test]
    fn csrf_tokens_belong_to_one_session_and_one_process() {
        let t = Tokens::new(Some(A.into()), Some(R.into())).unwrap();
        let c = t.csrf(A);
        assert!(t.csrf_ok(A, &c));
        assert!(!t.csrf_ok(R, &c));
        assert!(!t.csrf_ok(A, ""));
        assert!(!t.csrf_ok(A, &c[1..]));
        let other = Tokens::new(Some(A.into()), Some(R.into())).unwrap();
        assert!(!other.csrf_ok(A, &c));
    }

    #[test]
    fn bearer_headers_are_read_strictly() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer   abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }
}
