//! A minimal HTTP/1 server on hyper alone, for `webhookd listen` and the
//! benchmarks' receiver (`webhookd::http`); it takes its listener and a
//! shutdown token, so tests can bind 127.0.0.1:0. `/metrics` and `/healthz`
//! are on axum (observe::probes), like the console.
//!
//! Why these two stay here: the receiver is the instrument every number in
//! BENCHMARKS.md is measured with, and it shares the machine's cores with
//! the webhookd it measures, so what it costs per request is part of each
//! result. axum's router and tower layers add work per request over one
//! hyper service function; moving the receiver is only right once a
//! benchmark run shows that work costs no throughput, and `listen` is the
//! same receiver for people (one hand-written server, not two).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub type Reply = Response<Full<Bytes>>;

pub fn reply(status: u16, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    r
}

pub async fn serve<H, F>(listener: TcpListener, handler: H, shutdown: CancellationToken)
where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Reply> + Send + 'static,
{
    let handler = Arc::new(handler);
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let handler = handler.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let svc = hyper::service::service_fn(move |req| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler(req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
}
