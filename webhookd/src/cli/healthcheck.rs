//! `webhookd healthcheck`: exit 0 when a running webhookd's health address
//! answers `/healthz` with 200 (it is claiming: observe::probes), non-zero
//! on anything else (503 while it stops, no answer); with `--ready`, when
//! it answers `/readyz` with 200 (it has a database session and its claim
//! rounds succeed), saying why not otherwise. It is the container image's
//! HEALTHCHECK (the image has no curl, no shell), so it reads the same
//! `WEBHOOKD_METRICS_ADDR` the running instance serves on.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use clap::Args;

/// `webhookd healthcheck`'s flags.
#[derive(Args, Debug)]
pub struct HealthcheckArgs {
    /// The health address of the instance (`run --metrics-addr`, from the
    /// same environment variable); 0.0.0.0 is asked on loopback.
    #[arg(long, env = "WEBHOOKD_METRICS_ADDR", default_value = "127.0.0.1:9090")]
    addr: SocketAddr,
    /// How long the answer may take.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Ask /readyz (delivering: a database session, claim rounds that
    /// succeed) instead of /healthz (alive).
    #[arg(long)]
    ready: bool,
}

pub async fn command(a: HealthcheckArgs) -> anyhow::Result<()> {
    run(a.addr, a.timeout, a.ready).await
}

/// Where to ask: the address served on, with an unspecified one (0.0.0.0,
/// ::, how a container listens) asked on loopback.
fn target(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

/// Ok when `/healthz` (or, `ready`, `/readyz`) answers 200 within
/// `timeout`; otherwise the status and what the instance said.
pub async fn run(addr: SocketAddr, timeout: Duration, ready: bool) -> anyhow::Result<()> {
    let path = if ready { "readyz" } else { "healthz" };
    let url = format!("http://{}/{path}", target(addr));
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()?;
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{url}: {}", e.without_url()))?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        // The probe's own short line (bounded: it is ours, but a port may
        // be someone else's).
        let body = response.text().await.unwrap_or_default();
        let said: String = body.trim().chars().take(200).collect();
        anyhow::bail!("{url} answered {status}: {said}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_address_is_asked_on_loopback() {
        let t = |s: &str| target(s.parse().unwrap()).to_string();
        assert_eq!(t("0.0.0.0:9090"), "127.0.0.1:9090");
        assert_eq!(t("[::]:9090"), "[::1]:9090");
        assert_eq!(t("10.1.2.3:9090"), "10.1.2.3:9090");
    }

    #[tokio::test]
    async fn a_claiming_instance_is_healthy_a_stopping_or_closed_one_is_not() {
        let health = crate::observe::probes::Health::claiming(Duration::from_secs(60));
        let (addr, stop) = crate::observe::probes::serving(health.clone()).await;
        run(addr, Duration::from_secs(2), false).await.unwrap();
        // Alive, not ready until a claim round succeeded.
        let e = run(addr, Duration::from_secs(2), true).await.unwrap_err();
        assert!(
            e.to_string().contains("503") && e.to_string().contains("no claim round yet"),
            "{e}"
        );
        health.ok();
        run(addr, Duration::from_secs(2), true).await.unwrap();
        health.stopped();
        let e = run(addr, Duration::from_secs(2), false).await.unwrap_err();
        assert!(e.to_string().contains("503"), "{e}");
        stop.cancel();
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gone = closed.local_addr().unwrap();
        drop(closed);
        assert!(run(gone, Duration::from_secs(2), false).await.is_err());
    }
}
