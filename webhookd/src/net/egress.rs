//! Egress: the HTTP clients every delivery goes out through — reqwest over
//! rustls, HTTP/2 where the receiver offers it through ALPN, HTTP/1.1
//! otherwise — and the SSRF guard as their DNS resolver.
//!
//! Why the guard sits in the resolver: reqwest connects to exactly the
//! addresses the resolver returns, so an address is checked and connected to
//! in one step, with no second lookup a rebinding DNS server could answer
//! differently. IP-literal URLs never reach a resolver: `Egress::url` checks
//! them before the request.
//!
//! Why there are several clients: the proxy is exempt from the guard (it is
//! the operator's choice, often on a private network), and that exemption
//! must belong to the connection to the proxy, never to a host name an
//! endpoint could use too (`http://localhost:<port>` with a proxy on
//! localhost and `NO_PROXY=localhost`). So the direct client has no proxy
//! and the full guard; each proxied client has one proxy, no NO_PROXY, and
//! connects to nothing but that proxy (checked against `--deny-cidr`
//! only). Which client a URL takes is decided in one place (`Egress::via`,
//! hyper-util's matcher, the one reqwest itself uses: the scheme's proxy,
//! NO_PROXY as curl reads it). Through a proxy, the proxy resolves the
//! receiver's name: a deployment that needs both points webhookd at a
//! filtering proxy (such as smokescreen) that applies its own rules.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::policy::ssrf::{self, Policy, Rule};

/// Sent with every request (also to a proxy).
pub const USER_AGENT: &str = concat!("pg_webhook/", env!("CARGO_PKG_VERSION"));
/// Idle connections kept per origin, and for how long.
const IDLE_PER_ORIGIN: usize = 64;
const IDLE_FOR: Duration = Duration::from_secs(60);
/// Largest response head (HTTP/2 header list) accepted.
const MAX_HEADER_LIST: u32 = 64 * 1024;
/// Parsed endpoint URLs cached (by their text); cleared when it grows past this.
const URL_CACHE: usize = 10_000;
/// URLs that ask the proxy settings (without NO_PROXY) which proxy each
/// scheme goes through; `.invalid` is never a real host.
const PROBES: [&str; 2] = ["http://webhookd.invalid/", "https://webhookd.invalid/"];

/// How webhookd reaches receivers, validated once at start.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Which addresses may be connected to (the SSRF guard and the
    /// operator's allow and deny lists).
    pub targets: Policy,
    /// TCP connect + TLS handshake.
    pub connect_timeout: Duration,
    /// PEM certificate authorities trusted besides the bundled Web PKI roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) and its private key, for receivers
    /// that require mutual TLS.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// A proxy for every request (credentials may be in the URL); without
    /// it, HTTPS_PROXY / HTTP_PROXY / ALL_PROXY apply. NO_PROXY applies to
    /// both.
    pub proxy: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{path}: {why}")]
    File { path: PathBuf, why: String },
    #[error("proxy {0}")]
    Proxy(String),
    #[error(
        "proxy {proxy}: its address {addr} is in --deny-cidr {net}, which wins over everything \
         (the proxy too): narrow --deny-cidr or use another proxy"
    )]
    ProxyDenied {
        proxy: String,
        addr: IpAddr,
        net: IpNet,
    },
    #[error("--client-cert and --client-key go together")]
    HalfIdentity,
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// The clients, and what they need per request.
pub struct Egress {
    /// Endpoints reached directly: no proxy, the full guard.
    direct: reqwest::Client,
    /// One client per distinct proxy.
    hops: Vec<Hop>,
    /// Which proxy an endpoint URL goes through, NO_PROXY applied.
    route: Matcher,
    targets: Arc<Policy>,
    /// Parsed URLs and the hop (index in `hops`, None: direct) of each.
    urls: Mutex<HashMap<String, (reqwest::Url, Option<usize>)>>,
}

/// A client whose only direct connection is its proxy.
struct Hop {
    proxy: Intercept,
    client: reqwest::Client,
}

/// An endpoint URL, checked, and the client that may send to it.
pub struct Target<'a> {
    pub url: reqwest::Url,
    pub client: &'a reqwest::Client,
}

/// Why a URL cannot be requested.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("invalid URL: {0}")]
    Invalid(String),
    #[error(transparent)]
    Refused(#[from] ssrf::Refused),
}

/// The proxy settings: `--proxy` for every scheme, else the environment
/// as curl (and reqwest) read it; NO_PROXY either way.
#[derive(Debug, Default)]
struct ProxySettings {
    all: String,
    http: String,
    https: String,
    no: String,
}

impl ProxySettings {
    fn new(proxy: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Self {
        let first = |names: [&str; 2]| names.iter().find_map(|n| env(n)).unwrap_or_default();
        let no = first(["NO_PROXY", "no_proxy"]);
        match proxy {
            Some(p) => ProxySettings {
                all: p.to_string(),
                no,
                ..ProxySettings::default()
            },
            // Under CGI, HTTP_PROXY may come from a request header
            // ("httpoxy"): hyper-util's from_env ignores the environment
            // then, and so do we.
            None if env("REQUEST_METHOD").is_some() => ProxySettings::default(),
            None => ProxySettings {
                all: first(["ALL_PROXY", "all_proxy"]),
                http: first(["HTTP_PROXY", "http_proxy"]),
                https: first(["HTTPS_PROXY", "https_proxy"]),
                no,
            },
        }
    }

    /// The matcher of these settings, with or without NO_PROXY.
    fn matcher(&self, with_no_proxy: bool) -> Matcher {
        let b = Matcher::builder()
            .all(&self.all)
            .http(&self.http)
            .https(&self.https);
        if with_no_proxy { b.no(&self.no) } else { b }.build()
    }
}

/// Two intercepts are the same proxy: same URL, same credentials.
fn same_proxy(a: &Intercept, b: &Intercept) -> bool {
    a.uri() == b.uri() && a.basic_auth() == b.basic_auth()
}

impl Egress {
    pub fn new(opts: &Options) -> Result<Self, SetupError> {
        Self::with_env(opts, |name| std::env::var(name).ok())
    }

    /// `new`, with the proxy variables read through `env` (tests).
    fn with_env(opts: &Options, env: impl Fn(&str) -> Option<String>) -> Result<Self, SetupError> {
        let tls = Tls::load(opts)?;
        let targets = Arc::new(opts.targets.clone());
        let settings = ProxySettings::new(opts.proxy.as_deref(), env);
        let direct = tls
            .builder(opts)
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver {
                targets: targets.clone(),
                proxy: None,
            }))
            .build()?;
        let mut hops: Vec<Hop> = Vec::new();
        let unfiltered = settings.matcher(false);
        for probe in PROBES {
            let Some(proxy) = probe
                .parse::<hyper::Uri>()
                .ok()
                .and_then(|u| unfiltered.intercept(&u))
            else {
                continue;
            };
            if hops.iter().any(|h| same_proxy(&h.proxy, &proxy)) {
                continue;
            }
            let client = proxied_client(&proxy, &targets, tls.builder(opts))?;
            tracing::info!(proxy = %proxy.uri(), "egress: endpoints not in NO_PROXY go through this proxy");
            hops.push(Hop { proxy, client });
        }
        if let (Some(p), true) = (&opts.proxy, hops.is_empty()) {
            return Err(SetupError::Proxy(format!(
                "{}: not an http:// or https:// proxy URL",
                redact(p)
            )));
        }
        Ok(Egress {
            direct,
            hops,
            route: settings.matcher(true),
            targets,
            urls: Mutex::default(),
        })
    }

    /// The one decision of whether a URL goes through a proxy, and which:
    /// the index of its hop, or None (direct, under the full guard).
    fn via(&self, url: &reqwest::Url) -> Option<usize> {
        let uri: hyper::Uri = url.as_str().parse().ok()?;
        let proxy = self.route.intercept(&uri)?;
        self.hops.iter().position(|h| same_proxy(&h.proxy, &proxy))
    }

    /// The parsed URL of an endpoint (cached: one parse and one proxy
    /// decision per URL, not per request), after checking an IP-literal
    /// host against the guard, with the client that sends to it.
    pub fn url(&self, text: &str) -> Result<Target<'_>, UrlError> {
        let cached = self.urls.lock().ok().and_then(|m| m.get(text).cloned());
        let (url, via) = match cached {
            Some(c) => c,
            None => {
                let u = reqwest::Url::parse(text).map_err(|e| UrlError::Invalid(e.to_string()))?;
                if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
                    return Err(UrlError::Invalid(format!("not an http(s) URL: {text}")));
                }
                let via = self.via(&u);
                if let Ok(mut m) = self.urls.lock() {
                    if m.len() >= URL_CACHE {
                        m.clear();
                    }
                    m.insert(text.to_string(), (u.clone(), via));
                }
                (u, via)
            }
        };
        // Proxied or not: an IP literal is the endpoint's own address.
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal {
            let host = url.host_str().unwrap_or_default();
            self.targets.allowed(host, vec![SocketAddr::new(ip, 0)])?;
        }
        let client = match via.and_then(|i| self.hops.get(i)) {
            Some(hop) => &hop.client,
            None => &self.direct,
        };
        Ok(Target { url, client })
    }
}

/// The trust and identity every client shares, read once.
struct Tls {
    roots: Vec<reqwest::Certificate>,
    identity: Option<reqwest::Identity>,
}

impl Tls {
    fn load(opts: &Options) -> Result<Tls, SetupError> {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|e| SetupError::File {
                path: path.clone(),
                why: e.to_string(),
            })
        };
        let mut roots = Vec::new();
        if let Some(path) = &opts.ca_file {
            roots = reqwest::Certificate::from_pem_bundle(&read(path)?).map_err(|e| {
                SetupError::File {
                    path: path.clone(),
                    why: e.to_string(),
                }
            })?;
            if roots.is_empty() {
                return Err(SetupError::File {
                    path: path.clone(),
                    why: "no PEM certificate in the file".into(),
                });
            }
        }
        let identity = match (&opts.client_cert, &opts.client_key) {
            (Some(cert), Some(key)) => {
                // One PEM with the chain and the key (PKCS#8, RSA or SEC1).
                let mut pem = read(cert)?;
                pem.push(b'\n');
                pem.extend(read(key)?);
                Some(
                    reqwest::Identity::from_pem(&pem).map_err(|e| SetupError::File {
                        path: key.clone(),
                        why: format!("with {}: {e}", cert.display()),
                    })?,
                )
            }
            (None, None) => None,
            _ => return Err(SetupError::HalfIdentity),
        };
        Ok(Tls { roots, identity })
    }

    /// A client builder with everything but the proxy and the resolver.
    fn builder(&self, opts: &Options) -> reqwest::ClientBuilder {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .connect_timeout(opts.connect_timeout)
            .pool_max_idle_per_host(IDLE_PER_ORIGIN)
            .pool_idle_timeout(IDLE_FOR)
            .tcp_nodelay(true)
            .http2_max_header_list_size(MAX_HEADER_LIST)
            .http2_adaptive_window(true);
        for cert in &self.roots {
            builder = builder.add_root_certificate(cert.clone());
        }
        if let Some(identity) = &self.identity {
            builder = builder.identity(identity.clone());
        }
        builder
    }
}

/// The client for one proxy: every request goes to it (no NO_PROXY here:
/// that was decided before), so its only direct connection is the proxy,
/// whose addresses are checked against --deny-cidr now and on each
/// connection.
fn proxied_client(
    proxy: &Intercept,
    targets: &Arc<Policy>,
    builder: reqwest::ClientBuilder,
) -> Result<reqwest::Client, SetupError> {
    let uri = proxy.uri();
    // The matcher keeps credentials apart: the URI has none.
    let shown = uri.to_string();
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(SetupError::Proxy(format!(
            "{shown}: only http:// and https:// proxies are supported"
        )));
    }
    // Parsed as reqwest will (a lower-case, IDNA host): the name its
    // resolver is then asked for.
    let url =
        reqwest::Url::parse(&shown).map_err(|e| SetupError::Proxy(format!("{shown}: {e}")))?;
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(SetupError::Proxy(format!("{shown}: no host"))),
    };
    let policy = Arc::new(targets.for_proxy());
    check_proxy_addresses(&host, &shown, &policy)?;
    let mut p = reqwest::Proxy::all(url).map_err(|e| SetupError::Proxy(format!("{shown}: {e}")))?;
    if let Some(auth) = proxy.basic_auth() {
        p = p.custom_http_auth(auth.clone());
    }
    Ok(builder
        .proxy(p)
        .dns_resolver(Arc::new(GuardedResolver {
            targets: targets.clone(),
            proxy: Some((host, policy)),
        }))
        .build()?)
}

/// At start: a proxy with an address in --deny-cidr is a configuration
/// error (deny wins over everything, so webhookd would never reach it).
/// A name that does not resolve yet is checked on each connection.
fn check_proxy_addresses(host: &str, shown: &str, policy: &Policy) -> Result<(), SetupError> {
    let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => match (host, 0).to_socket_addrs() {
            Ok(addrs) => addrs.map(|a| a.ip()).collect(),
            Err(e) => {
                tracing::warn!(proxy = %shown, error = %e, "egress: the proxy's name does not resolve (yet); its addresses are checked against --deny-cidr on each connection");
                return Ok(());
            }
        },
    };
    for addr in addrs {
        if let Err(Rule::Deny(net)) = policy.check(addr) {
            return Err(SetupError::ProxyDenied {
                proxy: shown.to_string(),
                addr,
                net,
            });
        }
    }
    Ok(())
}

/// A proxy URL without its credentials, for error messages and logs.
fn redact(proxy: &str) -> String {
    match reqwest::Url::parse(proxy) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(unparsable URL)".into(),
    }
}

/// The system resolver, then the guard: only addresses that pass are
/// returned, and reqwest connects to nothing else.
struct GuardedResolver {
    targets: Arc<Policy>,
    /// On a proxied client only: its proxy's host name and the proxy
    /// hop's policy (--deny-cidr only). That client connects to nothing
    /// but its proxy, so the name is only a second check; any other name
    /// it were asked for would get the full guard.
    proxy: Option<(String, Arc<Policy>)>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        let policy = match &self.proxy {
            Some((proxy, policy)) if *proxy == host => policy.clone(),
            _ => self.targets.clone(),
        };
        Box::pin(async move {
            // Port 0: reqwest puts the URL's port in.
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|source| DnsError {
                    host: host.clone(),
                    source,
                })?
                .collect();
            let addrs = policy.allowed(&host, addrs)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// A name that did not resolve.
#[derive(Debug, thiserror::Error)]
#[error("resolving {host}: {source}")]
pub struct DnsError {
    host: String,
    source: std::io::Error,
}

/// Whether a request error is a name that did not resolve.
pub fn is_dns(e: &reqwest::Error) -> bool {
    chain(e).any(|err| err.is::<DnsError>())
}

/// The guard's refusal inside a request error, if that is what it is.
pub fn refusal(e: &reqwest::Error) -> Option<&ssrf::Refused> {
    chain(e).find_map(|err| err.downcast_ref::<ssrf::Refused>())
}

/// A request error and the errors below it, outermost first.
pub fn chain(e: &reqwest::Error) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e as &(dyn std::error::Error + 'static)), |err| {
        err.source()
    })
}

/// Whether a request error is our TLS handshake failing (an untrusted or
/// wrong certificate, say).
pub fn is_tls(e: &reqwest::Error) -> bool {
    // rustls errors come wrapped in io::Errors (in io::Errors), whose
    // `source()` skips the wrapped error itself.
    fn rustls_in(err: &(dyn std::error::Error + 'static)) -> bool {
        err.is::<rustls::Error>()
            || err
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .is_some_and(|inner| rustls_in(inner))
    }
    chain(e).any(rustls_in)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A private CA, a server certificate for localhost and a client
    /// certificate it signed, the files webhookd would be given.
    struct Pki {
        ca: CertificateDer<'static>,
        server: CertificateDer<'static>,
        server_key: Vec<u8>,
        ca_file: PathBuf,
        client_cert: PathBuf,
        client_key: PathBuf,
    }

    fn pki() -> Pki {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "webhookd-egress-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&server_key, &ca)
            .unwrap();
        let client_key = KeyPair::generate().unwrap();
        let client = CertificateParams::new(vec!["webhookd".to_string()])
            .unwrap()
            .signed_by(&client_key, &ca)
            .unwrap();
        let pki = Pki {
            ca: ca.der().clone(),
            server: server.der().clone(),
            server_key: server_key.serialize_der(),
            ca_file: dir.join("ca.pem"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        };
        std::fs::write(&pki.ca_file, ca.pem()).unwrap();
        std::fs::write(&pki.client_cert, client.pem()).unwrap();
        std::fs::write(&pki.client_key, client_key.serialize_pem()).unwrap();
        pki
    }

    /// An HTTPS receiver offering h2 and http/1.1 through ALPN that answers
    /// each request with the HTTP version it arrived in; with
    /// `client_auth`, only clients with a certificate of the CA get in.
    async fn receiver(pki: &Pki, client_auth: bool) -> u16 {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if client_auth {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(pki.ca.clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server_key.clone()));
        let mut config = builder
            .with_single_cert(vec![pki.server.clone()], key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(
                        |req: hyper::Request<hyper::body::Incoming>| async move {
                            let version = format!("{:?}", req.version());
                            Ok::<_, Infallible>(hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(version),
                            )))
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
                });
            }
        });
        port
    }

    fn options(pki: Option<&Pki>) -> Options {
        Options {
            targets: Policy {
                allow_private_targets: true,
                ..Policy::default()
            },
            connect_timeout: Duration::from_secs(5),
            ca_file: pki.map(|p| p.ca_file.clone()),
            // No proxy from this process's environment.
            proxy: None,
            ..Options::default()
        }
    }

    async fn post(egress: &Egress, url: &str) -> Result<reqwest::Response, reqwest::Error> {
        let target = egress.url(url).unwrap();
        target.client.post(target.url).body("{}").send().await
    }

    #[tokio::test]
    async fn http2_is_spoken_when_the_receiver_offers_it_through_alpn() {
        let pki = pki();
        let port = receiver(&pki, false).await;
        let egress = Egress::new(&options(Some(&pki))).unwrap();
        let r = post(&egress, &format!("https://localhost:{port}/hook"))
            .await
            .unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.text().await.unwrap(), "HTTP/2.0");
    }

    #[tokio::test]
    async fn a_receiver_that_requires_a_client_certificate_gets_ours() {
        let pki = pki();
        let port = receiver(&pki, true).await;
        let url = format!("https://localhost:{port}/hook");
        let without = Egress::new(&options(Some(&pki))).unwrap();
        // TLS 1.3: the server's refusal comes as an alert after our side
        // of the handshake is done.
        let e = post(&without, &url).await.unwrap_err();
        assert!(format!("{e:?}").contains("CertificateRequired"), "{e:?}");
        let with = Egress::new(&Options {
            client_cert: Some(pki.client_cert.clone()),
            client_key: Some(pki.client_key.clone()),
            ..options(Some(&pki))
        })
        .unwrap();
        assert_eq!(post(&with, &url).await.unwrap().status(), 200);
        assert!(matches!(
            Egress::new(&Options {
                client_cert: Some(pki.client_cert.clone()),
                ..options(Some(&pki))
            }),
            Err(SetupError::HalfIdentity)
        ));
    }

    #[tokio::test]
    async fn an_untrusted_certificate_fails_the_handshake() {
        let pki = pki();
        let port = receiver(&pki, false).await;
        let egress = Egress::new(&options(None)).unwrap();
        let e = post(&egress, &format!("https://localhost:{port}/hook"))
            .await
            .unwrap_err();
        assert!(is_tls(&e), "{e:?}");
    }

    #[tokio::test]
    async fn names_that_resolve_to_forbidden_addresses_are_never_connected_to() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let egress = Egress::new(&Options {
            targets: Policy::default(),
            ..options(None)
        })
        .unwrap();
        let e = post(&egress, &format!("http://localhost:{port}/hook"))
            .await
            .unwrap_err();
        let refused = refusal(&e).expect("refused by the guard");
        assert!(refused.to_string().contains("SSRF guard"), "{refused}");
        // An IP literal never reaches a resolver: checked before the request.
        let literal = egress.url(&format!("http://127.0.0.1:{port}/hook"));
        assert!(matches!(literal, Err(UrlError::Refused(_))));
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "nothing may connect");
    }

    #[tokio::test]
    async fn a_proxy_gets_each_request_and_resolves_the_receivers_name_itself() {
        let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_url = format!(
            "http://user:pw@127.0.0.1:{}",
            proxy.local_addr().unwrap().port()
        );
        let seen = tokio::spawn(async move {
            let (mut s, _) = proxy.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8_lossy(&got).into_owned()
        });
        // The guard is on: the proxy (the operator's choice) is exempt, and
        // the receiver's name is the proxy's to resolve.
        let egress = Egress::new(&Options {
            targets: Policy::default(),
            proxy: Some(proxy_url),
            ..options(None)
        })
        .unwrap();
        let r = post(&egress, "http://receiver.invalid/hook").await.unwrap();
        assert_eq!(r.status(), 204);
        let head = seen.await.unwrap();
        assert!(
            head.starts_with("POST http://receiver.invalid/hook HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("proxy-authorization: basic dxnlcjpwdw=="),
            "{head}"
        );
        // An IP literal is still checked here, proxy or not.
        assert!(matches!(
            egress.url("http://10.0.0.1/hook"),
            Err(UrlError::Refused(_))
        ));
    }

    /// A forward-proxy stub on `ip`: answers every request head with 204
    /// and reports its request line.
    async fn proxy_stub(ip: &str) -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&got);
                    let _ = tx.send(head.lines().next().unwrap_or_default().to_string());
                    let _ = s
                        .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                        .await;
                });
            }
        });
        (port, rx)
    }

    /// Listeners on 127.0.0.1 and ::1 (one port) that count the
    /// connections made to them: a receiver on a guarded address.
    async fn guarded_receiver() -> (u16, Arc<AtomicUsize>) {
        let v4 = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = v4.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let mut listeners = vec![v4];
        if let Ok(v6) = TcpListener::bind(("::1", port)).await {
            listeners.push(v6);
        }
        for l in listeners {
            let accepted = accepted.clone();
            tokio::spawn(async move {
                while let Ok((s, _)) = l.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    drop(s);
                }
            });
        }
        (port, accepted)
    }

    /// Where a request went: through the proxy (its request line), or
    /// refused by the guard before any connection.
    #[derive(Debug, Clone, PartialEq)]
    enum Went {
        Proxy(String),
        Refused(&'static str),
    }

    #[tokio::test]
    async fn only_the_connection_to_the_proxy_is_exempt_never_a_host_named_like_it() {
        let (proxy_port, mut seen) = proxy_stub("127.0.0.1").await;
        let (port, accepted) = guarded_receiver().await;
        // The proxy by name, on the receivers' host.
        let proxy = format!("http://localhost:{proxy_port}");
        let http = format!("http://localhost:{port}/hook");
        let https = format!("https://localhost:{port}/hook");
        let via_proxy = |url: &str| {
            Went::Proxy(if url.starts_with("https") {
                format!("CONNECT localhost:{port} HTTP/1.1")
            } else {
                format!("POST {url} HTTP/1.1")
            })
        };
        let guard = Went::Refused("loopback address");
        /// --proxy or not, the environment, the URL, where it must go.
        type Case<'a> = (bool, Vec<(&'a str, &'a str)>, &'a str, Went);
        let cases: Vec<Case> = vec![
            (true, vec![], &http, via_proxy(&http)),
            (true, vec![], &https, via_proxy(&https)),
            (true, vec![("NO_PROXY", "localhost")], &http, guard.clone()),
            (true, vec![("no_proxy", "localhost")], &https, guard.clone()),
            (true, vec![("NO_PROXY", "*")], &http, guard.clone()),
            // --proxy wins over the environment's proxies.
            (
                true,
                vec![("HTTP_PROXY", "http://127.0.0.1:9")],
                &http,
                via_proxy(&http),
            ),
            (false, vec![("HTTP_PROXY", &proxy)], &http, via_proxy(&http)),
            (false, vec![("http_proxy", &proxy)], &https, guard.clone()),
            (
                false,
                vec![("HTTP_PROXY", &proxy), ("NO_PROXY", "localhost")],
                &http,
                guard.clone(),
            ),
            (
                false,
                vec![("HTTPS_PROXY", &proxy)],
                &https,
                via_proxy(&https),
            ),
            (false, vec![("HTTPS_PROXY", &proxy)], &http, guard.clone()),
            (
                false,
                vec![
                    ("https_proxy", &proxy),
                    ("NO_PROXY", ".localhost,localhost"),
                ],
                &https,
                guard.clone(),
            ),
            (false, vec![("ALL_PROXY", &proxy)], &http, via_proxy(&http)),
            (
                false,
                vec![("all_proxy", &proxy)],
                &https,
                via_proxy(&https),
            ),
            (
                false,
                vec![("ALL_PROXY", &proxy), ("NO_PROXY", "localhost")],
                &https,
                guard.clone(),
            ),
            (
                false,
                vec![
                    ("HTTP_PROXY", &proxy),
                    ("HTTPS_PROXY", &proxy),
                    ("NO_PROXY", "127.0.0.0/8"),
                ],
                &https,
                via_proxy(&https),
            ),
            (false, vec![], &http, guard.clone()),
        ];
        for (i, (flag, vars, url, want)) in cases.into_iter().enumerate() {
            let env: HashMap<String, String> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let egress = Egress::with_env(
                &Options {
                    targets: Policy::default(),
                    proxy: flag.then(|| proxy.clone()),
                    ..options(None)
                },
                |k| env.get(k).cloned(),
            )
            .unwrap();
            let went = match post(&egress, url).await {
                Err(e) if refusal(&e).is_some() => match refusal(&e).map(|r| r.rule.clone()) {
                    Some(Rule::Guard(why)) => Went::Refused(why),
                    other => panic!("case {i}: {other:?}"),
                },
                // The stub answers 204 to a request, and a CONNECT with
                // 204 is a failed tunnel: either way the proxy got it.
                _ => Went::Proxy(
                    tokio::time::timeout(Duration::from_secs(5), seen.recv())
                        .await
                        .unwrap_or_else(|_| panic!("case {i}: the proxy got nothing"))
                        .unwrap(),
                ),
            };
            assert_eq!(went, want, "case {i}: --proxy {flag}, {vars:?}, {url}");
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            0,
            "a guarded address was connected to"
        );
        assert!(
            seen.try_recv().is_err(),
            "the proxy got more than it should"
        );
    }

    #[tokio::test]
    async fn deny_cidr_wins_over_the_proxy_and_a_host_named_like_it() {
        // The proxy on 127.0.0.2, the receivers' name (localhost) denied.
        let (proxy_port, mut seen) = proxy_stub("127.0.0.2").await;
        let (port, accepted) = guarded_receiver().await;
        let proxy = format!("http://127.0.0.2:{proxy_port}");
        let url = format!("http://localhost:{port}/hook");
        let deny = |cidrs: &[&str]| Options {
            targets: Policy {
                allow_private_targets: true,
                deny: cidrs.iter().map(|c| ssrf::parse_cidr(c).unwrap()).collect(),
                ..Policy::default()
            },
            proxy: Some(proxy.clone()),
            ..options(None)
        };
        let no_env = |_: &str| None;
        let denied = deny(&["127.0.0.1/32", "::1/128"]);
        // Through the proxy: the proxy resolves the name.
        let egress = Egress::with_env(&denied, no_env).unwrap();
        assert_eq!(post(&egress, &url).await.unwrap().status(), 204);
        assert_eq!(seen.recv().await.unwrap(), format!("POST {url} HTTP/1.1"));
        // Direct (NO_PROXY): refused by --deny-cidr.
        let egress =
            Egress::with_env(&denied, |k| (k == "NO_PROXY").then(|| "localhost".into())).unwrap();
        let e = post(&egress, &url).await.unwrap_err();
        assert!(
            matches!(refusal(&e).map(|r| &r.rule), Some(Rule::Deny(_))),
            "{e:?}"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 0);
        // The proxy's own address denied: a start-up error, by address or
        // by name.
        for proxy in [proxy.clone(), format!("http://localhost:{proxy_port}")] {
            let e = Egress::with_env(
                &Options {
                    proxy: Some(proxy.clone()),
                    ..deny(&["127.0.0.0/8", "::1/128"])
                },
                no_env,
            )
            .err()
            .expect("refused at start");
            assert!(matches!(e, SetupError::ProxyDenied { .. }), "{e}");
            assert!(e.to_string().contains("is in --deny-cidr"), "{e}");
        }
        // From the environment too.
        let e = Egress::with_env(
            &Options {
                proxy: None,
                ..deny(&["127.0.0.2/32"])
            },
            |k| (k == "HTTPS_PROXY").then(|| proxy.clone()),
        )
        .err()
        .expect("refused at start");
        assert!(
            e.to_string()
                .contains("127.0.0.2 is in --deny-cidr 127.0.0.2/32"),
            "{e}"
        );
    }

    #[test]
    fn a_proxy_of_another_scheme_or_no_url_is_a_start_up_error() {
        for (p, why) in [
            (
                "socks5://127.0.0.1:1080",
                "only http:// and https:// proxies",
            ),
            ("http://", "not an http:// or https:// proxy URL"),
        ] {
            let e = Egress::with_env(
                &Options {
                    proxy: Some(p.into()),
                    ..options(None)
                },
                |_| None,
            )
            .err()
            .expect("refused");
            assert!(e.to_string().contains(why), "{p}: {e}");
        }
    }

    #[test]
    fn proxy_credentials_never_reach_an_error_message() {
        assert_eq!(
            redact("http://user:secret@proxy.internal:3128"),
            "http://proxy.internal:3128/"
        );
        assert!(!redact("not a url").contains("not"));
    }
}
