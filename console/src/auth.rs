//! Who may do what in the console: named bearer tokens, each with a role
//! (the admin and read-only tokens of the environment, and the lines of a
//! token file), compared in constant time and refused at start when they
//! could be guessed; the HMAC'd token of the sign-in form.

use std::collections::HashSet;
use std::sync::Arc;

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

    fn parse(s: &str) -> Option<Role> {
        match s {
            "read" => Some(Role::Read),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The environment variables the tokens come from (never flags: a command
/// line is visible to every user of the host). Their tokens are named
/// `admin` and `read`.
pub const ADMIN_TOKEN_ENV: &str = "WEBHOOKD_CONSOLE_ADMIN_TOKEN";
pub const READ_TOKEN_ENV: &str = "WEBHOOKD_CONSOLE_READ_TOKEN";

/// Weaker tokens are refused at start (see `estimated_bits`).
pub const MIN_TOKEN_BITS: f64 = 128.0;
/// Token names are written into every audit line: a short, plain word.
const MAX_NAME_LEN: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error(
        "no token: set {ADMIN_TOKEN_ENV} (and, for read-only access, {READ_TOKEN_ENV}), \
         or name tokens in --token-file"
    )]
    None,
    #[error(
        "{0}: the token is too weak (about {1} bits estimated, at least {MIN_TOKEN_BITS} needed); \
         use 32 random bytes, e.g. `openssl rand -hex 32`"
    )]
    Weak(String, u32),
    #[error("{0}: a token is printable ASCII without spaces")]
    Characters(String),
    #[error("{0} and {1} are the same token")]
    Same(String, String),
    #[error("{0}: the name {1:?} is taken (by {2})")]
    NameTaken(String, String, String),
    #[error(
        "{0}: expected `name role token` (name: letters, digits, `.`, `_`, `-`, at most \
         {MAX_NAME_LEN}; role: admin or read)"
    )]
    Line(String),
}

/// A token as configured: where it comes from (for error messages; never
/// the token itself), its name and role.
pub struct TokenSource {
    pub origin: String,
    pub name: String,
    pub role: Role,
    pub token: String,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("origin", &self.origin)
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// The tokens of the environment: `admin` and `read` (an empty variable
/// is no token).
pub fn env_tokens(admin: Option<String>, read: Option<String>) -> Vec<TokenSource> {
    [
        (ADMIN_TOKEN_ENV, "admin", Role::Admin, admin),
        (READ_TOKEN_ENV, "read", Role::Read, read),
    ]
    .into_iter()
    .filter_map(|(origin, name, role, t)| {
        t.filter(|t| !t.is_empty()).map(|token| TokenSource {
            origin: origin.into(),
            name: name.into(),
            role,
            token,
        })
    })
    .collect()
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= MAX_NAME_LEN
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The lines of a token file: `name role token`, separated by spaces or
/// tabs; blank lines and lines starting with `#` are skipped. `file` names
/// the file in error messages (`file:line`).
pub fn parse_token_file(file: &str, text: &str) -> Result<Vec<TokenSource>, TokenError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let origin = format!("{file}:{}", i + 1);
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        let [name, role, token] = fields[..] else {
            return Err(TokenError::Line(origin));
        };
        let Some(role) = Role::parse(role).filter(|_| valid_name(name)) else {
            return Err(TokenError::Line(origin));
        };
        out.push(TokenSource {
            origin,
            name: name.into(),
            role,
            token: token.into(),
        });
    }
    Ok(out)
}

/// The number of characters of the smallest of these alphabets that
/// holds every character of the token: digits (10), hex digits (16, one
/// case), one case of letters with digits (36), letters and digits (62),
/// base64 (64: those and `+/-_=`), printable ASCII (94).
fn alphabet(token: &str) -> u32 {
    let all = |f: fn(u8) -> bool| token.bytes().all(f);
    if all(|b| b.is_ascii_digit()) {
        10
    } else if all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        || all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'))
    {
        16
    } else if all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        || all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    {
        36
    } else if all(|b| b.is_ascii_alphanumeric()) {
        62
    } else if all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_' | b'=')) {
        64
    } else {
        94
    }
}

/// How hard a token is to guess, in bits, estimated from the token alone
/// (it cannot know how the token was made, so patterns get no credit).
/// Each character counts log2(`alphabet`) bits, but nothing when it
/// repeats the character before it (`aa`), continues a run of three
/// (`abc`, `321`) or ends a three-character sequence seen before in the
/// token (`abcXabc`). 24 random bytes, in hex (48 characters) or base64
/// (32), estimate at 130 bits and more; 32 random bytes at 190 and more.
pub fn estimated_bits(token: &str) -> f64 {
    let c = token.as_bytes();
    let mut seen = HashSet::new();
    let mut counted = 0u32;
    for i in 0..c.len() {
        let repeat = i >= 1 && c[i] == c[i - 1];
        let run = i >= 2 && {
            let (a, b, x) = (i16::from(c[i - 2]), i16::from(c[i - 1]), i16::from(c[i]));
            (x - b).abs() == 1 && x - b == b - a
        };
        let again = i >= 2 && !seen.insert((c[i - 2], c[i - 1], c[i]));
        if !(repeat || run || again) {
            counted += 1;
        }
    }
    f64::from(counted) * f64::from(alphabet(token)).log2()
}

/// Who a token is: its name (in every audit line) and its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: Arc<str>,
    pub role: Role,
}

struct Named {
    identity: Identity,
    /// The token as a SHA-256 digest: a comparison then takes the same
    /// time whatever the presented token's length or content.
    digest: [u8; 32],
}

pub struct Tokens {
    list: Vec<Named>,
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Whether two secrets (a CSRF token, a form's HMAC) are the same, in a
/// time that tells nothing about where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    digest(a).ct_eq(&digest(b)).into()
}

impl Tokens {
    /// The console's tokens; refused when there is none, one is weak, two
    /// share a name or a token.
    pub fn new(sources: Vec<TokenSource>) -> Result<Tokens, TokenError> {
        if sources.is_empty() {
            return Err(TokenError::None);
        }
        let mut list: Vec<Named> = Vec::new();
        let mut origins: Vec<&str> = Vec::new();
        for s in &sources {
            if !s.token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(TokenError::Characters(s.origin.clone()));
            }
            let bits = estimated_bits(&s.token);
            if bits < MIN_TOKEN_BITS {
                return Err(TokenError::Weak(s.origin.clone(), bits as u32));
            }
            let d = digest(&s.token);
            for (other, o) in list.iter().zip(&origins) {
                if &*other.identity.name == s.name.as_str() {
                    return Err(TokenError::NameTaken(
                        s.origin.clone(),
                        s.name.clone(),
                        o.to_string(),
                    ));
                }
                if other.digest == d {
                    return Err(TokenError::Same(o.to_string(), s.origin.clone()));
                }
            }
            list.push(Named {
                identity: Identity {
                    name: s.name.as_str().into(),
                    role: s.role,
                },
                digest: d,
            });
            origins.push(&s.origin);
        }
        Ok(Tokens { list })
    }

    /// Who presented this token, if it is one of ours. Every token is
    /// compared, in constant time, whichever matches.
    pub fn find(&self, presented: &str) -> Option<Identity> {
        let p = digest(presented);
        let mut found = None;
        for t in &self.list {
            if bool::from(t.digest.ct_eq(&p)) {
                found = Some(t.identity.clone());
            }
        }
        found
    }

    pub fn identities(&self) -> impl Iterator<Item = &Identity> {
        self.list.iter().map(|t| &t.identity)
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

/// The sign-in form's CSRF guard, before there is a session: the form
/// page sets a short-lived cookie (a random nonce and its expiry) and
/// writes the cookie's HMAC into the form; a sign-in needs both. Another
/// site can neither read the cookie nor compute the HMAC (the key is new
/// at each start and never leaves the process).
pub struct LoginForms {
    key: [u8; 64],
}

/// How long a sign-in form may be used.
pub const LOGIN_FORM_SECONDS: u64 = 15 * 60;

impl LoginForms {
    pub fn new() -> Self {
        LoginForms {
            key: rand::random(),
        }
    }

    fn mac(&self, cookie: &str) -> String {
        // A key of HMAC-SHA256's block size: no length to check.
        let mut mac = <Hmac<Sha256> as KeyInit>::new(&self.key.into());
        mac.update(cookie.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// A new form: (the cookie's value, the form's token).
    pub fn issue(&self, now_unix: u64) -> (String, String) {
        let nonce: [u8; 16] = rand::random();
        let cookie = format!(
            "{}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(nonce),
            now_unix + LOGIN_FORM_SECONDS
        );
        let token = self.mac(&cookie);
        (cookie, token)
    }

    /// Whether the form's token belongs to the cookie, and it is not
    /// expired.
    pub fn check(&self, cookie: &str, form_token: &str, now_unix: u64) -> bool {
        let fresh = cookie
            .rsplit_once('.')
            .and_then(|(_, exp)| exp.parse::<u64>().ok())
            .is_some_and(|exp| exp > now_unix);
        fresh && same_secret(&self.mac(cookie), form_token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "9f2c4e7a1b8d3f6c0e5a9b2d7f4c1e8a3b6d9f0c2e5a8b1d4f7c0e3a6b9d2f5c";
    const R: &str = "Zx3Qp9Lk2Vb7Nm4Hj8Gf1Ds6Aq0Wr5Ety-Ui_OoP3lKj";

    fn sources(list: &[(&str, Role, &str)]) -> Vec<TokenSource> {
        list.iter()
            .map(|(n, r, t)| TokenSource {
                origin: format!("test {n}"),
                name: n.to_string(),
                role: *r,
                token: t.to_string(),
            })
            .collect()
    }

    #[test]
    fn tokens_have_names_and_roles_and_nothing_else_does() {
        let t = Tokens::new(env_tokens(Some(A.into()), Some(R.into()))).unwrap();
        let who = |p: &str| t.find(p).map(|i| (i.name.to_string(), i.role));
        assert_eq!(who(A), Some(("admin".into(), Role::Admin)));
        assert_eq!(who(R), Some(("read".into(), Role::Read)));
        for wrong in [
            "",
            "admin",
            &A[..A.len() - 1],
            &format!("{A}x"),
            &A.to_uppercase(),
        ] {
            assert_eq!(t.find(wrong), None, "{wrong}");
        }
        let only_read = Tokens::new(env_tokens(None, Some(R.into()))).unwrap();
        assert_eq!(only_read.find(A), None);
        assert_eq!(only_read.find(R).unwrap().role, Role::Read);
    }

    #[test]
    fn missing_weak_and_clashing_tokens_are_refused_at_start() {
        assert_eq!(
            Tokens::new(env_tokens(None, None)).err(),
            Some(TokenError::None)
        );
        assert_eq!(
            Tokens::new(env_tokens(Some(String::new()), None)).err(),
            Some(TokenError::None)
        );
        for weak in [
            "short",
            "shop-demo-admin-token",
            "0123456789abcdef0123456789abcdef0123456789abcdef",
            &"a".repeat(200),
            &"ab".repeat(40),
            &"0123456789".repeat(8),
            &"Tr0ub4dor&3x".repeat(6),
            &"1".repeat(10).repeat(2),
        ] {
            match Tokens::new(env_tokens(Some(weak.into()), None)) {
                Err(TokenError::Weak(origin, bits)) => {
                    assert_eq!(origin, ADMIN_TOKEN_ENV);
                    assert!(f64::from(bits) < MIN_TOKEN_BITS);
                }
                other => panic!("{weak}: {:?}", other.err()),
            }
        }
        let err = Tokens::new(env_tokens(Some(A.into()), Some("x".into())))
            .err()
            .unwrap();
        assert!(matches!(&err, TokenError::Weak(o, _) if o == READ_TOKEN_ENV));
        // The message says what to do, and never the token.
        assert!(err.to_string().contains("openssl rand -hex 32"), "{err}");
        assert_eq!(
            Tokens::new(env_tokens(Some(A.into()), Some(A.into()))).err(),
            Some(TokenError::Same(
                ADMIN_TOKEN_ENV.into(),
                READ_TOKEN_ENV.into()
            ))
        );
        let spaced = format!("{A} x");
        assert!(matches!(
            Tokens::new(env_tokens(Some(spaced), None)),
            Err(TokenError::Characters(_))
        ));
        assert!(matches!(
            Tokens::new(sources(&[("a", Role::Admin, A), ("a", Role::Read, R)])),
            Err(TokenError::NameTaken(_, n, _)) if n == "a"
        ));
    }

    #[test]
    fn random_tokens_pass_the_strength_estimate() {
        use rand::Rng;
        let mut rng = rand::rng();
        for _ in 0..2000 {
            let bytes: [u8; 24] = rng.random();
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
            for t in [hex, b64] {
                assert!(estimated_bits(&t) >= MIN_TOKEN_BITS, "{t}");
            }
        }
    }

    #[test]
    fn token_files_name_tokens_with_roles() {
        let text = format!("# who may do what\n\nalice admin {A}\n  ci.bot\tread  {R}  \n");
        let s = parse_token_file("tokens", &text).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].name.as_str(), s[0].role, s[0].origin.as_str()),
            ("alice", Role::Admin, "tokens:3")
        );
        assert_eq!((s[1].name.as_str(), s[1].role), ("ci.bot", Role::Read));
        let t = Tokens::new(s).unwrap();
        assert_eq!(&*t.find(R).unwrap().name, "ci.bot");
        for bad in [
            "alice admin".to_string(),
            format!("alice owner {A}"),
            format!("al ice admin {A}"),
            format!("alice\u{1b} admin {A}"),
            format!("{} admin {A}", "n".repeat(65)),
        ] {
            assert_eq!(
                parse_token_file("tokens", &bad).err(),
                Some(TokenError::Line("tokens:1".into())),
                "{bad}"
            );
        }
        // No token in an error message.
        let e = parse_token_file("tokens", &format!("alice owner {A}")).unwrap_err();
        assert!(!e.to_string().contains(A));
    }

    #[test]
    fn login_forms_need_their_cookie_and_expire() {
        let f = LoginForms::new();
        let (cookie, token) = f.issue(1000);
        assert!(f.check(&cookie, &token, 1000));
        assert!(f.check(&cookie, &token, 1000 + LOGIN_FORM_SECONDS - 1));
        assert!(!f.check(&cookie, &token, 1000 + LOGIN_FORM_SECONDS));
        assert!(!f.check(&cookie, "", 1000));
        assert!(!f.check("", &token, 1000));
        let (other_cookie, other_token) = f.issue(1000);
        assert!(!f.check(&other_cookie, &token, 1000));
        assert!(!f.check(&cookie, &other_token, 1000));
        // A longer expiry written into the cookie breaks its HMAC.
        let (nonce, _) = cookie.rsplit_once('.').unwrap();
        assert!(!f.check(&format!("{nonce}.99999999999"), &token, 1000));
        // Another process's forms are refused.
        assert!(!LoginForms::new().check(&cookie, &token, 1000));
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
