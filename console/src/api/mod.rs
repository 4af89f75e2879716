//! The console's REST API under /api/v1, described by the OpenAPI 3.1
//! document at /api/v1/openapi.json (utoipa, from these handlers and
//! types). Bearer tokens only (no cookies: nothing here can be posted by
//! another site); errors are `{code, message, hint}` with the SQLSTATE the
//! SQL API answered, 4xx for anything the request got wrong.
//!
//! One file a resource: `endpoints` (their settings and the actions on
//! them), `secrets` (rotate, reveal), `deliveries` (with their attempts),
//! `events` (and their types); this one has what they share: errors, the
//! extractors, paging, the OpenAPI document and the routes.

mod deliveries;
mod endpoints;
mod events;
mod secrets;

pub(crate) use deliveries::{delivery_detail, next_delivery_cursor, DeliveryQuery, Status};
pub(crate) use endpoints::{for_role, shown_url, UrlView};
pub(crate) use events::{event_cursor, event_for_role, next_event_cursor};

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::actions::{self, Actor};
use crate::auth::{bearer, Role};
use crate::request;
use crate::store::StoreError;
use crate::throttle::Blocked;
use crate::Console;

pub(crate) type AppState = Arc<Console>;

/// Rows per page at most, and by default.
pub const MAX_LIMIT: i64 = 200;

pub const DEFAULT_LIMIT: i64 = 50;

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
pub(crate) fn condition(sqlstate: &str) -> (StatusCode, &'static str) {
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

pub(crate) type ApiResult<T> = Result<T, ApiError>;

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

#[derive(Debug, Serialize, ToSchema)]
pub struct Requeued {
    /// Deliveries made pending again.
    pub requeued: i32,
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

pub(crate) fn bad_cursor() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_parameter_value",
        "invalid cursor",
        Some("Pass the next_cursor of a previous page unchanged."),
    )
}

/// The cursor of the page after `items`, a page of `limit` rows at most:
/// its last row's (`of`), None on the last page.
pub(crate) fn next_cursor<T>(items: &[T], limit: i64, of: impl Fn(&T) -> String) -> Option<String> {
    if items.len() as i64 == limit {
        items.last().map(of)
    } else {
        None
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "pg_webhook console API", description = "Endpoints, deliveries, events and repairs of pg_webhook, \
        through the SQL API of schema webhook."),
    paths(endpoints::list_endpoints, endpoints::create_endpoint, endpoints::get_endpoint,
          endpoints::update_endpoint, endpoints::delete_endpoint, endpoints::enable_endpoint,
          endpoints::disable_endpoint, secrets::rotate_secret, secrets::reveal_secret, endpoints::send_test,
          endpoints::replay, deliveries::list_deliveries, deliveries::get_delivery, deliveries::redeliver,
          events::list_events, events::get_event, events::redeliver_event, events::event_types),
    components(schemas(deliveries::Status)),
    modifiers(&BearerAuth, &CommonErrors),
    security(("bearer" = [])),
    tags((name = "endpoints"), (name = "deliveries"), (name = "events"))
)]
pub struct ApiDoc;

pub(crate) struct BearerAuth;

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
pub(crate) struct CommonErrors;

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

pub(crate) async fn openapi_json() -> impl IntoResponse {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    Json(doc)
}

pub(crate) async fn not_found() -> ApiError {
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
            get(endpoints::list_endpoints).post(endpoints::create_endpoint),
        )
        .route(
            "/api/v1/endpoints/{id}",
            get(endpoints::get_endpoint)
                .patch(endpoints::update_endpoint)
                .delete(endpoints::delete_endpoint),
        )
        .route(
            "/api/v1/endpoints/{id}/enable",
            post(endpoints::enable_endpoint),
        )
        .route(
            "/api/v1/endpoints/{id}/disable",
            post(endpoints::disable_endpoint),
        )
        .route(
            "/api/v1/endpoints/{id}/rotate-secret",
            post(secrets::rotate_secret),
        )
        .route(
            "/api/v1/endpoints/{id}/reveal-secret",
            post(secrets::reveal_secret),
        )
        .route("/api/v1/endpoints/{id}/test", post(endpoints::send_test))
        .route("/api/v1/endpoints/{id}/replay", post(endpoints::replay))
        .route("/api/v1/deliveries", get(deliveries::list_deliveries))
        .route(
            "/api/v1/deliveries/{event_id}/{endpoint_id}",
            get(deliveries::get_delivery),
        )
        .route(
            "/api/v1/deliveries/{event_id}/{endpoint_id}/redeliver",
            post(deliveries::redeliver),
        )
        .route("/api/v1/events", get(events::list_events))
        .route("/api/v1/events/{id}", get(events::get_event))
        .route(
            "/api/v1/events/{id}/redeliver",
            post(events::redeliver_event),
        )
        .route("/api/v1/event-types", get(events::event_types))
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
    fn limits_are_checked() {
        assert_eq!(limit(None).unwrap(), DEFAULT_LIMIT);
        assert!(limit(Some(0)).is_err());
        assert!(limit(Some(MAX_LIMIT + 1)).is_err());
    }
}
