//! Deliveries, newest first, and one delivery with its event, its
//! request and its attempts; redelivering one.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Role;
use crate::store::{self, Attempt, Delivery, DeliveryFilter, Event};
use crate::Console;

use super::{
    bad_cursor, event_for_role, limit, next_cursor, shown_url, Admin, ApiResult, AppState, Caller,
    ErrorBody, Ids, Params, Requeued, UrlView,
};

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Succeeded,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Succeeded => "succeeded",
            Status::Dead => "dead",
        }
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    pub endpoint_id: Option<i64>,
    pub status: Option<Status>,
    /// An exact event type.
    pub event_type: Option<String>,
    /// Created at or after (RFC 3339).
    pub since: Option<String>,
    /// Created before (RFC 3339).
    pub until: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1 to 200, default 50.
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    /// Newest first.
    pub items: Vec<Delivery>,
    /// Pass as `cursor` for the next (older) page; null on the last.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryDetail {
    pub delivery: Delivery,
    pub event: Event,
    pub request: store::Request,
    /// Oldest first.
    pub attempts: Vec<Attempt>,
}

/// `<event_id>.<endpoint_id>` of the page's last delivery.
pub fn next_delivery_cursor(items: &[Delivery], limit: i64) -> Option<String> {
    next_cursor(items, limit, |d| {
        format!("{}.{}", d.event_id, d.endpoint_id)
    })
}

/// A deliveries cursor (next_delivery_cursor's) read back.
pub fn delivery_cursor(c: Option<&str>) -> ApiResult<Option<(i64, i64)>> {
    c.map(|c| {
        c.split_once('.')
            .and_then(|(e, p)| Some((e.parse().ok()?, p.parse().ok()?)))
            .ok_or_else(bad_cursor)
    })
    .transpose()
}

impl DeliveryQuery {
    pub fn filter(&self) -> ApiResult<DeliveryFilter> {
        Ok(DeliveryFilter {
            endpoint_id: self.endpoint_id,
            status: self.status.map(|s| s.as_str().to_string()),
            event_type: self.event_type.clone().filter(|s| !s.is_empty()),
            since: self.since.clone().filter(|s| !s.is_empty()),
            until: self.until.clone().filter(|s| !s.is_empty()),
            after: delivery_cursor(self.cursor.as_deref().filter(|s| !s.is_empty()))?,
            limit: limit(self.limit)?,
        })
    }
}

#[utoipa::path(get, path = "/api/v1/deliveries", tag = "deliveries", params(DeliveryQuery),
    responses((status = 200, body = DeliveryPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(crate) async fn list_deliveries(
    _: Caller,
    State(s): State<AppState>,
    Params(q): Params<DeliveryQuery>,
) -> ApiResult<Json<DeliveryPage>> {
    let f = q.filter()?;
    let items = s.store.deliveries(&f).await?;
    let next_cursor = next_delivery_cursor(&items, f.limit);
    Ok(Json(DeliveryPage { items, next_cursor }))
}

pub async fn delivery_detail(
    s: &Console,
    event_id: i64,
    endpoint_id: i64,
) -> ApiResult<DeliveryDetail> {
    let delivery = s.store.delivery_of(event_id, endpoint_id).await?;
    let event = s.store.event(event_id).await?;
    let endpoint = s.store.endpoint(endpoint_id).await?;
    let attempts = s.store.attempts(event_id, endpoint_id).await?;
    Ok(DeliveryDetail {
        delivery,
        event,
        request: store::request_of(&endpoint, event_id, s.facts.user_agent),
        attempts,
    })
}

#[utoipa::path(get, path = "/api/v1/deliveries/{event_id}/{endpoint_id}", tag = "deliveries",
    params(("event_id" = i64, Path), ("endpoint_id" = i64, Path)),
    responses((status = 200, body = DeliveryDetail), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(crate) async fn get_delivery(
    Caller(who): Caller,
    State(s): State<AppState>,
    Ids((event_id, endpoint_id)): Ids<(i64, i64)>,
) -> ApiResult<Json<DeliveryDetail>> {
    let mut d = delivery_detail(&s, event_id, endpoint_id).await?;
    if who.role < Role::Admin {
        for h in d.request.headers.iter_mut().skip(5) {
            h.value = "(hidden)".into();
        }
    }
    d.request.url = shown_url(&d.request.url, UrlView::of(who.role));
    d.event = event_for_role(d.event, who.role);
    Ok(Json(d))
}

#[utoipa::path(post, path = "/api/v1/deliveries/{event_id}/{endpoint_id}/redeliver", tag = "deliveries",
    params(("event_id" = i64, Path), ("endpoint_id" = i64, Path)),
    responses((status = 200, body = Requeued), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
pub(crate) async fn redeliver(
    Admin(who): Admin,
    State(s): State<AppState>,
    Ids((event_id, endpoint_id)): Ids<(i64, i64)>,
) -> ApiResult<Json<Requeued>> {
    let requeued = s.act(&who).redeliver(event_id, Some(endpoint_id)).await?;
    Ok(Json(Requeued { requeued }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_checked() {
        assert_eq!(delivery_cursor(Some("12.3")).unwrap(), Some((12, 3)));
        assert!(delivery_cursor(Some("12")).is_err());
        assert!(delivery_cursor(Some("a.b")).is_err());
        assert_eq!(delivery_cursor(None).unwrap(), None);
    }
}
