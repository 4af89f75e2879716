//! Deliveries: the list and its filters, one delivery with its request
//! and attempts, redelivering it.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Form;
use axum_extra::extract::cookie::CookieJar;
use maud::{html, Markup};
use serde::Deserialize;

use crate::api::{self, ApiError, DeliveryQuery};
use crate::store::{Delivery, Endpoint};

use super::endpoints::known_types;
use super::session::{done, flash, refuse_form, Session};
use super::{action, failed, http_status, page, pill, time, urlencode, AppState, CsrfForm};

pub(crate) fn delivery_state(d: &Delivery) -> (&'static str, String) {
    match d.status.as_str() {
        "succeeded" => ("healthy", "Succeeded".into()),
        "dead" => ("failing", "Dead".into()),
        _ if d.in_flight => ("pending", "In flight".into()),
        _ if d.attempts > 0 => ("retrying", "Retrying".into()),
        _ => ("pending", "Pending".into()),
    }
}

pub(crate) fn deliveries_table(list: &[Delivery], with_endpoint: bool) -> Markup {
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
pub(crate) struct DeliveriesForm {
    endpoint_id: Option<String>,
    status: Option<String>,
    event_type: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
}

pub(crate) async fn deliveries(
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

pub(crate) async fn delivery_page(
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

pub(crate) fn is_standard(name: &str) -> bool {
    matches!(name, "content-type" | "user-agent") || name.starts_with("webhook-")
}

pub(crate) async fn redeliver(
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
