//! The console's REST API under /api/v1, described by the OpenAPI 3.1
//! document at /api/v1/openapi.json (utoipa, from these handlers and
//! types). Bearer tokens only (no cookies: nothing here can be posted by
//! another site); errors are `{code, message, hint}` with the SQLSTATE the
//! SQL API answered, 4xx for anything the request got wrong.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::actions::{self, Actor};
use super::auth::{bearer, Role};
use super::request;
use super::store::{
    self, Attempt, Delivery, DeliveryFilter, Endpoint, EndpointChange, Event, EventFilter,
    EventSummary, EventType, StoreError,
};
use super::throttle::Blocked;
use super::Console;

type AppState = Arc<Console>;

/// Rows per page at most, and by default.
pub const MAX_LIMIT: i64 = 200;
pub const DEFAULT_LIMIT: i64 = 50;

// Errors.

/// An error answer: what went wrong in the SQL API's words.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A condition name: the SQLSTATE's (`invalid_parameter_value`,
    /// `no_data_found`, ...) or the console's own (`unauthorized`,
    /// `forbidden`, `invalid_request`, `not_found`, `unavailable`).
    pub code: String,
    pub message: String,
    pub hint: Option<String>,
    /// The SQLSTATE, when the database refused.
    #[schema(value_type = Option<String>)]
    pub sqlstate: Option<Box<str>>,
    /// On a 5xx: the request's id (also its `x-request-id` header), under
    /// which the console's log has what went wrong.
    #[schema(value_type = Option<String>)]
    pub request_id: Option<Box<str>>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
    /// Seconds, for a Retry-After header (429).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &str,
        message: impl Into<String>,
        hint: Option<&str>,
    ) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                code: code.into(),
                message: message.into(),
                hint: hint.map(str::to_string),
                sqlstate: None,
                request_id: None,
            },
            retry_after: None,
        }
    }

    /// A server error: the detail goes to the log under the request's id,
    /// the answer says only what kind of trouble it is and that id (a
    /// database's messages can name its tables, roles and settings).
    pub fn server(status: StatusCode, code: &str, detail: &dyn std::fmt::Display) -> Self {
        let id = request::current().map(|c| c.id.to_string());
        tracing::warn!(status = status.as_u16(), code, request_id = %id.as_deref().unwrap_or("-"),
            detail = %detail, "console: a request failed");
        let message = if status == StatusCode::SERVICE_UNAVAILABLE {
            "the database is unavailable or busy"
        } else {
            "internal error"
        };
        let hint = match &id {
            Some(id) => {
                format!("Try again; the console's log says what went wrong under request id {id}.")
            }
            None => "Try again; the console's log says what went wrong.".to_string(),
        };
        let mut e = Self::new(status, code, message, Some(&hint));
        e.body.request_id = id.map(Into::into);
        e
    }

    /// Too many wrong tokens from this address.
    pub fn too_many(b: Blocked) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "too many wrong tokens from this address",
            Some("Wait for Retry-After's seconds, then try again with a valid token."),
        );
        e.retry_after = Some(u32::try_from(b.seconds()).unwrap_or(u32::MAX));
        e
    }

    pub fn bad_request(message: impl Into<String>, hint: Option<&str>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message, hint)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a bearer token is required",
            Some("Send Authorization: Bearer <token>, one of the console's tokens."),
        )
    }

    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this token may only read",
            Some("Changes, repairs and secrets need the admin token."),
        )
    }
}

/// The condition name of the SQLSTATEs the SQL API raises, and the HTTP
/// status each answers with: the request's fault is a 4xx, never a 5xx.
fn condition(sqlstate: &str) -> (StatusCode, &'static str) {
    let named = match sqlstate {
        "22023" => Some("invalid_parameter_value"),
        "22004" => Some("null_value_not_allowed"),
        "22P02" => Some("invalid_text_representation"),
        "22007" => Some("invalid_datetime_format"),
        "22008" => Some("datetime_field_overflow"),
        "22003" => Some("numeric_value_out_of_range"),
        "22021" => Some("character_not_in_repertoire"),
        "22001" => Some("string_data_right_truncation"),
        "22P05" => Some("untranslatable_character"),
        "22025" => Some("invalid_escape_sequence"),
        "2202E" => Some("array_subscript_error"),
        "22012" => Some("division_by_zero"),
        "22030" | "22032" => Some("invalid_json_text"),
        "23505" => Some("unique_violation"),
        "23503" => Some("foreign_key_violation"),
        "23514" => Some("check_violation"),
        "23502" => Some("not_null_violation"),
        "P0002" => Some("no_data_found"),
        "42501" => Some("insufficient_privilege"),
        "55000" => Some("object_not_in_prerequisite_state"),
        "54000" => Some("program_limit_exceeded"),
        "57014" => Some("query_canceled"),
        "55P03" => Some("lock_not_available"),
        "40001" => Some("serialization_failure"),
        "40P01" => Some("deadlock_detected"),
        _ => None,
    };
    let class = &sqlstate[..sqlstate.len().min(2)];
    let status = match (sqlstate, class) {
        ("P0002", _) => StatusCode::NOT_FOUND,
        ("42501", _) => StatusCode::FORBIDDEN,
        ("55000", _) | (_, "23") => StatusCode::CONFLICT,
        (_, "22") | ("54000", _) => StatusCode::BAD_REQUEST,
        // Busy: a timeout, a lock, a conflict with another transaction.
        ("57014" | "55P03" | "40001" | "40P01", _) | (_, "08") | (_, "53") | (_, "57") => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let name = named.unwrap_or(match class {
        "22" => "data_exception",
        "23" => "integrity_constraint_violation",
        "08" => "connection_exception",
        "53" => "insufficient_resources",
        _ => "database_error",
    });
    (status, name)
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Refused {
                sqlstate,
                message,
                hint,
            } => {
                let (status, code) = condition(&sqlstate);
                if status.is_server_error() {
                    let detail = format!("SQLSTATE {sqlstate}: {message}");
                    return ApiError::server(status, code, &detail);
                }
                ApiError {
                    status,
                    body: ErrorBody {
                        code: code.into(),
                        message,
                        hint,
                        sqlstate: Some(sqlstate.into()),
                        request_id: None,
                    },
                    retry_after: None,
                }
            }
            StoreError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "not_found", m, None),
            StoreError::Unavailable(m) => {
                ApiError::server(StatusCode::SERVICE_UNAVAILABLE, "unavailable", &m)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(s));
        }
        r
    }
}

type ApiResult<T> = Result<T, ApiError>;

// Extractors: every rejection is an ApiError (JSON), never axum's text.

/// Who calls, from the bearer token (never a cookie: a session's cookie
/// is no token). A wrong token counts against the client's address;
/// while the address is blocked its tokens are not even compared.
pub struct Caller(pub Actor);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ctx = request::of_parts(parts);
        let h = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let Some(presented) = bearer(h) else {
            return Err(ApiError::unauthorized());
        };
        match actions::authenticate(state, presented, &ctx, "bearer") {
            Ok(who) => Ok(Caller(Actor::of(&who, &ctx))),
            Err(actions::Refused::Blocked(b)) => Err(ApiError::too_many(b)),
            Err(actions::Refused::Wrong) => Err(ApiError::unauthorized()),
        }
    }
}

/// A caller with an admin token.
pub struct Admin(pub Actor);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let who = Caller::from_request_parts(parts, state).await?.0;
        match who.role {
            Role::Admin => Ok(Admin(who)),
            Role::Read => Err(ApiError::forbidden()),
        }
    }
}

/// A JSON body (any content type: bearer tokens, not cookies, guard the API).
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text(), None))?;
        let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
            &b"{}"[..]
        } else {
            &bytes[..]
        };
        serde_json::from_slice(bytes)
            .map(Body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}"), None))
    }
}

pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Params(q))
            .map_err(|e| ApiError::bad_request(e.body_text(), None))
    }
}

pub struct Ids<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Ids<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(p)| Ids(p))
            .map_err(|e| ApiError::bad_request(e.body_text(), Some("Ids are integers.")))
    }
}

// Requests and answers.

/// `null` and absent apart: Some(None) for null, None for absent.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
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

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    /// How long the old secrets keep signing beside the new one (default 24 hours).
    pub overlap_seconds: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Secret {
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

#[derive(Debug, Serialize, ToSchema)]
pub struct Requeued {
    /// Deliveries made pending again.
    pub requeued: i32,
}

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
pub struct DeliveryPage {
    /// Newest first.
    pub items: Vec<Delivery>,
    /// Pass as `cursor` for the next (older) page; null on the last.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub items: Vec<EventSummary>,
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

#[derive(Debug, Serialize, ToSchema)]
pub struct EventDetail {
    pub event: Event,
    pub deliveries: Vec<Delivery>,
}

pub fn limit(l: Option<i64>) -> ApiResult<i64> {
    match l.unwrap_or(DEFAULT_LIMIT) {
        l @ 1..=MAX_LIMIT => Ok(l),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_parameter_value",
            format!("limit must be between 1 and {MAX_LIMIT}"),
            Some("Page through longer lists with next_cursor."),
        )),
    }
}

fn bad_cursor() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_parameter_value",
        "invalid cursor",
        Some("Pass the next_cursor of a previous page unchanged."),
    )
}

/// The cursor of the page after `items`, a page of `limit` rows at most:
/// its last row's (`of`), None on the last page.
fn next_cursor<T>(items: &[T], limit: i64, of: impl Fn(&T) -> String) -> Option<String> {
    if items.len() as i64 == limit {
        items.last().map(of)
    } else {
        None
    }
}

/// `<event_id>.<endpoint_id>` of the page's last delivery.
pub fn next_delivery_cursor(items: &[Delivery], limit: i64) -> Option<String> {
    next_cursor(items, limit, |d| {
        format!("{}.{}", d.event_id, d.endpoint_id)
    })
}

/// `<id>` of the page's last event.
pub fn next_event_cursor(items: &[EventSummary], limit: i64) -> Option<String> {
    next_cursor(items, limit, |e| e.id.to_string())
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

/// An events cursor (next_event_cursor's) read back.
pub fn event_cursor(c: Option<&str>) -> ApiResult<Option<i64>> {
    c.map(|c| c.parse().map_err(|_| bad_cursor())).transpose()
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

// Handlers.

#[utoipa::path(get, path = "/api/v1/endpoints", tag = "endpoints",
    responses((status = 200, body = Vec<Endpoint>), (status = 401, body = ErrorBody)))]
async fn list_endpoints(
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
async fn create_endpoint(
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
async fn get_endpoint(
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
async fn update_endpoint(
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
async fn delete_endpoint(
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
async fn enable_endpoint(
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
async fn disable_endpoint(
    Admin(who): Admin,
    State(s): State<AppState>,
    Ids(id): Ids<i64>,
) -> ApiResult<Json<Endpoint>> {
    s.act(&who).enable_endpoint(id, false).await?;
    Ok(Json(s.store.endpoint(id).await?))
}

#[utoipa::path(post, path = "/api/v1/endpoints/{id}/rotate-secret", tag = "endpoints", params(("id" = i64, Path)),
    request_body(content = Option<Rotate>),
    responses((status = 200, body = Secret), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn rotate_secret(
    Admin(who): Admin,
    State(s): State<AppState>,
    Ids(id): Ids<i64>,
    Body(r): Body<Rotate>,
) -> ApiResult<Json<Secret>> {
    let secret = s.act(&who).rotate_secret(id, r.overlap_seconds).await?;
    Ok(Json(Secret { secret }))
}

#[utoipa::path(post, path = "/api/v1/endpoints/{id}/reveal-secret", tag = "endpoints", params(("id" = i64, Path)),
    responses((status = 200, body = Secret), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
async fn reveal_secret(
    Admin(who): Admin,
    State(s): State<AppState>,
    Ids(id): Ids<i64>,
) -> ApiResult<Json<Secret>> {
    let secret = s.act(&who).reveal_secret(id).await?;
    Ok(Json(Secret { secret }))
}

#[utoipa::path(post, path = "/api/v1/endpoints/{id}/test", tag = "endpoints", params(("id" = i64, Path)),
    responses((status = 202, body = TestSent), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn send_test(
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
async fn replay(
    Admin(who): Admin,
    State(s): State<AppState>,
    Ids(id): Ids<i64>,
    Body(r): Body<Replay>,
) -> ApiResult<Json<Requeued>> {
    let requeued = s.act(&who).replay(id, &r.since).await?;
    Ok(Json(Requeued { requeued }))
}

#[utoipa::path(get, path = "/api/v1/deliveries", tag = "deliveries", params(DeliveryQuery),
    responses((status = 200, body = DeliveryPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_deliveries(
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
async fn get_delivery(
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
async fn redeliver(
    Admin(who): Admin,
    State(s): State<AppState>,
    Ids((event_id, endpoint_id)): Ids<(i64, i64)>,
) -> ApiResult<Json<Requeued>> {
    let requeued = s.act(&who).redeliver(event_id, Some(endpoint_id)).await?;
    Ok(Json(Requeued { requeued }))
}

#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventQuery),
    responses((status = 200, body = EventPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_events(
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
async fn get_event(
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
async fn redeliver_event(
    Admin(who): Admin,
    State(s): State<AppState>,
    Ids(id): Ids<i64>,
) -> ApiResult<Json<Requeued>> {
    let requeued = s.act(&who).redeliver(id, None).await?;
    Ok(Json(Requeued { requeued }))
}

#[utoipa::path(get, path = "/api/v1/event-types", tag = "events",
    responses((status = 200, body = Vec<EventType>), (status = 401, body = ErrorBody)))]
async fn event_types(_: Caller, State(s): State<AppState>) -> ApiResult<Json<Vec<EventType>>> {
    Ok(Json(s.store.event_types().await?))
}

#[derive(OpenApi)]
#[openapi(
    info(title = "pg_webhook console API", description = "Endpoints, deliveries, events and repairs of pg_webhook, \
        through the SQL API of schema webhook."),
    paths(list_endpoints, create_endpoint, get_endpoint, update_endpoint, delete_endpoint, enable_endpoint,
          disable_endpoint, rotate_secret, reveal_secret, send_test, replay, list_deliveries, get_delivery,
          redeliver, list_events, get_event, redeliver_event, event_types),
    components(schemas(Status)),
    modifiers(&BearerAuth, &CommonErrors),
    security(("bearer" = [])),
    tags((name = "endpoints"), (name = "deliveries"), (name = "events"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The errors any operation may answer: bad input that never reached the
/// SQL API (a malformed id, query or body), no token, a database that is
/// unavailable.
struct CommonErrors;

impl utoipa::Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |what: &str| {
            ResponseBuilder::new()
                .description(what)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                for (code, what) in [
                    (
                        "400",
                        "Bad input: the SQL API's reason, or a malformed id, query or body",
                    ),
                    ("401", "No token, or not one of the console's"),
                    (
                        "429",
                        "Too many wrong tokens from this address: wait Retry-After's seconds",
                    ),
                    (
                        "500",
                        "Internal error: the console's log has the detail under request_id",
                    ),
                    ("503", "The database is unavailable or busy; try again"),
                ] {
                    op.responses
                        .responses
                        .entry(code.to_string())
                        .or_insert_with(|| error(what).into());
                }
            }
        }
    }
}

async fn openapi_json() -> impl IntoResponse {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    Json(doc)
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such API route",
        Some("/api/v1/openapi.json lists the routes."),
    )
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi_json))
        .route(
            "/api/v1/endpoints",
            get(list_endpoints).post(create_endpoint),
        )
        .route(
            "/api/v1/endpoints/{id}",
            get(get_endpoint)
                .patch(update_endpoint)
                .delete(delete_endpoint),
        )
        .route("/api/v1/endpoints/{id}/enable", post(enable_endpoint))
        .route("/api/v1/endpoints/{id}/disable", post(disable_endpoint))
        .route("/api/v1/endpoints/{id}/rotate-secret", post(rotate_secret))
        .route("/api/v1/endpoints/{id}/reveal-secret", post(reveal_secret))
        .route("/api/v1/endpoints/{id}/test", post(send_test))
        .route("/api/v1/endpoints/{id}/replay", post(replay))
        .route("/api/v1/deliveries", get(list_deliveries))
        .route(
            "/api/v1/deliveries/{event_id}/{endpoint_id}",
            get(get_delivery),
        )
        .route(
            "/api/v1/deliveries/{event_id}/{endpoint_id}/redeliver",
            post(redeliver),
        )
        .route("/api/v1/events", get(list_events))
        .route("/api/v1/events/{id}", get(get_event))
        .route("/api/v1/events/{id}/redeliver", post(redeliver_event))
        .route("/api/v1/event-types", get(event_types))
        .route("/api/v1", get(not_found))
        .route("/api/v1/{*rest}", axum::routing::any(not_found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_s_fault_is_never_a_server_error() {
        for code in [
            "22023", "22004", "22P02", "22007", "22008", "22003", "22021", "22001", "22000",
            "22ZZZ", "23505", "23514", "P0002", "42501", "55000", "54000",
        ] {
            let (status, name) = condition(code);
            assert!(status.is_client_error(), "{code}: {status}");
            assert!(!name.is_empty());
        }
        assert_eq!(condition("P0002"), (StatusCode::NOT_FOUND, "no_data_found"));
        assert_eq!(condition("22ZZZ").1, "data_exception");
        assert_eq!(condition("57014").0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(condition("XX000").0, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn cursors_and_limits_are_checked() {
        assert_eq!(delivery_cursor(Some("12.3")).unwrap(), Some((12, 3)));
        assert!(delivery_cursor(Some("12")).is_err());
        assert!(delivery_cursor(Some("a.b")).is_err());
        assert_eq!(delivery_cursor(None).unwrap(), None);
        assert_eq!(event_cursor(Some("7")).unwrap(), Some(7));
        assert!(event_cursor(Some("7.1")).is_err());
        // A full page's cursor is its last row's, read back as written.
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
        assert_eq!(limit(None).unwrap(), DEFAULT_LIMIT);
        assert!(limit(Some(0)).is_err());
        assert!(limit(Some(MAX_LIMIT + 1)).is_err());
    }

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
    fn the_openapi_document_is_3_1_and_names_every_route() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        assert!(
            doc["openapi"].as_str().unwrap().starts_with("3.1"),
            "{}",
            doc["openapi"]
        );
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/api/v1/endpoints",
            "/api/v1/endpoints/{id}",
            "/api/v1/deliveries",
            "/api/v1/deliveries/{event_id}/{endpoint_id}",
            "/api/v1/events",
            "/api/v1/event-types",
        ] {
            assert!(paths.contains_key(p), "{p}");
        }
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
