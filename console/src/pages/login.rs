//! Signing in with a console token, and out.

use std::time::{Instant, SystemTime};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use axum_extra::extract::cookie::CookieJar;
use maud::{html, Markup};
use serde::Deserialize;

use crate::actions::{self, Actor};
use crate::auth::{same_secret, LOGIN_FORM_SECONDS};
use crate::request::RequestContext;
use crate::Console;

use super::session::{
    cookie, cookie_names, drop_cookie, from_our_pages, Session, SESSION_LIFETIME,
};
use super::{error_box, page, refused, AppState, CsrfForm};

/// Where to go after signing in: a path of this console, read strictly;
/// anything else is `/`.
pub(crate) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if is_console_path(n) => n.to_string(),
        _ => "/".to_string(),
    }
}

/// A path of this site as a browser cannot read as another origin: `/`
/// then only unreserved characters and `/` (never `//`: no backslash, no
/// control character, no escape), and an optional query of RFC 3986
/// query characters whose escapes are of no control character.
pub(crate) fn is_console_path(n: &str) -> bool {
    const MAX: usize = 2048;
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    let (path, query) = match n.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (n, None),
    };
    let path_ok = path.starts_with('/')
        && !path.contains("//")
        && path.bytes().all(|b| unreserved(b) || b == b'/');
    let query_ok = query.is_none_or(|q| {
        let b = q.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'%' => {
                    let escaped = b
                        .get(i + 1..i + 3)
                        .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    match escaped {
                        Some(v) if v >= 0x20 && v != 0x7f => i += 3,
                        _ => return false,
                    }
                }
                c if unreserved(c) || b"!$&'()*+,;=:@/?".contains(&c) => i += 1,
                _ => return false,
            }
        }
        true
    });
    n.len() <= MAX && path_ok && query_ok
}

#[derive(Deserialize)]
pub(crate) struct NextQuery {
    next: Option<String>,
}

pub(crate) fn login_page(next: &str, form_token: &str, error: Option<&str>) -> Markup {
    page(
        "Sign in",
        None,
        None,
        html! {
            section.signin {
                h1 { "Sign in" }
                p.muted { "Use one of the console's tokens: an admin token or a read-only one." }
                @if let Some(e) = error { (error_box(e, None)) }
                form method="post" action="/login" {
                    input type="hidden" name="next" value=(next);
                    input type="hidden" name="login_csrf" value=(form_token);
                    label for="token" { "Token" }
                    input #token type="password" name="token" autocomplete="current-password" required autofocus;
                    button.primary type="submit" { "Sign in" }
                }
            }
        },
    )
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The sign-in page with a new form: its CSRF nonce in a short-lived
/// cookie, the nonce's HMAC in the form.
pub(crate) fn login_response(
    state: &Console,
    jar: CookieJar,
    status: StatusCode,
    next: &str,
    error: Option<&str>,
) -> (StatusCode, CookieJar, Markup) {
    let (nonce, form_token) = state.login_forms.issue(unix_now());
    let jar = jar.add(cookie(
        state,
        cookie_names(state).login,
        nonce,
        LOGIN_FORM_SECONDS as i64,
    ));
    (status, jar, login_page(next, &form_token, error))
}

pub(crate) async fn login_form(
    State(state): State<AppState>,
    jar: CookieJar,
    Query(q): Query<NextQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    login_response(&state, jar, StatusCode::OK, &next, None).into_response()
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    token: String,
    next: Option<String>,
    #[serde(default)]
    login_csrf: String,
}

pub(crate) async fn login(
    State(state): State<AppState>,
    ctx: axum::Extension<RequestContext>,
    headers: HeaderMap,
    jar: CookieJar,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = safe_next(f.next.as_deref());
    let names = cookie_names(&state);
    // Login CSRF: another site must not sign this browser in (as the
    // other site's token holder).
    if !from_our_pages(&headers) {
        let msg = "This sign-in form was sent from another site.";
        return login_response(&state, jar, StatusCode::FORBIDDEN, &next, Some(msg))
            .into_response();
    }
    let form_ok = jar.get(names.login).is_some_and(|c| {
        state
            .login_forms
            .check(c.value(), &f.login_csrf, unix_now())
    });
    if !form_ok {
        let msg = "This sign-in form has expired; sign in again.";
        return login_response(&state, jar, StatusCode::FORBIDDEN, &next, Some(msg))
            .into_response();
    }
    match actions::authenticate(&state, &f.token, &ctx, "sign-in") {
        Ok(who) => {
            // Always a new session (no fixation); a session this browser
            // had ends.
            if let Some(old) = jar.get(names.session) {
                state.sessions.end(old.value());
            }
            let (id, _) = state.sessions.start(&who, Instant::now());
            actions::signed_in(&Actor::of(&who, &ctx));
            let jar = drop_cookie(&state, jar, names.login).add(cookie(
                &state,
                names.session,
                id,
                SESSION_LIFETIME.as_secs() as i64,
            ));
            (jar, Redirect::to(&next)).into_response()
        }
        Err(actions::Refused::Blocked(b)) => {
            let msg = format!(
                "Too many wrong tokens from your address: try again in {} seconds.",
                b.seconds()
            );
            let mut r = login_response(
                &state,
                jar,
                StatusCode::TOO_MANY_REQUESTS,
                &next,
                Some(&msg),
            )
            .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(b.seconds()));
            r
        }
        Err(actions::Refused::Wrong) => {
            let msg = "That token is not valid.";
            login_response(&state, jar, StatusCode::UNAUTHORIZED, &next, Some(msg)).into_response()
        }
    }
}

pub(crate) async fn logout(
    s: Session,
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !from_our_pages(&headers) || !same_secret(&s.csrf, &f.csrf) {
        return refused(
            &s,
            "This form has expired.",
            "Reload the page and try again.",
        );
    }
    // Ended here: a copy of the cookie is worth nothing from now on.
    state.sessions.end(&s.id);
    actions::signed_out(&s.actor);
    (
        drop_cookie(&state, jar, cookie_names(&state).session),
        Redirect::to("/login"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_sign_in_only_console_paths_are_followed() {
        for ok in [
            "/",
            "/deliveries",
            "/endpoints/3",
            "/deliveries/12/3",
            "/deliveries?status=dead&endpoint_id=3",
            "/deliveries?since=2026-12-01+08%3A00%2B01",
            "/events?event_type=orders.insert&cursor=7",
        ] {
            assert_eq!(safe_next(Some(ok)), ok, "{ok}");
        }
        for bad in [
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\n/evil.example",
            "/\x0b/evil.example",
            "/\x00/evil.example",
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/\\/evil.example",
            "/%09/evil.example",
            "/%2F/evil.example",
            "/%5Cevil.example",
            "%2F%2Fevil.example",
            "https://evil.example",
            "evil.example",
            "/ /evil.example",
            "/deliveries/ok//evil.example",
            "/x?%0a",
            "/x?%7f",
            "/x?%zz",
            "/x?%+9",
            "/x?a b",
            "/é",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/");
        assert_eq!(safe_next(Some(&format!("/{}", "a".repeat(3000)))), "/");
    }
}
