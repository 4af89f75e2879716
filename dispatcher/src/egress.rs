//! Egress: the one HTTP client every delivery goes out through — reqwest
//! over rustls, HTTP/2 where the receiver offers it through ALPN, HTTP/1.1
//! otherwise — and the SSRF guard as its DNS resolver.
//!
//! Why the guard sits in the resolver: reqwest connects to exactly the
//! addresses the resolver returns, so an address is checked and connected to
//! in one step, with no second lookup a rebinding DNS server could answer
//! differently. IP-literal URLs never reach a resolver: `check_url` checks
//! them before the request. Through a proxy, the proxy resolves the
//! receiver's name (the resolver then sees only the proxy's own name, which
//! is exempt): a deployment that needs both points webhookd at a filtering
//! proxy (such as smokescreen) that applies its own rules.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::ssrf::{self, Policy};

/// Sent with every request (also to a proxy).
pub const USER_AGENT: &str = concat!("pg_webhook/", env!("CARGO_PKG_VERSION"));
/// Idle connections kept per origin, and for how long.
const IDLE_PER_ORIGIN: usize = 64;
const IDLE_FOR: Duration = Duration::from_secs(60);
/// Largest response head (HTTP/2 header list) accepted.
const MAX_HEADER_LIST: u32 = 64 * 1024;
/// Parsed endpoint URLs cached (by their text); cleared when it grows past this.
const URL_CACHE: usize = 10_000;
/// Environment variables a proxy may come from (reqwest reads the same).
const PROXY_ENV: [&str; 6] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];

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
    /// it, HTTPS_PROXY / HTTP_PROXY / NO_PROXY apply.
    pub proxy: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{path}: {why}")]
    File { path: PathBuf, why: String },
    #[error("--proxy {0}")]
    Proxy(String),
    #[error("--client-cert and --client-key go together")]
    HalfIdentity,
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// The client, and what it needs per request.
pub struct Egress {
    client: reqwest::Client,
    targets: Arc<Policy>,
    urls: Mutex<HashMap<String, reqwest::Url>>,
}

/// Why a URL cannot be requested.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("invalid URL: {0}")]
    Invalid(String),
    #[error(transparent)]
    Refused(#[from] ssrf::Refused),
}

impl Egress {
    pub fn new(opts: &Options) -> Result<Self, SetupError> {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|e| SetupError::File {
                path: path.clone(),
                why: e.to_string(),
            })
        };
        let targets = Arc::new(opts.targets.clone());
        let mut exempt = HashSet::new();
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
        if let Some(path) = &opts.ca_file {
            let certs = reqwest::Certificate::from_pem_bundle(&read(path)?).map_err(|e| {
                SetupError::File {
                    path: path.clone(),
                    why: e.to_string(),
                }
            })?;
            if certs.is_empty() {
                return Err(SetupError::File {
                    path: path.clone(),
                    why: "no PEM certificate in the file".into(),
                });
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        match (&opts.client_cert, &opts.client_key) {
            (Some(cert), Some(key)) => {
                // One PEM with the chain and the key (PKCS#8, RSA or SEC1).
                let mut pem = read(cert)?;
                pem.push(b'\n');
                pem.extend(read(key)?);
                let identity = reqwest::Identity::from_pem(&pem).map_err(|e| SetupError::File {
                    path: key.clone(),
                    why: format!("with {}: {e}", cert.display()),
                })?;
                builder = builder.identity(identity);
            }
            (None, None) => {}
            _ => return Err(SetupError::HalfIdentity),
        }
        let proxies: Vec<String> = match &opts.proxy {
            Some(p) => {
                let proxy = reqwest::Proxy::all(p.as_str())
                    .map_err(|e| SetupError::Proxy(format!("{}: {e}", redact(p))))?
                    .no_proxy(reqwest::NoProxy::from_env());
                builder = builder.proxy(proxy);
                vec![p.clone()]
            }
            None => PROXY_ENV
                .iter()
                .filter_map(|v| std::env::var(v).ok())
                .collect(),
        };
        for p in &proxies {
            if let Some(host) = reqwest::Url::parse(p)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
            {
                exempt.insert(host);
            }
        }
        builder = builder.dns_resolver(Arc::new(GuardedResolver {
            targets: targets.clone(),
            exempt,
        }));
        Ok(Egress {
            client: builder.build()?,
            targets,
            urls: Mutex::default(),
        })
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The parsed URL of an endpoint (cached: one parse per URL, not per
    /// request), after checking an IP-literal host against the guard.
    pub fn url(&self, text: &str) -> Result<reqwest::Url, UrlError> {
        let cached = self.urls.lock().ok().and_then(|m| m.get(text).cloned());
        let url = match cached {
            Some(u) => u,
            None => {
                let u = reqwest::Url::parse(text).map_err(|e| UrlError::Invalid(e.to_string()))?;
                if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
                    return Err(UrlError::Invalid(format!("not an http(s) URL: {text}")));
                }
                if let Ok(mut m) = self.urls.lock() {
                    if m.len() >= URL_CACHE {
                        m.clear();
                    }
                    m.insert(text.to_string(), u.clone());
                }
                u
            }
        };
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal {
            let host = url.host_str().unwrap_or_default();
            self.targets.allowed(host, vec![SocketAddr::new(ip, 0)])?;
        }
        Ok(url)
    }
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
    /// Proxy hosts: a proxy is the operator's choice, often on a private
    /// network.
    exempt: HashSet<String>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        let targets = self.targets.clone();
        let exempt = self.exempt.contains(&host);
        Box::pin(async move {
            // Port 0: reqwest puts the URL's port in.
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|source| DnsError {
                    host: host.clone(),
                    source,
                })?
                .collect();
            let addrs = if exempt {
                addrs
            } else {
                targets.allowed(&host, addrs)?
            };
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
        let url = egress.url(url).unwrap();
        egress.client().post(url).body("{}").send().await
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

    #[test]
    fn proxy_credentials_never_reach_an_error_message() {
        assert_eq!(
            redact("http://user:secret@proxy.internal:3128"),
            "http://proxy.internal:3128/"
        );
        assert!(!redact("not a url").contains("not"));
    }
}
