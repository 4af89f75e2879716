//! Endpoints: their settings, and the actions on them (enable, disable,
//! delete, test, replay). Their URLs as each role and the audit log see
//! them.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::auth::Role;
use crate::store::{Endpoint, EndpointChange};

use super::{Admin, ApiResult, AppState, Body, Caller, ErrorBody, Ids, Requeued};

/// `null` and absent apart: Some(None) for null, None for absent.
pub(crate) fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEndpoint {
    /// An absolute https:// URL (http:// where the database allows it).
    pub url: String,
    /// Patterns (default `["*"]`).
    pub event_types: Option<Vec<String>>,
    /// `whsec_` + base64 of at least 24 bytes; generated when absent.
    pub secret: Option<String>,
    pub description: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub headers: Option<serde_json::Value>,
    pub timeout_ms: Option<i32>,
    pub ordered: Option<bool>,
    pub max_in_flight: Option<i32>,
    pub rate_limit: Option<i32>,
    /// Delays between attempts in milliseconds (at most 100, each 10 ms
    /// to 30 days); absent: webhookd's schedule. `[]`: no retry.
    pub retry_schedule_ms: Option<Vec<i64>>,
    /// No retry is scheduled later than this after the event (at most
    /// 90 days); absent: no limit.
    pub retry_max_age_ms: Option<i64>,
}

impl From<NewEndpoint> for EndpointChange {
    fn from(n: NewEndpoint) -> Self {
        EndpointChange {
            url: Some(n.url),
            event_types: n.event_types,
            secret: n.secret,
            description: n.description.map(Some),
            headers: n.headers,
            timeout_ms: n.timeout_ms,
            ordered: n.ordered,
            max_in_flight: n.max_in_flight,
            rate_limit: n.rate_limit.map(Some),
            retry_schedule_ms: n.retry_schedule_ms.map(Some),
            retry_max_age_ms: n.retry_max_age_ms.map(Some),
        }
    }
}

/// Absent fields keep their value; `description: null` clears it,
/// `rate_limit: null` and `retry_max_age_ms: null` remove the limit and
/// `retry_schedule_ms: null` goes back to webhookd's schedule.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointUpdate {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    #[schema(value_type = Option<Object>)]
    pub headers: Option<serde_json::Value>,
    pub timeout_ms: Option<i32>,
    pub ordered: Option<bool>,
    pub max_in_flight: Option<i32>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i32>)]
    pub rate_limit: Option<Option<i32>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Vec<i64>>)]
    pub retry_schedule_ms: Option<Option<Vec<i64>>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>)]
    pub retry_max_age_ms: Option<Option<i64>>,
}

impl From<EndpointUpdate> for EndpointChange {
    fn from(u: EndpointUpdate) -> Self {
        EndpointChange {
            url: u.url,
            event_types: u.event_types,
            secret: None,
            description: u.description,
            headers: u.headers,
            timeout_ms: u.timeout_ms,
            ordered: u.ordered,
            max_in_flight: u.max_in_flight,
            rate_limit: u.rate_limit,
            retry_schedule_ms: u.retry_schedule_ms,
            retry_max_age_ms: u.retry_max_age_ms,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointCreated {
    pub endpoint: Endpoint,
    /// The signing secret; shown here once (and by reveal-secret).
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TestSent {
    /// The `webhook.test` event sent to this endpoint only.
    pub event_id: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Replay {
    /// Dead deliveries created at or after this time (RFC 3339) are
    /// requeued; `-infinity` for all.
    pub since: String,
}

/// Header values and the URL's query and userinfo hidden from read-only
/// tokens: they often carry a receiver's credentials.
pub fn for_role(mut e: Endpoint, role: Role) -> Endpoint {
    if role < Role::Admin {
        if let Some(obj) = e.headers.as_object_mut() {
            for v in obj.values_mut() {
                *v = serde_json::Value::String("(hidden)".into());
            }
        }
    }
    e.url = shown_url(&e.url, UrlView::of(role));
    e
}

/// How much of an endpoint's URL a reader sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlView {
    /// Admins, who can edit it: the URL as stored.
    Full,
    /// The read role: origin and path. Userinfo, query and fragment
    /// (where receivers' tokens often are) are replaced by a marker.
    Redacted,
    /// Log lines: the origin only.
    Origin,
}

impl UrlView {
    pub fn of(role: Role) -> UrlView {
        match role {
            Role::Admin => UrlView::Full,
            Role::Read => UrlView::Redacted,
        }
    }
}

/// Marks what `shown_url` left out.
pub const REDACTED: &str = "[redacted]";

/// An endpoint URL as `view` shows it: the one place that decides what of
/// a URL the read role (API and pages) and the console's log see.
pub fn shown_url(url: &str, view: UrlView) -> String {
    if view == UrlView::Full {
        return url.to_string();
    }
    let Ok(u) = url::Url::parse(url) else {
        return format!("{REDACTED} (not a URL)");
    };
    let mut out = format!("{}://", u.scheme());
    if view == UrlView::Redacted && (!u.username().is_empty() || u.password().is_some()) {
        out.push_str(REDACTED);
        out.push('@');
    }
    out.push_str(u.host_str().unwrap_or_default());
    if let Some(port) = u.port() {
        out.push_str(&format!(":{port}"));
    }
    if view == UrlView::Origin {
        return out;
    }
    out.push_str(u.path());
    if u.query().is_some() {
        out.push('?');
        out.push_str(REDACTED);
    }
    if u.fragment().is_some() {
        out.push('#');
        out.push_str(REDACTED);
    }
    out
}

#[utoipa::path(get, path = "/api/v1/endpoints", tag = "endpoints",
    responses((status = 200, body = Vec<Endpoint>), (status = 401, body = ErrorBody)))]
pub(crate) async fn list_endpoints(
    Caller(who): Caller,
    State(s): State<AppState>,
) -> ApiResult<Json<Vec<Endpoint>>> {
    let list = s.store.endpoints(None).await?;
    Ok(Json(
        list.into_iter().map(|e| for_role(e, who.role)).collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/endpoints", tag = "endpoints", request_body = NewEndpoint,
    responses((status = 201, body = EndpointCreated), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn create_endpoint(
    Admin(who): Admin,
    State(s): State<AppState>,
    Body(n): Body<NewEndpoint>,
) -> ApiResult<(StatusCode, Json<EndpointCreated>)> {
    let (id, secret) = s.act(&who).create_endpoint(n.into()).await?;
    let endpoint = s.store.endpoint(id).await?;
    Ok((
        StatusCode::CREATED,
        Json(EndpointCreated { endpoint, secret }),
    ))
}

#[utoipa::path(get, path = "/api/v1/endpoints/{id}", tag = "endpoints", params(("id" = i64, Path)),
    responses((status = 200, body = Endpoint), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(crate) async fn get_endpoint(
    Caller(who): Caller,
    State(s): State<AppState>,
    Ids(id): Ids<i64>,
) -> ApiResult<Json<Endpoint>> {
    Ok(Json(for_role(s.store.endpoint(id).await?, who.role)))
}

#[utoipa::path(patch, path = "/api/v1/endpoints/{id}", tag = "endpoints", params(("id" = i64, Path)),
    request_body = EndpointUpdate,
    responses((status = 200, body = Endpoint), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn update_endpoint(
    Admin(who): Admin,
    State(s): State<AppState>,
    Ids(id): Ids<i64>,
    Body(u): Body<EndpointUpdate>,
) -> ApiResult<Json<Endpoint>> {
    s.act(&who).alter_endpoint(id, u.into()).await?;
    Ok(Json(s.store.endpoint(id).await?))
}

#[utoipa::path(delete, path = "/api/v1/endpoints/{id}", tag = "endpoints", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
pub(crate) async fn delete_endpoint(
    Admin(who): Admin,
    State(s): State<AppState>,
    Ids(id): Ids<i64>,
) -> ApiResult<StatusCode> {
    s.act(&who).delete_endpoint(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/endpoints/{id}/enable", tag = "endpoints", params(("id" = i64, Path)),
    responses((status = 200, body = Endpoint), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
pub(crate) async fn enable_endpoint(
    Admin(who): Admin,
    State(s): State<AppState>,
    Ids(id): Ids<i64>,
) -> ApiResult<Json<Endpoint>> {
    s.act(&who).enable_endpoint(id, true).await?;
    Ok(Json(s.store.endpoint(id).await?))
}

#[utoipa::path(post, path = "/api/v1/endpoints/{id}/disable", tag = "endpoints", params(("id" = i64, Path)),
    responses((status = 200, body = Endpoint), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
pub(crate) async fn disable_endpoint(
    Admin(who): Admin,
    State(s): State<AppState>,
    Ids(id): Ids<i64>,
) -> ApiResult<Json<Endpoint>> {
    s.act(&who).enable_endpoint(id, false).await?;
    Ok(Json(s.store.endpoint(id).await?))
}

#[utoipa::path(post, path = "/api/v1/endpoints/{id}/test", tag = "endpoints", params(("id" = i64, Path)),
    responses((status = 202, body = TestSent), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn send_test(
    Admin(who): Admin,
    State(s): State<AppState>,
    Ids(id): Ids<i64>,
) -> ApiResult<(StatusCode, Json<TestSent>)> {
    let event_id = s.act(&who).send_test(id).await?;
    Ok((StatusCode::ACCEPTED, Json(TestSent { event_id })))
}

#[utoipa::path(post, path = "/api/v1/endpoints/{id}/replay", tag = "endpoints", params(("id" = i64, Path)),
    request_body = Replay,
    responses((status = 200, body = Requeued), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn replay(
    Admin(who): Admin,
    State(s): State<AppState>,
    Ids(id): Ids<i64>,
    Body(r): Body<Replay>,
) -> ApiResult<Json<Requeued>> {
    let requeued = s.act(&who).replay(id, &r.since).await?;
    Ok(Json(Requeued { requeued }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_tell_null_from_absent() {
        let u: EndpointUpdate = serde_json::from_str(r#"{"description": null}"#).unwrap();
        assert_eq!(u.description, Some(None));
        assert_eq!(u.rate_limit, None);
        let u: EndpointUpdate = serde_json::from_str(r#"{"rate_limit": 5}"#).unwrap();
        assert_eq!(u.rate_limit, Some(Some(5)));
        assert!(serde_json::from_str::<EndpointUpdate>(r#"{"colour": "red"}"#).is_err());
    }

    #[test]
    fn the_read_role_sees_origin_and_path_and_logs_the_origin() {
        let url = "https://user:pw@hooks.example.com:8443/in/abc?token=s3cret&x=1#frag";
        assert_eq!(shown_url(url, UrlView::Full), url);
        assert_eq!(
            shown_url(url, UrlView::Redacted),
            "https://[redacted]@hooks.example.com:8443/in/abc?[redacted]#[redacted]"
        );
        assert_eq!(
            shown_url(url, UrlView::Origin),
            "https://hooks.example.com:8443"
        );
        assert_eq!(
            shown_url("http://[::1]/a", UrlView::Redacted),
            "http://[::1]/a"
        );
        assert_eq!(
            shown_url("https://h/?", UrlView::Redacted),
            "https://h/?[redacted]"
        );
        assert!(!shown_url("not a url s3cret", UrlView::Redacted).contains("s3cret"));
        assert_eq!(UrlView::of(Role::Read), UrlView::Redacted);
        assert_eq!(UrlView::of(Role::Admin), UrlView::Full);
    }
}
