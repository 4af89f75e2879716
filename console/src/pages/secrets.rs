//! An endpoint's signing secret shown: after a rotation, or revealed.

use axum::response::{IntoResponse, Response};
use maud::{html, Markup};

use crate::actions::Act;
use crate::store::StoreError;

use super::page;
use super::session::Session;

/// A new secret (the old ones sign beside it for the SQL API's default
/// overlap), shown once.
pub(crate) async fn rotate(act: &Act<'_>, s: &Session, id: i64) -> Result<Response, StoreError> {
    let secret = act.rotate_secret(id, None).await?;
    let intro = "The new signing secret signs from now on; the old one keeps signing beside it for 24 hours:";
    Ok(secret_page(s, "Secret rotated", id, intro, &secret).into_response())
}

pub(crate) async fn reveal(act: &Act<'_>, s: &Session, id: i64) -> Result<Response, StoreError> {
    let secret = act.reveal_secret(id).await?;
    let intro = "The endpoint's current signing secret:";
    Ok(secret_page(s, "Signing secret", id, intro, &secret).into_response())
}

pub(crate) fn secret_page(
    s: &Session,
    title: &str,
    endpoint_id: i64,
    intro: &str,
    secret: &str,
) -> Markup {
    page(
        title,
        Some(s),
        None,
        html! {
            h1 { (title) }
            p { (intro) }
            div.secret {
                code #secret-value { (secret) }
                button.copy type="button" data-copy="secret-value" { "Copy" }
            }
            p.muted { "Give it to the receiver to verify signatures (Standard Webhooks). This page is the only place it is shown; it is not stored in your browser." }
            p { a.button.primary href={"/endpoints/" (endpoint_id)} { "Go to the endpoint" } }
        },
    )
}
