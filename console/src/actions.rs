//! The one layer the API and the pages both go through to change
//! anything (or to see a secret): each action calls the store and writes
//! its audit line here, once, with who acted (the token's name and role),
//! from where (the client address) and the request id. Signing in and
//! out and wrong tokens are audited here too.

use std::sync::Arc;

use super::api::{shown_url, UrlView};
use super::auth::{Identity, Role};
use super::request::RequestContext;
use super::store::{EndpointChange, StoreError};
use super::throttle::Blocked;
use super::Console;

/// Audit lines have this tracing target (`WEBHOOKD_LOG=console::audit=info`
/// keeps them whatever else is filtered).
pub const AUDIT: &str = "console::audit";

/// The characters of a replay's `since` its audit line keeps at most.
const SINCE_LOGGED: usize = 64;

/// Who is acting: a token's name and role, the client address, the
/// request id.
#[derive(Debug, Clone)]
pub struct Actor {
    pub token: Arc<str>,
    pub role: Role,
    pub client: String,
    pub request_id: Arc<str>,
}

impl Actor {
    pub fn new(token: Arc<str>, role: Role, ctx: &RequestContext) -> Self {
        Actor {
            token,
            role,
            client: ctx.client_text(),
            request_id: ctx.id.clone(),
        }
    }

    pub fn of(who: &Identity, ctx: &RequestContext) -> Self {
        Self::new(who.name.clone(), who.role, ctx)
    }
}

/// One audit line: `message` says what was done; an action not done says
/// `<action> refused` (or `failed`) instead. Secrets shown (reveal,
/// rotate) and anything not done are warnings; the rest is info.
macro_rules! audit {
    ($warn:expr, $who:expr, $action:expr, $outcome:expr, $message:expr $(, $($field:tt)*)?) => {{
        let who: &Actor = $who;
        let (action, outcome, message): (&str, &str, &str) = ($action, $outcome, $message);
        let text = if outcome == "ok" {
            message.to_string()
        } else {
            format!("{action} {outcome}")
        };
        if $warn || outcome != "ok" {
            tracing::warn!(target: AUDIT, token = %who.token, role = who.role.name(), client = %who.client,
                request_id = %who.request_id, action, outcome, $($($field)*,)? "console: {text}");
        } else {
            tracing::info!(target: AUDIT, token = %who.token, role = who.role.name(), client = %who.client,
                request_id = %who.request_id, action, outcome, $($($field)*,)? "console: {text}");
        }
    }};
}

/// An action's outcome for its audit line: `ok`, `refused` (the SQL API
/// said no, or no such object) or `failed` (the database).
fn outcome<T>(r: &Result<T, StoreError>) -> (&'static str, Option<String>) {
    match r {
        Ok(_) => ("ok", None),
        Err(StoreError::Refused { sqlstate, .. }) => ("refused", Some(sqlstate.clone())),
        Err(StoreError::NotFound(_)) => ("refused", None),
        Err(StoreError::Unavailable(_)) => ("failed", None),
    }
}

/// The actions of one actor.
pub struct Act<'a> {
    console: &'a Console,
    who: &'a Actor,
}

impl Console {
    pub fn act<'a>(&'a self, who: &'a Actor) -> Act<'a> {
        Act { console: self, who }
    }
}

/// What an action was on, for its audit line.
#[derive(Default)]
struct On {
    endpoint_id: Option<i64>,
    event_id: Option<i64>,
    count: Option<i64>,
}

fn endpoint(id: i64) -> On {
    On {
        endpoint_id: Some(id),
        ..On::default()
    }
}

impl Act<'_> {
    fn done<T>(
        &self,
        r: &Result<T, StoreError>,
        (action, message): (&'static str, &'static str),
        sensitive: bool,
        on: On,
    ) {
        let (out, sqlstate) = outcome(r);
        audit!(
            sensitive,
            self.who,
            action,
            out,
            message,
            endpoint_id = on.endpoint_id,
            event_id = on.event_id,
            count = on.count,
            sqlstate
        );
    }

    /// Creates an endpoint: its id and secret.
    pub async fn create_endpoint(
        &self,
        change: EndpointChange,
    ) -> Result<(i64, String), StoreError> {
        // Who pointed webhooks where, by origin: a URL's path and query may
        // carry the receiver's credentials, and logs travel further than
        // the database.
        let origin = change.url.as_deref().map(|u| shown_url(u, UrlView::Origin));
        let r = self.console.store.create_endpoint(change).await;
        let (out, sqlstate) = outcome(&r);
        let id = r.as_ref().ok().map(|(id, _)| *id);
        audit!(
            false,
            self.who,
            "endpoint.create",
            out,
            "endpoint created",
            endpoint_id = id,
            url = origin.as_deref(),
            sqlstate
        );
        r
    }

    pub async fn alter_endpoint(&self, id: i64, change: EndpointChange) -> Result<(), StoreError> {
        let r = self.console.store.alter_endpoint(id, change).await;
        self.done(
            &r,
            ("endpoint.update", "endpoint changed"),
            false,
            endpoint(id),
        );
        r
    }

    pub async fn enable_endpoint(&self, id: i64, enabled: bool) -> Result<(), StoreError> {
        let r = self.console.store.enable_endpoint(id, enabled).await;
        let what = if enabled {
            ("endpoint.enable", "endpoint enabled")
        } else {
            ("endpoint.disable", "endpoint disabled")
        };
        self.done(&r, what, false, endpoint(id));
        r
    }

    pub async fn delete_endpoint(&self, id: i64) -> Result<(), StoreError> {
        let r = self.console.store.delete_endpoint(id).await;
        self.done(
            &r,
            ("endpoint.delete", "endpoint deleted"),
            false,
            endpoint(id),
        );
        r
    }

    /// A new signing secret, shown to the actor.
    pub async fn rotate_secret(
        &self,
        id: i64,
        overlap_seconds: Option<f64>,
    ) -> Result<String, StoreError> {
        let r = self.console.store.rotate_secret(id, overlap_seconds).await;
        let what = (
            "endpoint.rotate-secret",
            "endpoint secret rotated (the new secret was shown)",
        );
        self.done(&r, what, true, endpoint(id));
        r
    }

    pub async fn reveal_secret(&self, id: i64) -> Result<String, StoreError> {
        let r = self.console.store.endpoint_secret(id).await;
        self.done(
            &r,
            ("endpoint.reveal-secret", "endpoint secret revealed"),
            true,
            endpoint(id),
        );
        r
    }

    /// The id of the test event sent.
    pub async fn send_test(&self, id: i64) -> Result<i64, StoreError> {
        let r = self.console.store.send_test(id).await;
        let on = On {
            event_id: r.as_ref().ok().copied(),
            ..endpoint(id)
        };
        self.done(&r, ("endpoint.test", "test event sent"), false, on);
        r
    }

    /// Dead deliveries since `since` requeued: how many.
    pub async fn replay(&self, id: i64, since: &str) -> Result<i32, StoreError> {
        let r = self.console.store.replay(id, since).await;
        let n = r.as_ref().ok().map(|n| i64::from(*n));
        let (out, sqlstate) = outcome(&r);
        // As the client sent it (the API takes any text), so bounded: a
        // time, `-infinity` and anything PostgreSQL reads are far shorter.
        let since: String = since.chars().take(SINCE_LOGGED).collect();
        let since = since.as_str();
        audit!(
            false,
            self.who,
            "endpoint.replay",
            out,
            "dead deliveries replayed",
            endpoint_id = id,
            count = n,
            since,
            sqlstate
        );
        r
    }

    /// An event again, to one endpoint or (None) to every one.
    pub async fn redeliver(
        &self,
        event_id: i64,
        endpoint_id: Option<i64>,
    ) -> Result<i32, StoreError> {
        let r = self.console.store.redeliver(event_id, endpoint_id).await;
        let what = match endpoint_id {
            Some(_) => ("delivery.redeliver", "redelivered"),
            None => ("event.redeliver", "event redelivered to every endpoint"),
        };
        let on = On {
            endpoint_id,
            event_id: Some(event_id),
            count: r.as_ref().ok().map(|n| i64::from(*n)),
        };
        self.done(&r, what, false, on);
        r
    }
}

// Signing in and out, and wrong tokens.

pub fn signed_in(who: &Actor) {
    audit!(false, who, "session.start", "ok", "signed in");
}

pub fn signed_out(who: &Actor) {
    audit!(false, who, "session.end", "ok", "signed out");
}

/// A wrong token (`via`: `bearer` or `sign-in`), and the block it
/// started, if any. The presented token is never written.
/// Why a presented token was not taken.
pub enum Refused {
    /// No token is this one (counted against the address, audited).
    Wrong,
    /// Not a token, and the address is waiting after wrong ones.
    Blocked(Blocked),
}

/// The identity `presented` is, for the API's bearer tokens and the
/// sign-in form alike. A right token always passes: the backoff slows
/// guessing from an address, and must not let one guesser behind a
/// shared address (a proxy, NAT) lock out everyone else there; tokens
/// estimate at least 128 bits, so what a blocked guesser learns is worth
/// nothing. A wrong one waits while its address is blocked, else counts.
pub fn authenticate(
    console: &Console,
    presented: &str,
    ctx: &RequestContext,
    via: &'static str,
) -> Result<Identity, Refused> {
    if let Some(who) = console.tokens.find(presented) {
        return Ok(who);
    }
    let now = std::time::Instant::now();
    console
        .throttle
        .check(ctx.client, now)
        .map_err(Refused::Blocked)?;
    let block = console.throttle.failed(ctx.client, now);
    wrong_token(ctx, via, block);
    Err(Refused::Wrong)
}

fn wrong_token(ctx: &RequestContext, via: &'static str, block: Option<Blocked>) {
    tracing::warn!(target: AUDIT, client = %ctx.client_text(), request_id = %ctx.id, action = "auth",
        outcome = "wrong-token", via, "console: wrong token");
    if let Some(b) = block {
        tracing::warn!(target: AUDIT, client = %ctx.client_text(), request_id = %ctx.id, action = "auth",
            outcome = "blocked", seconds = b.seconds(),
            "console: too many wrong tokens from this address; its token attempts are refused for a while");
    }
}
