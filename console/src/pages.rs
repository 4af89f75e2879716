//! The web console: server-rendered HTML (maud escapes every value) with a
//! little plain JavaScript (local times, confirmations, copy buttons), its
//! assets embedded in the binary. Sign-in with a console token starts a
//! server-side session (session.rs) whose random id is kept in an
//! HttpOnly SameSite=Strict cookie; the sign-in form and every form that
//! changes something carry a CSRF token (the sign-in form's bound to a
//! short-lived cookie, the others to the session) and are refused from
//! another origin. The pages change things through the same action layer
//! as the API (actions.rs).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;

use super::actions::{self, Actor};
use super::api::{self, ApiError, DeliveryQuery};
use super::auth::{same_secret, Role, LOGIN_FORM_SECONDS};
use super::request::{self, RequestContext};
use super::session::SESSION_LIFETIME;
use super::store::{Activity, Delivery, Endpoint, EndpointChange, EventFilter, StoreError};
use super::{Console, Facts};

type AppState = Arc<Console>;

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

// Cookies.

/// The console's cookies: the session's id, a message for the next page,
/// the sign-in form's CSRF nonce.
struct CookieNames {
    session: &'static str,
    flash: &'static str,
    login: &'static str,
}

const PLAIN_COOKIES: CookieNames = CookieNames {
    session: "pgwh_console",
    flash: "pgwh_flash",
    login: "pgwh_login",
};

/// Under --secure-cookie: the `__Host-` prefix, so the browser keeps them
/// only when set over HTTPS, Secure, with Path=/ and no Domain (no other
/// host, a sibling subdomain included, can plant one).
const HOST_COOKIES: CookieNames = CookieNames {
    session: "__Host-pgwh_console",
    flash: "__Host-pgwh_flash",
    login: "__Host-pgwh_login",
};

fn cookie_names(state: &Console) -> &'static CookieNames {
    if state.secure_cookie {
        &HOST_COOKIES
    } else {
        &PLAIN_COOKIES
    }
}

/// Every cookie of the console, with the same attributes (a removal too:
/// a `__Host-` cookie is only replaced by one as Secure).
fn cookie(state: &Console, name: &'static str, value: String, seconds: i64) -> Cookie<'static> {
    Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.secure_cookie)
        .max_age(cookie::time::Duration::seconds(seconds))
        .build()
}

fn drop_cookie(state: &Console, jar: CookieJar, name: &'static str) -> CookieJar {
    jar.remove(cookie(state, name, String::new(), 0))
}

// Sessions.

/// A signed-in browser: its session's id, role and CSRF token, and who
/// acts through it.
pub struct Session {
    id: String,
    role: Role,
    csrf: String,
    actor: Actor,
}

impl Session {
    fn admin(&self) -> bool {
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

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Where to go after signing in: a path of this console, read strictly;
/// anything else is `/`.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if is_console_path(n) => n.to_string(),
        _ => "/".to_string(),
    }
}

/// A path of this site as a browser cannot read as another origin: `/`
/// then only unreserved characters and `/` (never `//`: no backslash, no
/// control character, no escape), and an optional query of RFC 3986
/// query characters whose escapes are of no control character.
fn is_console_path(n: &str) -> bool {
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

/// Whether a form post comes from one of our pages, as far as the
/// browser says: Sec-Fetch-Site, and Origin against our Host (which the
/// host check has made one of our names).
fn from_our_pages(headers: &HeaderMap) -> bool {
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
fn refuse_form(s: &Session, headers: &HeaderMap, csrf: &str) -> Option<Response> {
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

fn refused(s: &Session, message: &str, hint: &str) -> Response {
    let body = page(
        "Not allowed",
        Some(s),
        None,
        html! { (error_box(message, Some(hint))) p { a href="/" { "Back to the endpoints" } } },
    );
    (StatusCode::FORBIDDEN, body).into_response()
}

/// An error of the SQL API (or the database) as a page with its status
/// (a server error's message is already the generic one, with the
/// request id).
fn failed(s: &Session, e: ApiError) -> Response {
    let body = page(
        "Error",
        Some(s),
        None,
        html! {
            h1 { "Something went wrong" }
            (error_box(&e.body.message, e.body.hint.as_deref()))
            p { a href="/" { "Back to the endpoints" } }
        },
    );
    (e.status, body).into_response()
}

fn flash(state: &Console, jar: &CookieJar) -> (CookieJar, Option<String>) {
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
fn done(state: &Console, jar: CookieJar, to: &str, message: &str) -> Response {
    let c = cookie(state, cookie_names(state).flash, urlencode(message), 60);
    (jar.add(c), Redirect::to(to)).into_response()
}

// Layout.

fn page(title: &str, s: Option<&Session>, flash: Option<&str>, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · pg_webhook" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { span.logo aria-hidden="true" { "⚡" } "pg_webhook" }
                    @if let Some(s) = s {
                        nav aria-label="Main" {
                            a href="/" { "Endpoints" }
                            a href="/deliveries" { "Deliveries" }
                            a href="/events" { "Events" }
                        }
                        span.who title="The token you signed in with" { (s.role.name()) }
                        form.inline method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" {
                    @if let Some(f) = flash {
                        div.flash role="status" { (f) }
                    }
                    (content)
                }
            }
        }
    }
}

fn error_box(message: &str, hint: Option<&str>) -> Markup {
    html! {
        div.error role="alert" {
            strong { (message) }
            @if let Some(h) = hint { p.hint { (h) } }
        }
    }
}

fn time(ts: Option<&str>) -> Markup {
    match ts {
        Some(t) => {
            html! { time datetime=(t) { (t.replace('T', " ").get(..19).unwrap_or(t)) " UTC" } }
        }
        None => html! { span.muted { "—" } },
    }
}

/// How an endpoint is doing, at a glance.
fn endpoint_state(e: &Endpoint) -> (&'static str, &'static str) {
    let h = &e.health;
    if !e.enabled {
        return ("disabled", "Disabled");
    }
    // The database's failing state (webhook.maintain()), or, before it
    // looked, the newest attempt.
    let failing = h.failing_since.is_some()
        || match (&h.last_failure_at, &h.last_success_at) {
            (Some(f), Some(s)) => f > s,
            (Some(_), None) => true,
            _ => false,
        };
    if failing {
        ("failing", "Failing")
    } else if h.last_success_at.is_some() {
        ("healthy", "Healthy")
    } else {
        ("idle", "No attempts yet")
    }
}

fn delivery_state(d: &Delivery) -> (&'static str, String) {
    match d.status.as_str() {
        "succeeded" => ("healthy", "Succeeded".into()),
        "dead" => ("failing", "Dead".into()),
        _ if d.in_flight => ("pending", "In flight".into()),
        _ if d.attempts > 0 => ("retrying", "Retrying".into()),
        _ => ("pending", "Pending".into()),
    }
}

fn pill(class: &str, text: &str) -> Markup {
    html! { span class={"pill " (class)} { (text) } }
}

fn http_status(code: Option<i32>) -> Markup {
    match code {
        Some(c) => {
            let class = match c {
                200..=299 => "healthy",
                400..=499 => "retrying",
                _ => "failing",
            };
            pill(class, &c.to_string())
        }
        None => html! { span.muted { "no answer" } },
    }
}

/// Attempts (grey) and failures (red) per 5-minute bucket over the last
/// hour, as an inline SVG.
fn sparkline(a: &Activity, width: u32, height: u32) -> Markup {
    let n = a.attempts.len().max(1) as u32;
    let max = a.attempts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let bar = width / n;
    let total: i64 = a.attempts.iter().sum();
    let failed: i64 = a.failures.iter().sum();
    let label = format!("Last hour: {total} attempts, {failed} failed");
    html! {
        svg.spark width=(width) height=(height) viewBox={"0 0 " (width) " " (height)} role="img" aria-label=(label) {
            title { (label) }
            @for (i, (att, fail)) in a.attempts.iter().zip(&a.failures).enumerate() {
                @let x = i as u32 * bar;
                @let h = ((*att as f64 / max) * f64::from(height - 2)).round().max(if *att > 0 { 2.0 } else { 0.0 });
                @let fh = if *att > 0 { h * (*fail as f64 / *att as f64) } else { 0.0 };
                rect.ok x=(x) y=(f64::from(height) - h) width=(bar.saturating_sub(1)) height=(h - fh) {}
                @if fh > 0.0 {
                    rect.bad x=(x) y=(f64::from(height) - fh) width=(bar.saturating_sub(1)) height=(fh) {}
                }
            }
            line x1="0" x2=(width) y1=(height - 1) y2=(height - 1) {}
        }
    }
}

fn csrf_field(s: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(s.csrf); }
}

/// A one-button form that posts an action (with a confirmation when
/// `confirm` is given).
fn action(s: &Session, to: &str, label: &str, class: &str, confirm: Option<&str>) -> Markup {
    html! {
        form.inline method="post" action=(to) data-confirm=[confirm] {
            (csrf_field(s))
            button type="submit" class=(class) { (label) }
        }
    }
}

// Sign-in.

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

fn login_page(next: &str, form_token: &str, error: Option<&str>) -> Markup {
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

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The sign-in page with a new form: its CSRF nonce in a short-lived
/// cookie, the nonce's HMAC in the form.
fn login_response(
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

async fn login_form(
    State(state): State<AppState>,
    jar: CookieJar,
    Query(q): Query<NextQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    login_response(&state, jar, StatusCode::OK, &next, None).into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    next: Option<String>,
    #[serde(default)]
    login_csrf: String,
}

async fn login(
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

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
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

// Endpoints.

async fn overview(s: Session, State(state): State<AppState>, jar: CookieJar) -> Response {
    let (jar, msg) = flash(&state, &jar);
    let endpoints: Vec<Endpoint> = match state.store.endpoints(None).await {
        Ok(list) => list.into_iter().map(|e| api::for_role(e, s.role)).collect(),
        Err(e) => return failed(&s, e.into()),
    };
    let enabled = endpoints.iter().filter(|e| e.enabled).count();
    let backlog: i64 = endpoints.iter().map(|e| e.health.backlog).sum();
    let dead: i64 = endpoints.iter().map(|e| e.health.dead).sum();
    let attempts: i64 = endpoints.iter().map(|e| e.health.attempts_last_hour).sum();
    let failures: i64 = endpoints.iter().map(|e| e.health.failures_last_hour).sum();
    let failing = endpoints
        .iter()
        .filter(|e| endpoint_state(e).0 == "failing")
        .count();
    let body = page(
        "Endpoints",
        Some(&s),
        msg.as_deref(),
        html! {
            div.titlebar {
                h1 { "Endpoints" }
                @if s.admin() { a.button.primary href="/endpoints/new" { "New endpoint" } }
            }
            div.cards {
                div.card { span.num { (enabled) " / " (endpoints.len()) } span.label { "enabled" } }
                div.card.(if failing > 0 { "bad" } else { "" }) { span.num { (failing) } span.label { "failing" } }
                div.card { span.num { (backlog) } span.label { "pending deliveries" } }
                div.card.(if dead > 0 { "bad" } else { "" }) {
                    a href="/deliveries?status=dead" { span.num { (dead) } span.label { "dead deliveries" } }
                }
                div.card {
                    span.num { @if attempts > 0 { (format!("{:.1} %", 100.0 * (attempts - failures) as f64 / attempts as f64)) } @else { "—" } }
                    span.label { "success, last hour" }
                }
            }
            @if endpoints.is_empty() {
                p.empty { "No endpoints yet." @if s.admin() { " " a href="/endpoints/new" { "Create the first one" } "." } }
            } @else {
                table.list {
                    thead { tr {
                        th { "State" } th { "Endpoint" } th { "Events" } th.num { "Pending" } th.num { "Dead" }
                        th.num { "Success (1 h)" } th { "Last hour" } th { "Last success" } th { "Last failure" }
                    } }
                    tbody {
                        @for e in &endpoints {
                            @let (class, label) = endpoint_state(e);
                            tr {
                                td { (pill(class, label)) }
                                td {
                                    a.strong href={"/endpoints/" (e.id)} { (e.description.as_deref().unwrap_or("Endpoint")) " #" (e.id) }
                                    div.url { (e.url) }
                                }
                                td { @for t in &e.event_types { span.chip { (t) } } }
                                td.num { (e.health.backlog) }
                                td.num { @if e.health.dead > 0 { a.bad href={"/deliveries?status=dead&endpoint_id=" (e.id)} { (e.health.dead) } } @else { "0" } }
                                td.num { @match e.health.success_rate_last_hour { Some(r) => (format!("{:.1} %", r * 100.0)), None => span.muted { "—" } } }
                                td { (sparkline(&e.health.activity, 96, 24)) }
                                td { (time(e.health.last_success_at.as_deref())) }
                                td { (time(e.health.last_failure_at.as_deref())) }
                            }
                        }
                    }
                }
            }
        },
    );
    (jar, body).into_response()
}

/// The endpoint form's fields, as typed (kept to show the form again
/// with what was entered when the SQL API refuses it).
#[derive(Debug, Default, Deserialize)]
struct EndpointForm {
    csrf: String,
    url: String,
    event_types: String,
    description: String,
    headers: String,
    timeout_ms: String,
    #[serde(default)]
    ordered: Option<String>,
    max_in_flight: String,
    rate_limit: String,
    #[serde(default)]
    retry_schedule: String,
    #[serde(default)]
    retry_max_age: String,
    #[serde(default)]
    secret: String,
}

/// Milliseconds as the form shows them: `90s`, `1h 30m`.
fn duration_text(ms: i64) -> String {
    humantime::format_duration(Duration::from_millis(ms.max(0) as u64)).to_string()
}

/// Durations as typed in the form, comma separated (`5s, 5m, 1h 30m`),
/// read as webhookd reads `--retry-schedule`; in milliseconds.
fn durations_ms(facts: &Facts, name: &str, v: &str) -> Result<Vec<i64>, ApiError> {
    let bad = |why: String| {
        ApiError::bad_request(
            format!("{name}: {why}"),
            Some("Durations read like 30s, 5m, 2h or 1h 30m, comma separated."),
        )
    };
    (facts.parse_schedule)(v)
        .map_err(bad)?
        .into_iter()
        .map(|d| i64::try_from(d.as_millis()).map_err(|_| bad(format!("{d:?} is too long"))))
        .collect()
}

/// A field left empty in the form: cleared on update, the SQL API's
/// default on create.
fn clearable<T>(update: bool, v: Option<T>) -> Option<Option<T>> {
    if update {
        Some(v)
    } else {
        v.map(Some)
    }
}

impl EndpointForm {
    fn of(e: &Endpoint) -> Self {
        EndpointForm {
            csrf: String::new(),
            url: e.url.clone(),
            event_types: e.event_types.join(", "),
            description: e.description.clone().unwrap_or_default(),
            headers: if e.headers.as_object().is_some_and(|o| o.is_empty()) {
                String::new()
            } else {
                serde_json::to_string_pretty(&e.headers).unwrap_or_default()
            },
            timeout_ms: e.timeout_ms.to_string(),
            ordered: e.ordered.then(|| "on".to_string()),
            max_in_flight: e.max_in_flight.to_string(),
            rate_limit: e.rate_limit.map(|r| r.to_string()).unwrap_or_default(),
            retry_schedule: match &e.retry_schedule_ms {
                Some(s) if s.is_empty() => "none".into(),
                Some(s) => s
                    .iter()
                    .map(|ms| duration_text(*ms))
                    .collect::<Vec<_>>()
                    .join(", "),
                None => String::new(),
            },
            retry_max_age: e.retry_max_age_ms.map(duration_text).unwrap_or_default(),
            secret: String::new(),
        }
    }

    /// The change the form asks for. Empty numbers keep the SQL API's
    /// defaults (create) or clear the value (update: no rate limit).
    fn change(&self, update: bool, facts: &Facts) -> Result<EndpointChange, ApiError> {
        let number = |name: &str, v: &str| -> Result<Option<i32>, ApiError> {
            let v = v.trim();
            if v.is_empty() {
                return Ok(None);
            }
            v.parse()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("{name} must be a whole number"), None))
        };
        let headers = match self.headers.trim() {
            "" => update.then(|| serde_json::json!({})),
            h => Some(serde_json::from_str(h).map_err(|e| {
                ApiError::bad_request(
                    format!("headers are not valid JSON: {e}"),
                    Some(r#"Example: {"authorization": "Bearer abc"}"#),
                )
            })?),
        };
        let types: Vec<String> = self
            .event_types
            .split([',', '\n', ' '])
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect();
        // Empty: webhookd's schedule; `none`: no retry.
        let schedule = match self.retry_schedule.trim() {
            "" => None,
            t if t.eq_ignore_ascii_case("none") => Some(Vec::new()),
            t => Some(durations_ms(facts, "retry schedule", t)?),
        };
        let max_age = match self.retry_max_age.trim() {
            "" => None,
            t => match durations_ms(facts, "retry max age", t)?[..] {
                [one] => Some(one),
                _ => return Err(ApiError::bad_request("retry max age: one duration", None)),
            },
        };
        Ok(EndpointChange {
            url: Some(self.url.trim().to_string()),
            event_types: Some(types),
            secret: Some(self.secret.trim().to_string()).filter(|s| !s.is_empty() && !update),
            description: Some(Some(self.description.trim().to_string()).filter(|d| !d.is_empty())),
            headers,
            timeout_ms: number("timeout", &self.timeout_ms)?,
            ordered: Some(self.ordered.is_some()),
            max_in_flight: number("max in flight", &self.max_in_flight)?,
            rate_limit: clearable(update, number("rate limit", &self.rate_limit)?),
            retry_schedule_ms: clearable(update, schedule),
            retry_max_age_ms: clearable(update, max_age),
        })
    }
}

async fn known_types(state: &Console) -> Vec<String> {
    state
        .store
        .event_types()
        .await
        .map(|t| t.into_iter().map(|t| t.event_type).collect())
        .unwrap_or_default()
}

fn endpoint_form(
    s: &Session,
    to: &str,
    f: &EndpointForm,
    types: &[String],
    facts: &Facts,
    creating: bool,
    error: Option<&ApiError>,
) -> Markup {
    html! {
        @if let Some(e) = error { (error_box(&e.body.message, e.body.hint.as_deref())) }
        form.stack method="post" action=(to) {
            (csrf_field(s))
            label for="url" { "URL" }
            input #url name="url" type="url" value=(f.url) required placeholder="https://example.com/webhooks";
            label for="event_types" { "Event types" span.muted { " — patterns, comma separated: " code { "*" } ", " code { "orders.*" } ", " code { "orders.insert" } } }
            input #event_types name="event_types" value=(f.event_types) list="known-types" placeholder="*";
            datalist #known-types { @for t in types { option value=(t) {} } }
            @if !types.is_empty() {
                p.muted.small { "Seen: " @for t in types { button.chip.add type="button" data-add-type=(t) { (t) } } }
            }
            label for="description" { "Description" }
            input #description name="description" value=(f.description);
            label for="headers" { "Extra headers " span.muted { "(a JSON object)" } }
            textarea #headers name="headers" rows="3" placeholder=r#"{"authorization": "Bearer …"}"# { (f.headers) }
            div.row {
                div { label for="timeout_ms" { "Timeout (ms)" } input #timeout_ms name="timeout_ms" inputmode="numeric" value=(f.timeout_ms) placeholder="15000"; }
                div { label for="max_in_flight" { "Max in flight" } input #max_in_flight name="max_in_flight" inputmode="numeric" value=(f.max_in_flight) placeholder="16"; }
                div { label for="rate_limit" { "Rate limit (per second)" } input #rate_limit name="rate_limit" inputmode="numeric" value=(f.rate_limit) placeholder="none"; }
            }
            div.row {
                div { label for="retry_schedule" { "Retry schedule " span.muted { "— delays, comma separated; empty: each webhookd's " code { "--retry-schedule" } " (its default shown: the console cannot see a running webhookd's flags); " code { "none" } ": no retry" } } input #retry_schedule name="retry_schedule" value=(f.retry_schedule) placeholder=(facts.default_retry_schedule.replace(',', ", ")); }
                div { label for="retry_max_age" { "Retry max age " span.muted { "— empty: no limit" } } input #retry_max_age name="retry_max_age" value=(f.retry_max_age) placeholder="3days"; }
            }
            label.check { input type="checkbox" name="ordered" checked[f.ordered.is_some()]; " Ordered: one delivery per ordering key at a time, in commit order" }
            @if creating {
                label for="secret" { "Signing secret " span.muted { "(optional: whsec_…; generated when empty)" } }
                input #secret name="secret" value=(f.secret) autocomplete="off";
            }
            div.actions {
                button.primary type="submit" { @if creating { "Create endpoint" } @else { "Save changes" } }
                a.button href=(if creating { "/".to_string() } else { to.trim_end_matches("/edit").to_string() }) { "Cancel" }
            }
        }
    }
}

async fn new_endpoint(s: Session, State(state): State<AppState>) -> Response {
    if !s.admin() {
        return refused(
            &s,
            "This token may only read.",
            "Sign in with the admin token to create endpoints.",
        );
    }
    let types = known_types(&state).await;
    let f = EndpointForm {
        event_types: "*".into(),
        ..Default::default()
    };
    page(
        "New endpoint",
        Some(&s),
        None,
        html! { h1 { "New endpoint" } (endpoint_form(&s, "/endpoints", &f, &types, &state.facts, true, None)) },
    )
    .into_response()
}

fn secret_page(s: &Session, title: &str, endpoint_id: i64, intro: &str, secret: &str) -> Markup {
    page(
        title,
        Some(s),
        None,
        html! {
            h1 { (title) }
            p { (intro) }
            div.secret {
                code #secret-value { (secret) }
                button.copy type="button" data-copy="secret-value" { "Copy" }
            }
            p.muted { "Give it to the receiver to verify signatures (Standard Webhooks). This page is the only place it is shown; it is not stored in your browser." }
            p { a.button.primary href={"/endpoints/" (endpoint_id)} { "Go to the endpoint" } }
        },
    )
}

async fn create_endpoint(
    s: Session,
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<EndpointForm>,
) -> Response {
    if let Some(r) = refuse_form(&s, &headers, &f.csrf) {
        return r;
    }
    let result = match f.change(false, &state.facts) {
        Ok(change) => state
            .act(&s.actor)
            .create_endpoint(change)
            .await
            .map_err(ApiError::from),
        Err(e) => Err(e),
    };
    match result {
        Ok((id, secret)) => {
            secret_page(&s, "Endpoint created", id, "Its signing secret:", &secret).into_response()
        }
        Err(e) if e.status.is_client_error() => {
            let types = known_types(&state).await;
            let body = page(
                "New endpoint",
                Some(&s),
                None,
                html! { h1 { "New endpoint" } (endpoint_form(&s, "/endpoints", &f, &types, &state.facts, true, Some(&e))) },
            );
            (e.status, body).into_response()
        }
        Err(e) => failed(&s, e),
    }
}

async fn endpoint_page(
    s: Session,
    State(state): State<AppState>,
    jar: CookieJar,
    Path(id): Path<i64>,
) -> Response {
    let (jar, msg) = flash(&state, &jar);
    let e = match state.store.endpoint(id).await {
        Ok(e) => api::for_role(e, s.role),
        Err(e) => return failed(&s, e.into()),
    };
    let recent = state
        .store
        .deliveries(
            &DeliveryQuery {
                endpoint_id: Some(id),
                limit: Some(20),
                ..Default::default()
            }
            .filter()
            .unwrap_or_default(),
        )
        .await
        .unwrap_or_default();
    let (class, label) = endpoint_state(&e);
    let base = format!("/endpoints/{id}");
    let h = &e.health;
    let body = page(
        &format!("Endpoint #{id}"),
        Some(&s),
        msg.as_deref(),
        html! {
            div.titlebar {
                div {
                    h1 { (e.description.as_deref().unwrap_or("Endpoint")) " #" (e.id) " " (pill(class, label)) }
                    div.url.big { (e.url) }
                    @if let Some(r) = &e.disabled_reason { p.muted { "Disabled: " (r) } }
                }
            }
            @if s.admin() {
                div.toolbar {
                    @if e.enabled {
                        (action(&s, &format!("{base}/test"), "Send test event", "", None))
                        (action(&s, &format!("{base}/disable"), "Disable", "", Some("Disable this endpoint? Events committed while it is disabled are not sent to it; deliveries already pending wait until it is enabled.")))
                    } @else {
                        (action(&s, &format!("{base}/enable"), "Enable", "primary", None))
                    }
                    a.button href={(base) "/edit"} { "Edit" }
                    (action(&s, &format!("{base}/rotate-secret"), "Rotate secret", "", Some("Rotate the signing secret? The old secret keeps signing beside the new one for 24 hours.")))
                    (action(&s, &format!("{base}/reveal-secret"), "Reveal secret", "", Some("Show the signing secret? Revealing it is logged.")))
                    (action(&s, &format!("{base}/delete"), "Delete", "danger", Some("Delete this endpoint with its deliveries and attempts? This cannot be undone.")))
                }
            }
            div.grid {
                section.panel {
                    h2 { "Health" }
                    (sparkline(&h.activity, 240, 48))
                    dl {
                        @if let Some(since) = &h.failing_since {
                            dt { "Failing since" } dd.bad { (time(Some(since))) }
                        }
                        dt { "Pending" } dd { (h.backlog) @if h.backlog > 0 { " (oldest " (time(h.oldest_pending_at.as_deref())) ")" } }
                        dt { "Dead" } dd { @if h.dead > 0 { a.bad href={"/deliveries?status=dead&endpoint_id=" (id)} { (h.dead) } } @else { "0" } }
                        dt { "Success, last hour" } dd { @match h.success_rate_last_hour { Some(r) => (format!("{:.1} % of {}", r * 100.0, h.attempts_last_hour)), None => "no attempts" } }
                        dt { "Last success" } dd { (time(h.last_success_at.as_deref())) }
                        dt { "Last failure" } dd { (time(h.last_failure_at.as_deref())) }
                        dt { "Last status" } dd { (http_status(h.last_status)) }
                    }
                    @if s.admin() && h.dead > 0 {
                        form.inline method="post" action={(base) "/replay"} data-confirm="Replay the dead deliveries? They are sent again from the start of the retry schedule." {
                            (csrf_field(&s))
                            label for="window" { "Replay dead deliveries of the last " }
                            select #window name="window" {
                                option value="3600" { "hour" }
                                option value="86400" selected { "24 hours" }
                                option value="604800" { "7 days" }
                                option value="all" { "retention period (all)" }
                            }
                            " "
                            button.primary type="submit" { "Replay dead" }
                        }
                    }
                }
                section.panel {
                    h2 { "Configuration" }
                    dl {
                        dt { "Event types" } dd { @for t in &e.event_types { span.chip { (t) } } }
                        dt { "Timeout" } dd { (e.timeout_ms) " ms" }
                        dt { "Max in flight" } dd { (e.max_in_flight) }
                        dt { "Rate limit" } dd { @match e.rate_limit { Some(r) => { (r) " per second" }, None => "none" } }
                        dt { "Ordered" } dd { (if e.ordered { "yes" } else { "no" }) }
                        dt { "Retry schedule" } dd {
                            @match &e.retry_schedule_ms {
                                Some(s) if s.is_empty() => "no retry",
                                Some(s) => { @for (i, ms) in s.iter().enumerate() { @if i > 0 { ", " } (duration_text(*ms)) } },
                                None => span.muted { "webhookd's" },
                            }
                        }
                        dt { "Retry max age" } dd { @match e.retry_max_age_ms { Some(ms) => (duration_text(ms)), None => span.muted { "no limit" } } }
                        dt { "Headers" } dd {
                            @if let Some(o) = e.headers.as_object() {
                                @if o.is_empty() { span.muted { "none" } }
                                @for (k, v) in o { div { code { (k) ": " (v.as_str().unwrap_or_default()) } } }
                            }
                        }
                        dt { "Created" } dd { (time(Some(&e.created_at))) }
                        dt { "Changed" } dd { (time(Some(&e.updated_at))) }
                    }
                }
            }
            section {
                div.titlebar { h2 { "Recent deliveries" } a href={"/deliveries?endpoint_id=" (id)} { "All deliveries →" } }
                (deliveries_table(&recent, false))
            }
        },
    );
    (jar, body).into_response()
}

async fn edit_endpoint_form(
    s: Session,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Response {
    if !s.admin() {
        return refused(
            &s,
            "This token may only read.",
            "Sign in with the admin token to change endpoints.",
        );
    }
    let e = match state.store.endpoint(id).await {
        Ok(e) => e,
        Err(e) => return failed(&s, e.into()),
    };
    let types = known_types(&state).await;
    page(
        &format!("Edit endpoint #{id}"),
        Some(&s),
        None,
        html! { h1 { "Edit endpoint #" (id) } (endpoint_form(&s, &format!("/endpoints/{id}/edit"), &EndpointForm::of(&e), &types, &state.facts, false, None)) },
    )
    .into_response()
}

async fn edit_endpoint(
    s: Session,
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    Path(id): Path<i64>,
    Form(f): Form<EndpointForm>,
) -> Response {
    if let Some(r) = refuse_form(&s, &headers, &f.csrf) {
        return r;
    }
    let result = match f.change(true, &state.facts) {
        Ok(change) => state
            .act(&s.actor)
            .alter_endpoint(id, change)
            .await
            .map_err(ApiError::from),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => done(&state, jar, &format!("/endpoints/{id}"), "Saved."),
        Err(e) if e.status.is_client_error() && e.status != StatusCode::NOT_FOUND => {
            let types = known_types(&state).await;
            let body = page(
                &format!("Edit endpoint #{id}"),
                Some(&s),
                None,
                html! { h1 { "Edit endpoint #" (id) } (endpoint_form(&s, &format!("/endpoints/{id}/edit"), &f, &types, &state.facts, false, Some(&e))) },
            );
            (e.status, body).into_response()
        }
        Err(e) => failed(&s, e),
    }
}

#[derive(Deserialize)]
struct ActionForm {
    csrf: String,
    window: Option<String>,
}

/// The endpoint actions: test, enable, disable, delete, rotate-secret,
/// reveal-secret, replay.
async fn endpoint_action(
    s: Session,
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    Path((id, what)): Path<(i64, String)>,
    Form(f): Form<ActionForm>,
) -> Response {
    if let Some(r) = refuse_form(&s, &headers, &f.csrf) {
        return r;
    }
    let back = format!("/endpoints/{id}");
    let act = state.act(&s.actor);
    let result: Result<Response, StoreError> = async {
        Ok(match what.as_str() {
            "test" => {
                let event = act.send_test(id).await?;
                done(&state, jar, &back, &format!("Test event {event} sent."))
            }
            "enable" => {
                act.enable_endpoint(id, true).await?;
                done(&state, jar, &back, "Enabled: its pending deliveries go out now.")
            }
            "disable" => {
                act.enable_endpoint(id, false).await?;
                done(&state, jar, &back, "Disabled: new events are not sent to it; pending deliveries wait.")
            }
            "delete" => {
                act.delete_endpoint(id).await?;
                done(&state, jar, "/", &format!("Endpoint {id} deleted."))
            }
            "rotate-secret" => {
                let secret = act.rotate_secret(id, None).await?;
                secret_page(
                    &s,
                    "Secret rotated",
                    id,
                    "The new signing secret signs from now on; the old one keeps signing beside it for 24 hours:",
                    &secret,
                )
                .into_response()
            }
            "reveal-secret" => {
                let secret = act.reveal_secret(id).await?;
                secret_page(&s, "Signing secret", id, "The endpoint's current signing secret:", &secret).into_response()
            }
            "replay" => {
                // A window the form does not offer is refused, never read
                // as "everything" (nor as a time before 1970, which
                // cannot be formatted).
                let since = match f.window.as_deref() {
                    Some("all") | None => "-infinity".to_string(),
                    Some(w) => match w
                        .parse::<u64>()
                        .ok()
                        .and_then(|secs| SystemTime::now().checked_sub(Duration::from_secs(secs)))
                        .filter(|t| *t >= SystemTime::UNIX_EPOCH)
                    {
                        Some(t) => humantime::format_rfc3339(t).to_string(),
                        None => {
                            return Err(StoreError::Refused {
                                sqlstate: "22023".into(),
                                message: format!("invalid replay window {w:?}"),
                                hint: Some("Choose one of the windows the form offers.".into()),
                            })
                        }
                    },
                };
                let n = act.replay(id, &since).await?;
                done(&state, jar, &back, &format!("{n} dead deliveries requeued."))
            }
            _ => return Err(StoreError::NotFound(format!("no action {what:?}"))),
        })
    }
    .await;
    result.unwrap_or_else(|e| failed(&s, e.into()))
}

// Deliveries.

fn deliveries_table(list: &[Delivery], with_endpoint: bool) -> Markup {
    html! {
        @if list.is_empty() {
            p.empty { "No deliveries." }
        } @else {
            table.list {
                thead { tr {
                    th { "State" } th { "Event" } th { "Type" }
                    @if with_endpoint { th { "Endpoint" } }
                    th.num { "Attempts" } th { "Last status" } th { "Last error" } th { "Created" } th { "Next attempt" }
                } }
                tbody {
                    @for d in list {
                        @let (class, label) = delivery_state(d);
                        tr {
                            td { a href={"/deliveries/" (d.event_id) "/" (d.endpoint_id)} { (pill(class, &label)) } }
                            td { a href={"/deliveries/" (d.event_id) "/" (d.endpoint_id)} { "#" (d.event_id) } }
                            td { code { (d.event_type) } }
                            @if with_endpoint { td { a href={"/endpoints/" (d.endpoint_id)} { "#" (d.endpoint_id) } } }
                            td.num { (d.attempts) }
                            td { @if d.attempts > 0 { (http_status(d.last_http_status)) } @else { span.muted { "—" } } }
                            td.error-cell { @if let Some(e) = &d.last_error { span title=(e) { (e.chars().take(80).collect::<String>()) } } }
                            td { (time(Some(&d.created_at))) }
                            td { @if d.status == "pending" { (time(d.next_attempt_at.as_deref())) } @else { span.muted { "—" } } }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct DeliveriesForm {
    endpoint_id: Option<String>,
    status: Option<String>,
    event_type: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
}

async fn deliveries(
    s: Session,
    State(state): State<AppState>,
    jar: CookieJar,
    Query(q): Query<DeliveriesForm>,
) -> Response {
    let (jar, msg) = flash(&state, &jar);
    let nonempty = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
    let endpoint_id = match nonempty(&q.endpoint_id)
        .map(|v| v.trim().parse::<i64>())
        .transpose()
    {
        Ok(v) => v,
        Err(_) => return failed(&s, ApiError::bad_request("endpoint must be an id", None)),
    };
    let status = match nonempty(&q.status).as_deref() {
        None => None,
        Some("pending") => Some(api::Status::Pending),
        Some("succeeded") => Some(api::Status::Succeeded),
        Some("dead") => Some(api::Status::Dead),
        Some(other) => {
            return failed(
                &s,
                ApiError::bad_request(
                    format!("unknown status {other:?}"),
                    Some("pending, succeeded or dead"),
                ),
            )
        }
    };
    let query = DeliveryQuery {
        endpoint_id,
        status,
        event_type: nonempty(&q.event_type),
        since: nonempty(&q.since),
        until: nonempty(&q.until),
        cursor: nonempty(&q.cursor),
        limit: Some(api::DEFAULT_LIMIT),
    };
    let result = match query.filter() {
        Ok(f) => state.store.deliveries(&f).await.map_err(ApiError::from),
        Err(e) => Err(e),
    };
    let list = match result {
        Ok(l) => l,
        Err(e) => return failed(&s, e),
    };
    let endpoints: Vec<Endpoint> = state
        .store
        .endpoints(None)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|e| api::for_role(e, s.role))
        .collect();
    let types = known_types(&state).await;
    let next = api::next_delivery_cursor(&list, api::DEFAULT_LIMIT).map(|c| {
        let mut params: Vec<(String, String)> = Vec::new();
        for (k, v) in [
            ("endpoint_id", &q.endpoint_id),
            ("status", &q.status),
            ("event_type", &q.event_type),
            ("since", &q.since),
            ("until", &q.until),
        ] {
            if let Some(v) = nonempty(v) {
                params.push((k.into(), v));
            }
        }
        params.push(("cursor".into(), c));
        let qs: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect();
        format!("/deliveries?{}", qs.join("&"))
    });
    let selected = |v: &Option<String>, x: &str| v.as_deref() == Some(x);
    let body = page(
        "Deliveries",
        Some(&s),
        msg.as_deref(),
        html! {
            h1 { "Deliveries" }
            form.filters method="get" action="/deliveries" {
                div { label for="f-endpoint" { "Endpoint" }
                    select #f-endpoint name="endpoint_id" {
                        option value="" { "All" }
                        @for e in &endpoints {
                            option value=(e.id) selected[endpoint_id == Some(e.id)] { "#" (e.id) " " (e.description.as_deref().unwrap_or(&e.url)) }
                        }
                    }
                }
                div { label for="f-status" { "Status" }
                    select #f-status name="status" {
                        option value="" { "All" }
                        option value="pending" selected[selected(&q.status, "pending")] { "Pending" }
                        option value="succeeded" selected[selected(&q.status, "succeeded")] { "Succeeded" }
                        option value="dead" selected[selected(&q.status, "dead")] { "Dead" }
                    }
                }
                div { label for="f-type" { "Event type" }
                    input #f-type name="event_type" list="known-types" value=(q.event_type.clone().unwrap_or_default());
                    datalist #known-types { @for t in &types { option value=(t) {} } }
                }
                div { label for="f-since" { "Since" } input #f-since name="since" value=(q.since.clone().unwrap_or_default()) placeholder="2026-12-01 08:00+01"; }
                div { label for="f-until" { "Until" } input #f-until name="until" value=(q.until.clone().unwrap_or_default()) placeholder="now"; }
                div.actions { button.primary type="submit" { "Filter" } a.button href="/deliveries" { "Clear" } }
            }
            (deliveries_table(&list, true))
            @if let Some(n) = next { p.pager { a.button href=(n) { "Older →" } } }
        },
    );
    (jar, body).into_response()
}

async fn delivery_page(
    s: Session,
    State(state): State<AppState>,
    jar: CookieJar,
    Path((event_id, endpoint_id)): Path<(i64, i64)>,
) -> Response {
    let (jar, msg) = flash(&state, &jar);
    let mut d = match api::delivery_detail(&state, event_id, endpoint_id).await {
        Ok(d) => d,
        Err(e) => return failed(&s, e),
    };
    d.request.url = api::shown_url(&d.request.url, api::UrlView::of(s.role));
    d.event = api::event_for_role(d.event, s.role);
    let (class, label) = delivery_state(&d.delivery);
    let payload = serde_json::to_string_pretty(&d.event.payload).unwrap_or_default();
    let body = page(
        &format!("Delivery of event #{event_id}"),
        Some(&s),
        msg.as_deref(),
        html! {
            div.titlebar {
                h1 { "Event #" (event_id) " → endpoint #" (endpoint_id) " " (pill(class, &label)) }
                @if s.admin() {
                    (action(&s, &format!("/deliveries/{event_id}/{endpoint_id}/redeliver"), "Redeliver", "primary",
                            Some("Send this event to this endpoint again, from the start of the retry schedule?")))
                }
            }
            div.grid {
                section.panel {
                    h2 { "Delivery" }
                    dl {
                        dt { "Event type" } dd { code { (d.delivery.event_type) } }
                        dt { "Endpoint" } dd { a href={"/endpoints/" (endpoint_id)} { "#" (endpoint_id) } " " span.url { (d.request.url) } }
                        dt { "Attempts" } dd { (d.delivery.attempts) }
                        dt { "Created" } dd { (time(Some(&d.delivery.created_at))) }
                        @if d.delivery.status == "pending" { dt { "Next attempt" } dd { (time(d.delivery.next_attempt_at.as_deref())) } }
                        dt { "Completed" } dd { (time(d.delivery.completed_at.as_deref())) }
                        @if let Some(k) = &d.event.ordering_key { dt { "Ordering key" } dd { code { (k) } } }
                    }
                }
                section.panel {
                    h2 { "Request" }
                    p { code { (d.request.method) " " (d.request.url) } }
                    table.kv {
                        @for h in &d.request.headers {
                            tr { th { (h.name) } td { code { @if s.admin() || is_standard(&h.name) { (h.value) } @else { "(hidden)" } } } }
                        }
                    }
                    p.muted.small { "webhook-timestamp and webhook-signature are made for each attempt and not stored; extra headers are the endpoint's current ones." }
                }
            }
            section.panel {
                div.titlebar { h2 { "Payload" } button.copy type="button" data-copy="payload" { "Copy" } }
                pre #payload.json { (payload) }
            }
            section {
                h2 { "Attempts" }
                @if d.attempts.is_empty() {
                    p.empty { "No attempt yet." }
                } @else {
                    table.list {
                        thead { tr { th.num { "#" } th { "When" } th { "Status" } th.num { "Duration" } th { "Error" } th { "Response" } th { "By" } } }
                        tbody {
                            @for a in &d.attempts {
                                tr {
                                    td.num { (a.attempt) }
                                    td { (time(Some(&a.attempted_at))) }
                                    td { (http_status(a.http_status)) }
                                    td.num { @if let Some(ms) = a.duration_ms { (format!("{ms:.0} ms")) } }
                                    td.error-cell { @if let Some(e) = &a.error { (e) } }
                                    td { @if let Some(r) = &a.response_excerpt { pre.excerpt { (r) } } }
                                    td.muted.small { (a.worker.as_deref().unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
            }
        },
    );
    (jar, body).into_response()
}

fn is_standard(name: &str) -> bool {
    matches!(name, "content-type" | "user-agent") || name.starts_with("webhook-")
}

async fn redeliver(
    s: Session,
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    Path((event_id, endpoint_id)): Path<(i64, i64)>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Some(r) = refuse_form(&s, &headers, &f.csrf) {
        return r;
    }
    match state
        .act(&s.actor)
        .redeliver(event_id, Some(endpoint_id))
        .await
    {
        Ok(_) => done(
            &state,
            jar,
            &format!("/deliveries/{event_id}/{endpoint_id}"),
            "Requeued: it goes out again now.",
        ),
        Err(e) => failed(&s, e.into()),
    }
}

// Events.

#[derive(Debug, Default, Deserialize)]
struct EventsForm {
    event_type: Option<String>,
    cursor: Option<String>,
}

async fn events(
    s: Session,
    State(state): State<AppState>,
    Query(q): Query<EventsForm>,
) -> Response {
    let after = match api::event_cursor(q.cursor.as_deref().filter(|c| !c.is_empty())) {
        Ok(a) => a,
        Err(e) => return failed(&s, e),
    };
    let f = EventFilter {
        event_type: q.event_type.clone().filter(|t| !t.trim().is_empty()),
        after,
        limit: api::DEFAULT_LIMIT,
        ..Default::default()
    };
    let list = match state.store.events(&f).await {
        Ok(l) => l,
        Err(e) => return failed(&s, e.into()),
    };
    let types = state.store.event_types().await.unwrap_or_default();
    let next = api::next_event_cursor(&list, api::DEFAULT_LIMIT).map(|c| match &f.event_type {
        Some(t) => format!(
            "/events?event_type={}&cursor={}",
            urlencode(t),
            urlencode(&c)
        ),
        None => format!("/events?cursor={}", urlencode(&c)),
    });
    page(
        "Events",
        Some(&s),
        None,
        html! {
            h1 { "Events" }
            form.filters method="get" action="/events" {
                div { label for="e-type" { "Event type" }
                    select #e-type name="event_type" {
                        option value="" { "All" }
                        @for t in &types {
                            option value=(t.event_type) selected[f.event_type.as_deref() == Some(t.event_type.as_str())] {
                                (t.event_type) @if t.tracked { " (tracked)" }
                            }
                        }
                    }
                }
                div.actions { button.primary type="submit" { "Filter" } }
            }
            @if list.is_empty() { p.empty { "No events." } } @else {
                table.list {
                    thead { tr { th.num { "Event" } th { "Type" } th { "Created" } th { "Ordering key" } th.num { "Size" } } }
                    tbody { @for e in &list { tr {
                        td.num { a href={"/events/" (e.id)} { "#" (e.id) } }
                        td { code { (e.event_type) } }
                        td { (time(Some(&e.created_at))) }
                        td { @if let Some(k) = &e.ordering_key { code { (k) } } }
                        td.num { (e.size) " B" }
                    } } }
                }
            }
            @if let Some(n) = next { p.pager { a.button href=(n) { "Older →" } } }
        },
    )
    .into_response()
}

async fn event_page(s: Session, State(state): State<AppState>, Path(id): Path<i64>) -> Response {
    let (event, deliveries) = match (
        state.store.event(id).await,
        state.store.deliveries_of_event(id).await,
    ) {
        (Ok(e), Ok(d)) => (api::event_for_role(e, s.role), d),
        (Err(e), _) | (_, Err(e)) => return failed(&s, e.into()),
    };
    let payload = serde_json::to_string_pretty(&event.payload).unwrap_or_default();
    page(
        &format!("Event #{id}"),
        Some(&s),
        None,
        html! {
            h1 { "Event #" (id) " " code { (event.event_type) } }
            p.muted { "Created " (time(Some(&event.created_at))) }
            section.panel {
                div.titlebar { h2 { "Payload" } button.copy type="button" data-copy="payload" { "Copy" } }
                pre #payload.json { (payload) }
            }
            section { h2 { "Deliveries" } (deliveries_table(&deliveries, true)) }
        },
    )
    .into_response()
}

// Assets.

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        CSS,
    )
}

async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        JS,
    )
}

async fn not_found(s: Session) -> Response {
    let body = page(
        "Not found",
        Some(&s),
        None,
        html! { h1 { "Not found" } p { a href="/" { "Back to the endpoints" } } },
    );
    (StatusCode::NOT_FOUND, body).into_response()
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(overview))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/endpoints", post(create_endpoint))
        .route("/endpoints/new", get(new_endpoint))
        .route("/endpoints/{id}", get(endpoint_page))
        .route(
            "/endpoints/{id}/edit",
            get(edit_endpoint_form).post(edit_endpoint),
        )
        .route("/endpoints/{id}/{action}", post(endpoint_action))
        .route("/deliveries", get(deliveries))
        .route("/deliveries/{event_id}/{endpoint_id}", get(delivery_page))
        .route(
            "/deliveries/{event_id}/{endpoint_id}/redeliver",
            post(redeliver),
        )
        .route("/events", get(events))
        .route("/events/{id}", get(event_page))
        .route("/assets/console.css", get(css))
        .route("/assets/console.js", get(js))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .fallback(not_found)
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
