//! The HTTP/1.1 client deliver uses: one POST per call on a kept-alive
//! connection, written and read by the calling task itself.
//!
//! Why not a general-purpose client: a webhook POST needs one request shape
//! and three things from the response (status, `Retry-After`, a body
//! prefix). Driving the socket from the delivery's own task, with the
//! request in one buffer, costs one write and one read per delivery; a
//! pooled client with a connection task per socket added two task hand-offs,
//! URL parsing and header-map copies per request, which measured as about
//! half of webhookd's CPU per event (BENCHMARKS.md, B7).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::ssrf;

/// Response body bytes read at most (the rest is not read; the connection
/// is then closed instead of reused).
pub const READ_CAP: usize = 64 * 1024;
/// A response head (with any 1xx interim heads before it) larger than this
/// is refused.
const HEAD_CAP: usize = 64 * 1024;
/// Chunked framing (size lines, extensions, trailers) read at most beside
/// the body's own bytes: a receiver cannot keep us reading with empty
/// framing either.
const FRAMING_CAP: usize = 64 * 1024;
/// A chunk-size line (with its extensions) longer than this is refused.
const LINE_CAP: usize = 4096;
/// Bodies up to this size go out in the head's write; a larger body is
/// written from the caller's buffer, never copied into a request buffer.
const COALESCE_BODY: usize = 16 * 1024;
/// A connection whose read buffer grew past this (a large response) gets a
/// fresh one before it is kept idle.
const IDLE_BUF: usize = 16 * 1024;
/// Idle connections kept per origin, and for how long.
const IDLE_PER_ORIGIN: usize = 512;
const IDLE_FOR: Duration = Duration::from_secs(60);
/// Parsed targets cached (by URL); cleared when it grows past this.
const TARGET_CACHE: usize = 10_000;

#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Which addresses may be connected to (the SSRF guard and the
    /// operator's allow and deny lists).
    pub targets: ssrf::Policy,
    pub connect_timeout: Duration,
    /// PEM file of extra certificate authorities to trust (besides the
    /// bundled Web PKI roots), for receivers behind a private CA.
    pub ca_file: Option<std::path::PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid URL: {0}")]
    Url(String),
    #[error("invalid header {0:?}: {1}")]
    Header(String, &'static str),
    #[error("timeout")]
    Timeout,
    #[error("connect error: {0}")]
    Connect(String),
    #[error(transparent)]
    Refused(#[from] ssrf::Refused),
    #[error("request error: {0}")]
    Io(#[from] io::Error),
    #[error("invalid response: {0}")]
    Protocol(String),
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// What a receiver answered.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub retry_after: Option<String>,
    /// Up to `READ_CAP` bytes of the body.
    pub body: Vec<u8>,
    /// Why the body could not be read to its end (status is still valid).
    pub body_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Origin {
    tls: bool,
    host: Host,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

#[derive(Debug)]
struct Target {
    origin: Origin,
    /// `POST <path> HTTP/1.1\r\nhost: <host>\r\n`, the same for every request.
    preamble: Vec<u8>,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A connection and its read buffer (kept across requests, so a kept-alive
/// connection allocates nothing per request once warm).
struct Conn {
    io: Stream,
    buf: Vec<u8>,
    idle_since: Instant,
}

impl Conn {
    /// Whether an idle connection can still carry a request: the peer has
    /// neither closed it nor sent anything unasked (for TLS, a close_notify).
    fn reusable(&self) -> bool {
        if self.idle_since.elapsed() > IDLE_FOR {
            return false;
        }
        let mut probe = [0u8; 1];
        let mut rb = ReadBuf::new(&mut probe);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        matches!(self.io.tcp().poll_peek(&mut cx, &mut rb), Poll::Pending)
    }

    async fn fill(&mut self) -> io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(8192);
        }
        self.io.read_buf(&mut self.buf).await
    }
}

pub struct Client {
    opts: HttpOptions,
    tls: tokio_rustls::TlsConnector,
    targets: Mutex<HashMap<String, Arc<Target>>>,
    idle: Mutex<Idle>,
}

/// Idle connections by origin. Swept now and then, so the sockets of an
/// origin no longer used (an endpoint deleted or moved) are closed too.
struct Idle {
    by_origin: HashMap<Origin, Vec<Conn>>,
    swept: Instant,
}

impl Client {
    pub fn new(opts: HttpOptions) -> Result<Self, Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &opts.ca_file {
            use rustls::pki_types::pem::PemObject;
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
            let mut added = 0;
            for cert in certs {
                let cert = cert.map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
                added += 1;
            }
            if added == 0 {
                return Err(Error::Tls(format!(
                    "{}: no PEM certificate in the file",
                    path.display()
                )));
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Client {
            opts,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            targets: Mutex::default(),
            idle: Mutex::new(Idle {
                by_origin: HashMap::new(),
                swept: Instant::now(),
            }),
        })
    }

    fn target(&self, url: &str) -> Result<Arc<Target>, Error> {
        if let Some(t) = self.targets.lock().ok().and_then(|m| m.get(url).cloned()) {
            return Ok(t);
        }
        let t = Arc::new(parse_target(url)?);
        if let Ok(mut m) = self.targets.lock() {
            if m.len() >= TARGET_CACHE {
                m.clear();
            }
            m.insert(url.to_string(), t.clone());
        }
        Ok(t)
    }

    fn checkout(&self, origin: &Origin) -> Option<Conn> {
        let mut idle = self.idle.lock().ok()?;
        let conns = idle.by_origin.get_mut(origin)?;
        while let Some(c) = conns.pop() {
            if c.reusable() {
                return Some(c);
            }
        }
        None
    }

    fn checkin(&self, origin: &Origin, mut conn: Conn) {
        conn.idle_since = Instant::now();
        if conn.buf.capacity() > IDLE_BUF {
            conn.buf = Vec::new();
        }
        if let Ok(mut idle) = self.idle.lock() {
            if idle.swept.elapsed() > IDLE_FOR / 2 {
                idle.by_origin.retain(|_, conns| {
                    conns.retain(Conn::reusable);
                    !conns.is_empty()
                });
                idle.swept = Instant::now();
            }
            let conns = idle.by_origin.entry(origin.clone()).or_default();
            if conns.len() < IDLE_PER_ORIGIN {
                conns.push(conn);
            }
        }
    }

    /// POST `body` to `url` with `headers` (name, value pairs), all within
    /// `timeout`. A kept-alive connection that turns out closed before any
    /// of the response arrived is replaced by a new one, once.
    pub async fn post<'h>(
        &self,
        url: &str,
        headers: impl Iterator<Item = (&'h str, &'h str)>,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Response, Error> {
        let deadline = Instant::now() + timeout;
        let target = self.target(url)?;
        let request = Request::build(&target, headers, body)?;
        if let Some(conn) = self.checkout(&target.origin) {
            match self.exchange(&target, conn, &request, deadline).await {
                Err(Exchange::Stale(_)) => {}
                Err(Exchange::Failed(e)) => return Err(e),
                Ok(r) => return Ok(r),
            }
        }
        let connect_by = deadline.min(Instant::now() + self.opts.connect_timeout);
        let io = match tokio::time::timeout_at(connect_by, self.connect(&target.origin)).await {
            Ok(r) => r?,
            Err(_) if connect_by < deadline => {
                return Err(Error::Connect("connect timeout".into()))
            }
            Err(_) => return Err(Error::Timeout),
        };
        let conn = Conn {
            io,
            buf: Vec::new(),
            idle_since: Instant::now(),
        };
        self.exchange(&target, conn, &request, deadline)
            .await
            .map_err(|e| match e {
                Exchange::Stale(e) | Exchange::Failed(e) => e,
            })
    }

    async fn connect(&self, origin: &Origin) -> Result<Stream, Error> {
        let addrs: Vec<SocketAddr> = match &origin.host {
            Host::Ip(ip) => vec![SocketAddr::new(*ip, origin.port)],
            Host::Name(name) => tokio::net::lookup_host((name.as_str(), origin.port))
                .await
                .map_err(|e| Error::Connect(format!("resolving {name}: {e}")))?
                .collect(),
        };
        let host = match &origin.host {
            Host::Ip(ip) => ip.to_string(),
            Host::Name(n) => n.clone(),
        };
        let addrs = self.opts.targets.allowed(&host, addrs)?;
        let mut last = None;
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let tcp = match (tcp, last) {
            (Some(s), _) => s,
            (None, Some(e)) => return Err(Error::Connect(e.to_string())),
            (None, None) => return Err(Error::Connect(format!("{host} has no address"))),
        };
        tcp.set_nodelay(true)?;
        if !origin.tls {
            return Ok(Stream::Plain(tcp));
        }
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| Error::Connect(format!("TLS server name {host}: {e}")))?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| Error::Connect(format!("TLS handshake: {e}")))?;
        Ok(Stream::Tls(Box::new(tls)))
    }

    /// One request and its response on `conn`; the connection goes back to
    /// the pool when the response left it clean for the next request.
    async fn exchange(
        &self,
        target: &Target,
        mut conn: Conn,
        request: &Request<'_>,
        deadline: Instant,
    ) -> Result<Response, Exchange> {
        let head = tokio::time::timeout_at(deadline, async {
            // Until the first response byte arrives, a failure on a reused
            // connection means the peer had closed it: safe to try a new one.
            conn.io
                .write_all(&request.head)
                .await
                .map_err(Exchange::stale)?;
            if !request.body.is_empty() {
                conn.io
                    .write_all(request.body)
                    .await
                    .map_err(Exchange::stale)?;
            }
            conn.io.flush().await.map_err(Exchange::stale)?;
            read_head(&mut conn).await
        })
        .await
        .map_err(|_| Exchange::Failed(Error::Timeout))??;
        let mut resp = Response {
            status: head.status,
            retry_after: head.retry_after,
            body: Vec::new(),
            body_error: None,
        };
        let framing = head.framing;
        let body = tokio::time::timeout_at(deadline, read_body(&mut conn, framing, &mut resp.body));
        let clean = match body.await {
            Ok(Ok(complete)) => complete && head.keep_alive,
            Ok(Err(e)) => {
                resp.body_error = Some(format!("reading response: {e}"));
                false
            }
            // A slow body: the status is what counts, keep what arrived.
            Err(_) => false,
        };
        if clean && conn.buf.is_empty() {
            self.checkin(&target.origin, conn);
        }
        Ok(resp)
    }
}

enum Exchange {
    /// Failed before any of the response arrived.
    Stale(Error),
    Failed(Error),
}

impl Exchange {
    fn stale(e: io::Error) -> Self {
        Exchange::Stale(Error::Io(e))
    }
}

fn parse_target(url: &str) -> Result<Target, Error> {
    let u = url::Url::parse(url).map_err(|e| Error::Url(e.to_string()))?;
    let tls = match u.scheme() {
        "https" => true,
        "http" => false,
        other => return Err(Error::Url(format!("unsupported scheme {other}"))),
    };
    let host = match u.host() {
        Some(url::Host::Domain(d)) => Host::Name(d.to_string()),
        Some(url::Host::Ipv4(ip)) => Host::Ip(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Host::Ip(IpAddr::V6(ip)),
        None => return Err(Error::Url("no host".into())),
    };
    let port = u
        .port_or_known_default()
        .ok_or_else(|| Error::Url("no port".into()))?;
    let mut path = u.path().to_string();
    if let Some(q) = u.query() {
        path.push('?');
        path.push_str(q);
    }
    // The authority as the URL wrote it (brackets for IPv6, the port only
    // when it is not the scheme's default).
    let authority = match u.port() {
        Some(p) => format!("{}:{p}", u.host_str().unwrap_or_default()),
        None => u.host_str().unwrap_or_default().to_string(),
    };
    let preamble = format!("POST {path} HTTP/1.1\r\nhost: {authority}\r\n").into_bytes();
    Ok(Target {
        origin: Origin { tls, host, port },
        preamble,
    })
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A request ready to write: the head (with the body when it is small),
/// then the body itself when it is not.
struct Request<'b> {
    head: Vec<u8>,
    body: &'b [u8],
}

impl<'b> Request<'b> {
    fn build<'h>(
        target: &Target,
        headers: impl Iterator<Item = (&'h str, &'h str)>,
        body: &'b [u8],
    ) -> Result<Self, Error> {
        let coalesce = body.len() <= COALESCE_BODY;
        let mut out =
            Vec::with_capacity(target.preamble.len() + 512 + if coalesce { body.len() } else { 0 });
        out.extend_from_slice(&target.preamble);
        for (name, value) in headers {
            if name.is_empty() || !name.bytes().all(is_token) {
                return Err(Error::Header(name.into(), "not a valid header name"));
            }
            if let Some(why) = invalid_value(value) {
                return Err(Error::Header(name.into(), why));
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        if coalesce {
            out.extend_from_slice(body);
            return Ok(Request {
                head: out,
                body: &[],
            });
        }
        Ok(Request { head: out, body })
    }
}

/// Why a header value cannot be sent: no line breaks or NULs (a value must
/// not smuggle in a header), no other control characters but tab.
fn invalid_value(value: &str) -> Option<&'static str> {
    value
        .bytes()
        .any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
        .then_some("control character in the value")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

struct Head {
    status: u16,
    retry_after: Option<String>,
    framing: Framing,
    keep_alive: bool,
}

/// Reads the final response head (skipping 1xx interim responses).
async fn read_head(conn: &mut Conn) -> Result<Head, Exchange> {
    let mut got_any = false;
    // Bytes of the interim (1xx) heads already consumed: they count
    // against HEAD_CAP too, or an endless stream of 100 Continue would be
    // read until the deadline.
    let mut interim = 0usize;
    loop {
        let parsed = parse_head(&conn.buf).map_err(Exchange::Failed)?;
        match parsed {
            Some((len, head)) => {
                conn.buf.drain(..len);
                got_any = true;
                interim = interim.saturating_add(len);
                if (100..200).contains(&head.status) {
                    if head.status == 101 {
                        return Err(Exchange::Failed(Error::Protocol(
                            "unexpected 101 Switching Protocols".into(),
                        )));
                    }
                    if interim > HEAD_CAP {
                        return Err(Exchange::Failed(Error::Protocol(
                            "response head too large".into(),
                        )));
                    }
                    continue;
                }
                return Ok(head);
            }
            None => {
                if interim.saturating_add(conn.buf.len()) > HEAD_CAP {
                    return Err(Exchange::Failed(Error::Protocol(
                        "response head too large".into(),
                    )));
                }
                let n = conn.fill().await;
                let fresh = !got_any && conn.buf.is_empty();
                match n {
                    Ok(0) if fresh => {
                        return Err(Exchange::Stale(Error::Protocol(
                            "connection closed before a response".into(),
                        )))
                    }
                    Ok(0) => {
                        return Err(Exchange::Failed(Error::Protocol(
                            "connection closed in the middle of the response head".into(),
                        )))
                    }
                    Ok(_) => {}
                    Err(e) if fresh => return Err(Exchange::stale(e)),
                    Err(e) => return Err(Exchange::Failed(Error::Io(e))),
                }
            }
        }
    }
}

/// The head at the start of `buf` and its length, or None if incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<(usize, Head)>, Error> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Error::Protocol(e.to_string())),
    };
    let status = resp.code.unwrap_or(0);
    let mut keep_alive = resp.version == Some(1);
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut retry_after = None;
    for h in resp.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value
                .parse()
                .map_err(|_| Error::Protocol(format!("bad content-length {value:?}")))?;
            if length.is_some_and(|l| l != n) {
                return Err(Error::Protocol("conflicting content-length".into()));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        } else if h.name.eq_ignore_ascii_case("retry-after") {
            retry_after = Some(value.to_string());
        }
    }
    let framing = if status == 204 || status == 304 || (100..200).contains(&status) {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    Ok(Some((
        len,
        Head {
            status,
            retry_after,
            framing,
            keep_alive,
        },
    )))
}

/// Reads the body into `out` (at most `READ_CAP` bytes kept, and never
/// more read); true when the body was read to its end, leaving the
/// connection at the next response.
async fn read_body(conn: &mut Conn, framing: Framing, out: &mut Vec<u8>) -> Result<bool, Error> {
    match framing {
        Framing::Empty => Ok(true),
        Framing::Length(n) => match usize::try_from(n) {
            Ok(n) if n <= READ_CAP => {
                take(conn, n, out).await?;
                Ok(true)
            }
            _ => {
                take_until_close(conn, out).await?;
                Ok(false)
            }
        },
        Framing::UntilClose => {
            take_until_close(conn, out).await?;
            Ok(false)
        }
        Framing::Chunked => {
            let mut framing_read = 0usize;
            loop {
                let line = read_line(conn, &mut framing_read).await?;
                let size = chunk_size(&line)?;
                if size == 0 {
                    // Trailers, up to the empty line.
                    while !read_line(conn, &mut framing_read).await?.is_empty() {}
                    return Ok(true);
                }
                let room = READ_CAP - out.len();
                match usize::try_from(size) {
                    Ok(size) if size <= room => take(conn, size, out).await?,
                    // Larger than what is left to keep: keep what fits and
                    // read no further (the connection is not reused).
                    _ => {
                        take_available(conn, room, out).await?;
                        return Ok(false);
                    }
                }
                if !read_line(conn, &mut framing_read).await?.is_empty() {
                    return Err(Error::Protocol("chunk not followed by CRLF".into()));
                }
            }
        }
    }
}

/// The size on a chunk-size line (hex digits, then optional extensions).
fn chunk_size(line: &[u8]) -> Result<u64, Error> {
    let digits = line
        .split(|b| *b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    let bad = || {
        Error::Protocol(format!(
            "bad chunk size {:?}",
            String::from_utf8_lossy(&digits[..digits.len().min(32)])
        ))
    };
    if digits.is_empty() || digits.len() > 16 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(bad());
    }
    let digits = std::str::from_utf8(digits).map_err(|_| bad())?;
    u64::from_str_radix(digits, 16).map_err(|_| bad())
}

/// Moves exactly `n` body bytes (`n <= READ_CAP`, so the buffer stays
/// bounded) from the connection into `out`.
async fn take(conn: &mut Conn, n: usize, out: &mut Vec<u8>) -> Result<(), Error> {
    debug_assert!(n <= READ_CAP);
    while conn.buf.len() < n {
        if conn.fill().await? == 0 {
            return Err(Error::Protocol(
                "connection closed in the middle of the body".into(),
            ));
        }
    }
    out.extend_from_slice(&conn.buf[..n]);
    conn.buf.drain(..n);
    Ok(())
}

/// Moves up to `n` bytes into `out`, reading until they are in or the peer
/// closes.
async fn take_available(conn: &mut Conn, n: usize, out: &mut Vec<u8>) -> Result<(), Error> {
    let mut left = n;
    loop {
        let k = conn.buf.len().min(left);
        out.extend_from_slice(&conn.buf[..k]);
        conn.buf.drain(..k);
        left -= k;
        if left == 0 || conn.fill().await? == 0 {
            return Ok(());
        }
    }
}

/// Keeps reading until the peer closes or `READ_CAP` is reached; the
/// connection is not reused after this.
async fn take_until_close(conn: &mut Conn, out: &mut Vec<u8>) -> Result<(), Error> {
    take_available(conn, READ_CAP.saturating_sub(out.len()), out).await
}

/// One CRLF-terminated line of chunked framing (without the CRLF), at most
/// `LINE_CAP` bytes; `read` counts the framing bytes of this body, refused
/// past `FRAMING_CAP`.
async fn read_line(conn: &mut Conn, read: &mut usize) -> Result<Vec<u8>, Error> {
    let mut scanned = 0;
    loop {
        if let Some(i) = conn.buf[scanned..].windows(2).position(|w| w == b"\r\n") {
            let end = scanned + i;
            *read = read.saturating_add(end + 2);
            if *read > FRAMING_CAP {
                return Err(Error::Protocol("too much chunked framing".into()));
            }
            let line = conn.buf[..end].to_vec();
            conn.buf.drain(..end + 2);
            return Ok(line);
        }
        if conn.buf.len() > LINE_CAP {
            return Err(Error::Protocol("chunk line too long".into()));
        }
        scanned = conn.buf.len().saturating_sub(1);
        if conn.fill().await? == 0 {
            return Err(Error::Protocol(
                "connection closed in the middle of the body".into(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_keep_the_path_query_and_authority() {
        let t = parse_target("https://hooks.example.com/a/b?x=1&y=2").unwrap();
        assert_eq!(
            t.preamble,
            b"POST /a/b?x=1&y=2 HTTP/1.1\r\nhost: hooks.example.com\r\n"
        );
        assert_eq!(t.origin.port, 443);
        assert!(t.origin.tls);
        let t = parse_target("http://[::1]:8080").unwrap();
        assert_eq!(t.preamble, b"POST / HTTP/1.1\r\nhost: [::1]:8080\r\n");
        assert_eq!(t.origin.host, Host::Ip("::1".parse().unwrap()));
        assert!(parse_target("ftp://x/").is_err());
        assert!(parse_target("not a url").is_err());
    }

    #[test]
    fn requests_refuse_header_injection() {
        let t = parse_target("http://h/x").unwrap();
        let ok = Request::build(&t, [("x-a", "1")].into_iter(), b"{}").unwrap();
        assert_eq!(
            ok.head,
            b"POST /x HTTP/1.1\r\nhost: h\r\nx-a: 1\r\ncontent-length: 2\r\n\r\n{}"
        );
        assert!(ok.body.is_empty());
        assert!(Request::build(&t, [("x-a", "1\r\nx-b: 2")].into_iter(), b"").is_err());
        assert!(Request::build(&t, [("x-a", "1\x01")].into_iter(), b"").is_err());
        assert!(Request::build(&t, [("x a", "1")].into_iter(), b"").is_err());
        assert!(Request::build(&t, [("", "1")].into_iter(), b"").is_err());
    }

    #[test]
    fn a_large_body_is_written_from_the_callers_buffer() {
        let t = parse_target("http://h/x").unwrap();
        let body = vec![b'a'; COALESCE_BODY + 1];
        let r = Request::build(&t, std::iter::empty(), &body).unwrap();
        assert!(r.head.ends_with(b"content-length: 16385\r\n\r\n"));
        assert!(std::ptr::eq(r.body, body.as_slice()));
    }

    #[test]
    fn chunk_sizes_are_hex_and_bounded() {
        assert_eq!(chunk_size(b"1f;name=x").unwrap(), 31);
        assert_eq!(chunk_size(b"ffffffffffffffff").unwrap(), u64::MAX);
        for bad in [
            &b""[..],
            b"+1",
            b"-1",
            b"0x10",
            b"1 2",
            b"10000000000000000",
            b"g",
        ] {
            assert!(chunk_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn heads_give_status_framing_and_retry_after() {
        let (n, h) =
            parse_head(b"HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nContent-Length: 3\r\n\r\nabc")
                .unwrap()
                .unwrap();
        assert_eq!((n, h.status, h.framing), (56, 503, Framing::Length(3)));
        assert_eq!(h.retry_after.as_deref(), Some("7"));
        assert!(h.keep_alive);
        let (_, h) = parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        let (_, h) = parse_head(b"HTTP/1.0 200 OK\r\n\r\n").unwrap().unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::UntilClose, false));
        let (_, h) = parse_head(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Empty, false));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le")
            .unwrap()
            .is_none());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
    }

    /// A one-connection server answering each request with the next canned
    /// response; returns its address and the requests it saw.
    async fn server(
        replies: Vec<&'static [u8]>,
    ) -> (String, tokio::task::JoinHandle<Vec<Vec<u8>>>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let h = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut seen = Vec::new();
            for reply in replies {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                // Reads until the whole request (head + 2-byte body) is in.
                while !req.windows(4).any(|w| w == b"\r\n\r\n") || !req.ends_with(b"{}") {
                    let n = s.read(&mut buf).await.unwrap();
                    if n == 0 {
                        return seen;
                    }
                    req.extend_from_slice(&buf[..n]);
                }
                seen.push(req);
                s.write_all(reply).await.unwrap();
            }
            seen
        });
        (format!("http://{addr}/hook"), h)
    }

    fn client() -> Client {
        Client::new(HttpOptions {
            targets: ssrf::Policy {
                allow_private_targets: true,
                ..ssrf::Policy::default()
            },
            connect_timeout: Duration::from_secs(2),
            ca_file: None,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn chunked_and_sized_bodies_on_one_kept_alive_connection() {
        let (url, srv) = server(vec![
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n",
            b"HTTP/1.1 429 Slow\r\nRetry-After: 2\r\nContent-Length: 4\r\n\r\nwait",
        ])
        .await;
        let c = client();
        let hdrs = [("webhook-id", "msg_1")];
        let r = c
            .post(&url, hdrs.into_iter(), b"{}", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"abcde"[..]));
        let r = c
            .post(&url, hdrs.into_iter(), b"{}", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (429, &b"wait"[..]));
        assert_eq!(r.retry_after.as_deref(), Some("2"));
        // Both requests on the server's one connection.
        let seen = srv.await.unwrap();
        assert_eq!(seen.len(), 2);
        assert!(seen[0].starts_with(b"POST /hook HTTP/1.1\r\nhost: 127.0.0.1:"));
        assert!(seen[0].ends_with(b"webhook-id: msg_1\r\ncontent-length: 2\r\n\r\n{}"));
    }

    #[tokio::test]
    async fn a_closed_kept_alive_connection_is_replaced() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", l.local_addr().unwrap());
        let srv = tokio::spawn(async move {
            // Each connection answers one request and is then closed, without
            // saying so.
            for _ in 0..2 {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await.unwrap();
                s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                    .await
                    .unwrap();
                drop(s);
            }
        });
        let c = client();
        for _ in 0..2 {
            let r = c
                .post(&url, std::iter::empty(), b"{}", Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(r.status, 204);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        srv.await.unwrap();
    }

    /// A server answering its one connection with `reply` and then
    /// `forever` over and over until the client goes away.
    async fn hostile(reply: &'static [u8], forever: &'static [u8]) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", l.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await.unwrap();
            if s.write_all(reply).await.is_err() {
                return;
            }
            while !forever.is_empty() && s.write_all(forever).await.is_ok() {}
        });
        url
    }

    #[tokio::test]
    async fn a_huge_chunk_size_keeps_the_status_and_reads_no_more_than_the_cap() {
        let url = hostile(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nA\r\nffffffffffffffff\r\n",
            &[0u8; 8192],
        )
        .await;
        let r = client()
            .post(&url, std::iter::empty(), b"{}", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), READ_CAP);
        assert_eq!(r.body[0], b'A');
    }

    #[tokio::test]
    async fn endless_bodies_and_framing_are_cut() {
        for (reply, forever) in [
            (&b"HTTP/1.1 200 OK\r\n\r\n"[..], &b"xxxxxxxx"[..]),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
                b"x",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"1\r\nx\r\n",
            ),
        ] {
            let url = hostile(reply, forever).await;
            let r = client()
                .post(&url, std::iter::empty(), b"{}", Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(r.status, 200);
            assert!(r.body.len() <= READ_CAP);
        }
        // Framing without end: trailers that never stop.
        let url = hostile(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
            b"x-trailer: 1\r\n",
        )
        .await;
        let r = client()
            .post(&url, std::iter::empty(), b"{}", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert!(r.body_error.unwrap().contains("framing"));
    }

    #[tokio::test]
    async fn endless_heads_are_refused() {
        for (reply, forever) in [
            (&b"HTTP/1.1 200 OK\r\nx-big: "[..], &b"aaaaaaaa"[..]),
            (b"", b"HTTP/1.1 100 Continue\r\n\r\n"),
        ] {
            let url = hostile(reply, forever).await;
            let e = client()
                .post(&url, std::iter::empty(), b"{}", Duration::from_secs(5))
                .await
                .unwrap_err();
            assert!(e.to_string().contains("too large"), "{e}");
        }
    }

    #[tokio::test]
    async fn a_slow_response_times_out() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", l.local_addr().unwrap());
        let _srv = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(s);
        });
        let e = client()
            .post(&url, std::iter::empty(), b"{}", Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Timeout), "{e}");
    }
}
