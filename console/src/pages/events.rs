//! Events: the list by type, one event and its deliveries.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use crate::api;
use crate::store::EventFilter;

use super::deliveries::deliveries_table;
use super::session::Session;
use super::{failed, page, time, urlencode, AppState};

#[derive(Debug, Default, Deserialize)]
pub(crate) struct EventsForm {
    event_type: Option<String>,
    cursor: Option<String>,
}

pub(crate) async fn events(
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

pub(crate) async fn event_page(
    s: Session,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Response {
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
