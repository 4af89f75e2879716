//! Events, newest first, one event with its deliveries, redelivering an
//! event to every endpoint, and the event types seen.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Role;
use crate::store::{Delivery, Event, EventFilter, EventSummary, EventType};

use super::{
    bad_cursor, limit, next_cursor, shown_url, Admin, ApiResult, AppState, Caller, ErrorBody, Ids,
    Params, Requeued, UrlView,
};

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    pub event_type: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub items: Vec<EventSummary>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventDetail {
    pub event: Event,
    pub deliveries: Vec<Delivery>,
}

/// `<id>` of the page's last event.
pub fn next_event_cursor(items: &[EventSummary], limit: i64) -> Option<String> {
    next_cursor(items, limit, |e| e.id.to_string())
}

/// An events cursor (next_event_cursor's) read back.
pub fn event_cursor(c: Option<&str>) -> ApiResult<Option<i64>> {
    c.map(|c| c.parse().map_err(|_| bad_cursor())).transpose()
}

/// An event as `role` may see it: pg_webhook's own events (`webhook.*`)
/// name an endpoint's URL in `data.url`, shown as [`for_role`] shows it.
pub fn event_for_role(mut e: Event, role: Role) -> Event {
    if e.event_type.starts_with("webhook.") {
        if let Some(url) = e.payload.pointer_mut("/data/url") {
            if let Some(u) = url.as_str() {
                *url = serde_json::Value::String(shown_url(u, UrlView::of(role)));
            }
        }
    }
    e
}

#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventQuery),
    responses((status = 200, body = EventPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(crate) async fn list_events(
    _: Caller,
    State(s): State<AppState>,
    Params(q): Params<EventQuery>,
) -> ApiResult<Json<EventPage>> {
    let f = EventFilter {
        event_type: q.event_type.filter(|s| !s.is_empty()),
        since: q.since.filter(|s| !s.is_empty()),
        until: q.until.filter(|s| !s.is_empty()),
        after: event_cursor(q.cursor.as_deref().filter(|s| !s.is_empty()))?,
        limit: limit(q.limit)?,
    };
    let items = s.store.events(&f).await?;
    let next_cursor = next_event_cursor(&items, f.limit);
    Ok(Json(EventPage { items, next_cursor }))
}

#[utoipa::path(get, path = "/api/v1/events/{id}", tag = "events", params(("id" = i64, Path)),
    responses((status = 200, body = EventDetail), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(crate) async fn get_event(
    Caller(who): Caller,
    State(s): State<AppState>,
    Ids(id): Ids<i64>,
) -> ApiResult<Json<EventDetail>> {
    let event = event_for_role(s.store.event(id).await?, who.role);
    let deliveries = s.store.deliveries_of_event(id).await?;
    Ok(Json(EventDetail { event, deliveries }))
}

#[utoipa::path(post, path = "/api/v1/events/{id}/redeliver", tag = "events", params(("id" = i64, Path)),
    responses((status = 200, body = Requeued), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
pub(crate) async fn redeliver_event(
    Admin(who): Admin,
    State(s): State<AppState>,
    Ids(id): Ids<i64>,
) -> ApiResult<Json<Requeued>> {
    let requeued = s.act(&who).redeliver(id, None).await?;
    Ok(Json(Requeued { requeued }))
}

#[utoipa::path(get, path = "/api/v1/event-types", tag = "events",
    responses((status = 200, body = Vec<EventType>), (status = 401, body = ErrorBody)))]
pub(crate) async fn event_types(
    _: Caller,
    State(s): State<AppState>,
) -> ApiResult<Json<Vec<EventType>>> {
    Ok(Json(s.store.event_types().await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_checked_and_read_back_as_written() {
        assert_eq!(event_cursor(Some("7")).unwrap(), Some(7));
        assert!(event_cursor(Some("7.1")).is_err());
        // A full page's cursor is its last row's.
        let event = |id| EventSummary {
            id,
            event_type: "t".into(),
            created_at: String::new(),
            ordering_key: None,
            size: 0,
        };
        let page = [event(9), event(7)];
        let next = next_event_cursor(&page, 2);
        assert_eq!(event_cursor(next.as_deref()).unwrap(), Some(7));
        assert_eq!(next_event_cursor(&page, 3), None);
    }
}
