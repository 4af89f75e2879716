//! An endpoint's signing secrets: rotate, reveal (admin tokens only).

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Admin, ApiResult, AppState, Body, ErrorBody, Ids};

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

#[utoipa::path(post, path = "/api/v1/endpoints/{id}/rotate-secret", tag = "endpoints", params(("id" = i64, Path)),
    request_body(content = Option<Rotate>),
    responses((status = 200, body = Secret), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn rotate_secret(
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
pub(crate) async fn reveal_secret(
    Admin(who): Admin,
    State(s): State<AppState>,
    Ids(id): Ids<i64>,
) -> ApiResult<Json<Secret>> {
    let secret = s.act(&who).reveal_secret(id).await?;
    Ok(Json(Secret { secret }))
}
