//! The web console: server-rendered HTML (maud escapes every value) with a
//! little plain JavaScript (local times, confirmations, copy buttons), its
//! assets embedded in the binary. Sign-in with a console token starts a
//! server-side session (session.rs) whose random id is kept in an
//! HttpOnly SameSite=Strict cookie; the sign-in form and every form that
//! changes something carry a CSRF token (the sign-in form's bound to a
//! short-lived cookie, the others to the session) and are refused from
//! another origin. The pages change things through the same action layer
//! as the API (actions.rs).
//!
//! One file a resource: `endpoints` (the overview, an endpoint's page and
//! form, the actions on it), `secrets`, `deliveries`, `events`, and
//! `login` (signing in and out); `session` has the sessions, the cookies
//! and the CSRF checks every form goes through; this one has the layout
//! the pages share, the assets and the routes.

mod deliveries;
mod endpoints;
mod events;
mod login;
mod secrets;
pub(crate) mod session;

use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;

use crate::api::ApiError;
use crate::store::Activity;
use crate::Console;

use session::Session;

pub(crate) type AppState = Arc<Console>;

pub(crate) const CSS: &str = include_str!("assets/console.css");

pub(crate) const JS: &str = include_str!("assets/console.js");

pub(crate) fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

pub(crate) fn refused(s: &Session, message: &str, hint: &str) -> Response {
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
pub(crate) fn failed(s: &Session, e: ApiError) -> Response {
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

/// What the console last found in the database (its start and every
/// /healthz set it), for the footer of every page; a process-wide fact, as
/// the database is one per console.
static FOUND: std::sync::RwLock<Option<crate::store::Installed>> = std::sync::RwLock::new(None);

pub(crate) fn found(installed: &crate::store::Installed) {
    if let Ok(mut f) = FOUND.write() {
        *f = Some(installed.clone());
    }
}

fn footer() -> Markup {
    let found = FOUND.read().ok().and_then(|f| f.clone());
    html! {
        footer.bottom {
            "pg_webhook console " (env!("CARGO_PKG_VERSION"))
            @if let Some(f) = found {
                " · database: " span.edition { (f.edition) " edition" } " " (f.version)
            } @else {
                " · database: not reached yet"
            }
        }
    }
}

pub(crate) fn page(
    title: &str,
    s: Option<&Session>,
    flash: Option<&str>,
    content: Markup,
) -> Markup {
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
                (footer())
            }
        }
    }
}

pub(crate) fn error_box(message: &str, hint: Option<&str>) -> Markup {
    html! {
        div.error role="alert" {
            strong { (message) }
            @if let Some(h) = hint { p.hint { (h) } }
        }
    }
}

pub(crate) fn time(ts: Option<&str>) -> Markup {
    match ts {
        Some(t) => {
            html! { time datetime=(t) { (t.replace('T', " ").get(..19).unwrap_or(t)) " UTC" } }
        }
        None => html! { span.muted { "—" } },
    }
}

pub(crate) fn pill(class: &str, text: &str) -> Markup {
    html! { span class={"pill " (class)} { (text) } }
}

pub(crate) fn http_status(code: Option<i32>) -> Markup {
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
pub(crate) fn sparkline(a: &Activity, width: u32, height: u32) -> Markup {
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

pub(crate) fn csrf_field(s: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(s.csrf); }
}

/// A one-button form that posts an action (with a confirmation when
/// `confirm` is given).
pub(crate) fn action(
    s: &Session,
    to: &str,
    label: &str,
    class: &str,
    confirm: Option<&str>,
) -> Markup {
    html! {
        form.inline method="post" action=(to) data-confirm=[confirm] {
            (csrf_field(s))
            button type="submit" class=(class) { (label) }
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    csrf: String,
}

pub(crate) async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        CSS,
    )
}

pub(crate) async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        JS,
    )
}

pub(crate) async fn not_found(s: Session) -> Response {
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
        .route("/", get(endpoints::overview))
        .route("/login", get(login::login_form).post(login::login))
        .route("/logout", post(login::logout))
        .route("/endpoints", post(endpoints::create_endpoint))
        .route("/endpoints/new", get(endpoints::new_endpoint))
        .route("/endpoints/{id}", get(endpoints::endpoint_page))
        .route(
            "/endpoints/{id}/edit",
            get(endpoints::edit_endpoint_form).post(endpoints::edit_endpoint),
        )
        .route("/endpoints/{id}/{action}", post(endpoints::endpoint_action))
        .route("/deliveries", get(deliveries::deliveries))
        .route(
            "/deliveries/{event_id}/{endpoint_id}",
            get(deliveries::delivery_page),
        )
        .route(
            "/deliveries/{event_id}/{endpoint_id}/redeliver",
            post(deliveries::redeliver),
        )
        .route("/events", get(events::events))
        .route("/events/{id}", get(events::event_page))
        .route("/assets/console.css", get(css))
        .route("/assets/console.js", get(js))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .fallback(not_found)
}
