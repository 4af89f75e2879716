//! The overview of every endpoint, one endpoint's page, the form that
//! creates or edits one, and the actions on it.

use std::time::{Duration, SystemTime};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use axum_extra::extract::cookie::CookieJar;
use maud::{html, Markup};
use serde::Deserialize;

use crate::api::{self, ApiError, DeliveryQuery};
use crate::store::{Endpoint, EndpointChange, StoreError};
use crate::{Console, Facts};

use super::deliveries::deliveries_table;
use super::secrets::{self, secret_page};
use super::session::{done, flash, refuse_form, Session};
use super::{
    action, csrf_field, error_box, failed, http_status, page, pill, refused, sparkline, time,
    AppState,
};

/// How an endpoint is doing, at a glance.
pub(crate) fn endpoint_state(e: &Endpoint) -> (&'static str, &'static str) {
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

pub(crate) async fn overview(
    s: Session,
    State(state): State<AppState>,
    jar: CookieJar,
) -> Response {
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
pub(crate) struct EndpointForm {
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
pub(crate) fn duration_text(ms: i64) -> String {
    humantime::format_duration(Duration::from_millis(ms.max(0) as u64)).to_string()
}

/// Durations as typed in the form, comma separated (`5s, 5m, 1h 30m`),
/// read as webhookd reads `--retry-schedule`; in milliseconds.
pub(crate) fn durations_ms(facts: &Facts, name: &str, v: &str) -> Result<Vec<i64>, ApiError> {
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
pub(crate) fn clearable<T>(update: bool, v: Option<T>) -> Option<Option<T>> {
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

pub(crate) async fn known_types(state: &Console) -> Vec<String> {
    state
        .store
        .event_types()
        .await
        .map(|t| t.into_iter().map(|t| t.event_type).collect())
        .unwrap_or_default()
}

pub(crate) fn endpoint_form(
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

pub(crate) async fn new_endpoint(s: Session, State(state): State<AppState>) -> Response {
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

pub(crate) async fn create_endpoint(
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

pub(crate) async fn endpoint_page(
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

pub(crate) async fn edit_endpoint_form(
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

pub(crate) async fn edit_endpoint(
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
pub(crate) struct ActionForm {
    csrf: String,
    window: Option<String>,
}

/// The endpoint actions: test, enable, disable, delete, rotate-secret,
/// reveal-secret, replay.
pub(crate) async fn endpoint_action(
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
                done(
                    &state,
                    jar,
                    &back,
                    "Enabled: its pending deliveries go out now.",
                )
            }
            "disable" => {
                act.enable_endpoint(id, false).await?;
                done(
                    &state,
                    jar,
                    &back,
                    "Disabled: new events are not sent to it; pending deliveries wait.",
                )
            }
            "delete" => {
                act.delete_endpoint(id).await?;
                done(&state, jar, "/", &format!("Endpoint {id} deleted."))
            }
            "rotate-secret" => secrets::rotate(&act, &s, id).await?,
            "reveal-secret" => secrets::reveal(&act, &s, id).await?,
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
                done(
                    &state,
                    jar,
                    &back,
                    &format!("{n} dead deliveries requeued."),
                )
            }
            _ => return Err(StoreError::NotFound(format!("no action {what:?}"))),
        })
    }
    .await;
    result.unwrap_or_else(|e| failed(&s, e.into()))
}
