//! The web console's sessions, kept in this process's memory: a session
//! has its own random id (the cookie's value; never a token, so a copied
//! cookie is no bearer token and a log of Cookie headers leaks no token),
//! an expiry the server enforces, and a CSRF token of its own. Signing out
//! ends it here; a restart (new tokens, a token removed) ends them all.
//!
//! And everything else of a browser's session, in one place: the
//! console's cookies (the session's, the next page's message, the sign-in
//! form's nonce), the `Session` extractor of every page, and the checks of
//! every form that changes something (the session's CSRF token, our
//! origin, an admin role).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::actions::Actor;
use crate::auth::{same_secret, Identity, Role};
use crate::request;
use crate::Console;

use super::{refused, urlencode, AppState};

/// A session ends this long after sign-in, whatever the browser keeps.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// Sessions at most; at the bound the one closest to its end makes room.
pub const MAX_SESSIONS: usize = 1000;

/// What a session is: who signed in, and the CSRF token of its forms.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub token: Arc<str>,
    pub role: Role,
    pub csrf: String,
    pub expires: Instant,
}

pub struct Sessions {
    /// By the SHA-256 of the id: the map's own lookup then tells nothing
    /// about ids it holds.
    inner: Mutex<HashMap<[u8; 32], SessionInfo>>,
    lifetime: Duration,
    max: usize,
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

fn random_text() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new(SESSION_LIFETIME, MAX_SESSIONS)
    }
}

impl Sessions {
    pub fn new(lifetime: Duration, max: usize) -> Self {
        Sessions {
            inner: Mutex::new(HashMap::new()),
            lifetime,
            max: max.max(1),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], SessionInfo>> {
        // A panic elsewhere while holding the lock leaves a map still
        // consistent (every change is one insert or remove).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session for who signed in: (its id, what it is).
    pub fn start(&self, who: &Identity, now: Instant) -> (String, SessionInfo) {
        let id = random_text();
        let info = SessionInfo {
            token: who.name.clone(),
            role: who.role,
            csrf: random_text(),
            expires: now + self.lifetime,
        };
        let mut m = self.map();
        if m.len() >= self.max {
            m.retain(|_, s| s.expires > now);
        }
        while m.len() >= self.max {
            let Some(k) = m.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k) else {
                break;
            };
            m.remove(&k);
        }
        m.insert(key(&id), info.clone());
        (id, info)
    }

    /// The session of this id, while it lasts.
    pub fn get(&self, id: &str, now: Instant) -> Option<SessionInfo> {
        let k = key(id);
        let mut m = self.map();
        match m.get(&k) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                m.remove(&k);
                None
            }
            None => None,
        }
    }

    /// Ends a session; whether it was one.
    pub fn end(&self, id: &str) -> bool {
        self.map().remove(&key(id)).is_some()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map().len()
    }
}

// Cookies, the extractor, the forms' checks.

/// The console's cookies: the session's id, a message for the next page,
/// the sign-in form's CSRF nonce.
pub(crate) struct CookieNames {
    pub(crate) session: &'static str,
    pub(crate) flash: &'static str,
    pub(crate) login: &'static str,
}

pub(crate) const PLAIN_COOKIES: CookieNames = CookieNames {
    session: "pgwh_console",
    flash: "pgwh_flash",
    login: "pgwh_login",
};

/// Under --secure-cookie: the `__Host-` prefix, so the browser keeps them
/// only when set over HTTPS, Secure, with Path=/ and no Domain (no other
/// host, a sibling subdomain included, can plant one).
pub(crate) const HOST_COOKIES: CookieNames = CookieNames {
    session: "__Host-pgwh_console",
    flash: "__Host-pgwh_flash",
    login: "__Host-pgwh_login",
};

pub(crate) fn cookie_names(state: &Console) -> &'static CookieNames {
    if state.secure_cookie {
        &HOST_COOKIES
    } else {
        &PLAIN_COOKIES
    }
}

/// Every cookie of the console, with the same attributes (a removal too:
/// a `__Host-` cookie is only replaced by one as Secure).
pub(crate) fn cookie(
    state: &Console,
    name: &'static str,
    value: String,
    seconds: i64,
) -> Cookie<'static> {
    Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.secure_cookie)
        .max_age(cookie::time::Duration::seconds(seconds))
        .build()
}

pub(crate) fn drop_cookie(state: &Console, jar: CookieJar, name: &'static str) -> CookieJar {
    jar.remove(cookie(state, name, String::new(), 0))
}

/// A signed-in browser: its session's id, role and CSRF token, and who
/// acts through it.
pub struct Session {
    pub(crate) id: String,
    pub(crate) role: Role,
    pub(crate) csrf: String,
    pub(crate) actor: Actor,
}

impl Session {
    pub(crate) fn admin(&self) -> bool {
        self.role == Role::Admin
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ctx = request::of_parts(parts);
        let jar = CookieJar::from_headers(&parts.headers);
        let names = cookie_names(state);
        let found = jar.get(names.session).and_then(|c| {
            let id = c.value().to_string();
            state
                .sessions
                .get(&id, Instant::now())
                .map(|info| (id, info))
        });
        match found {
            Some((id, info)) => Ok(Session {
                actor: Actor::new(info.token.clone(), info.role, &ctx),
                id,
                role: info.role,
                csrf: info.csrf,
            }),
            None => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                let to = format!("/login?next={}", urlencode(next));
                // An ended session's cookie (or an older console's, which
                // held a token) is dropped.
                let jar = drop_cookie(state, jar, names.session);
                Err((jar, Redirect::to(&to)).into_response())
            }
        }
    }
}

/// Whether a form post comes from one of our pages, as far as the
/// browser says: Sec-Fetch-Site, and Origin against our Host (which the
/// host check has made one of our names).
pub(crate) fn from_our_pages(headers: &HeaderMap) -> bool {
    let site_ok = headers
        .get("sec-fetch-site")
        .is_none_or(|v| matches!(v.as_bytes(), b"same-origin" | b"none"));
    let origin_ok = match headers.get(header::ORIGIN) {
        None => true,
        Some(o) => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default();
            o.to_str()
                .ok()
                .and_then(|o| o.split_once("://"))
                .is_some_and(|(_, rest)| !host.is_empty() && rest.eq_ignore_ascii_case(host))
        }
    };
    site_ok && origin_ok
}

/// A state-changing request from one of our pages: the session's CSRF
/// token, and our origin. Some(the refusal) when it is not, or the
/// session may only read.
pub(crate) fn refuse_form(s: &Session, headers: &HeaderMap, csrf: &str) -> Option<Response> {
    if !from_our_pages(headers) {
        return Some(refused(
            s,
            "This form was sent from another site.",
            "Reload the console and try again.",
        ));
    }
    if !same_secret(&s.csrf, csrf) {
        return Some(refused(
            s,
            "This form has expired or did not come from the console.",
            "Reload the page and try again.",
        ));
    }
    if !s.admin() {
        return Some(refused(
            s,
            "This token may only read.",
            "Sign in with an admin token to change anything.",
        ));
    }
    None
}

pub(crate) fn flash(state: &Console, jar: &CookieJar) -> (CookieJar, Option<String>) {
    let name = cookie_names(state).flash;
    match jar.get(name) {
        Some(c) => {
            let text = percent_encoding::percent_decode_str(c.value())
                .decode_utf8_lossy()
                .into_owned();
            (drop_cookie(state, jar.clone(), name), Some(text))
        }
        None => (jar.clone(), None),
    }
}

/// Redirect after a change, with a message for the next page.
pub(crate) fn done(state: &Console, jar: CookieJar, to: &str, message: &str) -> Response {
    let c = cookie(state, cookie_names(state).flash, urlencode(message), 60);
    (jar.add(c), Redirect::to(to)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::same_secret;

    fn who(name: &str) -> Identity {
        Identity {
            name: name.into(),
            role: Role::Admin,
        }
    }

    #[test]
    fn a_session_lasts_until_it_expires_or_ends() {
        let s = Sessions::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        let (id, info) = s.start(&who("alice"), t0);
        assert_eq!(&*info.token, "alice");
        assert_eq!(
            s.get(&id, t0 + Duration::from_secs(59)).unwrap().csrf,
            info.csrf
        );
        assert!(s.get(&id, t0 + Duration::from_secs(60)).is_none());
        assert!(s.get(&id, t0).is_none(), "an expired session is gone");

        let (id, _) = s.start(&who("alice"), t0);
        assert!(s.end(&id));
        assert!(s.get(&id, t0).is_none());
        assert!(!s.end(&id));
        assert!(s.get("", t0).is_none());
    }

    #[test]
    fn sessions_have_ids_and_csrf_tokens_of_their_own() {
        let s = Sessions::default();
        let now = Instant::now();
        let (a, ia) = s.start(&who("alice"), now);
        let (b, ib) = s.start(&who("alice"), now);
        assert_ne!(a, b);
        assert_ne!(ia.csrf, ib.csrf);
        assert!(same_secret(&ia.csrf, &ia.csrf.clone()));
        assert!(!same_secret(&ia.csrf, &ib.csrf));
        assert!(a.len() >= 43, "{a}");
    }

    #[test]
    fn the_store_is_bounded() {
        let s = Sessions::new(Duration::from_secs(60), 3);
        let t0 = Instant::now();
        let ids: Vec<String> = (0..5)
            .map(|i| s.start(&who("a"), t0 + Duration::from_secs(i)).0)
            .collect();
        assert_eq!(s.len(), 3);
        // The oldest made room.
        assert!(s.get(&ids[0], t0).is_none() && s.get(&ids[1], t0).is_none());
        assert!(s.get(&ids[4], t0).is_some());
    }

    #[test]
    fn forms_come_from_our_pages() {
        let h = |pairs: &[(&str, &str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(
                    header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            m
        };
        let host = ("host", "127.0.0.1:8090");
        assert!(from_our_pages(&h(&[host])));
        assert!(from_our_pages(&h(&[
            host,
            ("origin", "http://127.0.0.1:8090")
        ])));
        assert!(from_our_pages(&h(&[
            host,
            ("sec-fetch-site", "same-origin")
        ])));
        for foreign in [
            h(&[host, ("origin", "https://evil.example")]),
            h(&[host, ("origin", "null")]),
            h(&[host, ("origin", "http://127.0.0.1:8091")]),
            h(&[("origin", "http://127.0.0.1:8090")]),
            h(&[host, ("sec-fetch-site", "cross-site")]),
            h(&[host, ("sec-fetch-site", "same-site")]),
        ] {
            assert!(!from_our_pages(&foreign), "{foreign:?}");
        }
    }
}
