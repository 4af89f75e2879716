//! TLS to the database: libpq's `sslmode` and `sslrootcert`, taken out of
//! the connection string (tokio-postgres knows only disable, prefer and
//! require, and refuses `sslrootcert`) and enforced by the rustls
//! configuration handed to tokio-postgres.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::ConfigError;

/// libpq's sslmode values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Mode {
    pub(super) fn parse(s: &str) -> Result<Self, ConfigError> {
        Ok(match s {
            "disable" => Mode::Disable,
            "allow" => Mode::Allow,
            "prefer" => Mode::Prefer,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            other => return Err(ConfigError::SslMode(other.to_string())),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Disable => "disable",
            Mode::Allow => "allow",
            Mode::Prefer => "prefer",
            Mode::Require => "require",
            Mode::VerifyCa => "verify-ca",
            Mode::VerifyFull => "verify-full",
        }
    }
}

/// The TLS options taken out of a connection string, and the rest of it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Split {
    pub(super) rest: String,
    pub(super) sslmode: Option<String>,
    pub(super) sslrootcert: Option<String>,
}

const TAKEN: [&str; 2] = ["sslmode", "sslrootcert"];

/// Takes `sslmode` and `sslrootcert` out of a connection string, in the URL
/// form (`postgres://...?sslmode=...`) or the key=value form, leaving the
/// rest as it was written.
pub(super) fn split_tls_options(conn: &str) -> Result<Split, ConfigError> {
    let mut split = Split {
        rest: String::new(),
        sslmode: None,
        sslrootcert: None,
    };
    let mut take = |key: &str, value: String| match key {
        "sslmode" => split.sslmode = Some(value),
        _ => split.sslrootcert = Some(value),
    };
    let is_url = conn.starts_with("postgres://") || conn.starts_with("postgresql://");
    if is_url {
        let (base, query) = match conn.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (conn, None),
        };
        let mut kept = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(k)?;
            if TAKEN.contains(&key.as_str()) {
                take(&key, percent_decode(v)?);
            } else {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        split.rest = rest;
        return Ok(split);
    }
    // key = value pairs; values unquoted (backslash escapes) or in single
    // quotes (backslash escapes), as libpq reads them.
    let mut rest = String::with_capacity(conn.len());
    let b = conn.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == b.len() {
            rest.push_str(&conn[start..]);
            break;
        }
        let key_start = i;
        while i < b.len() && b[i] != b'=' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &conn[key_start..i];
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == b.len() || b[i] != b'=' {
            return Err(ConfigError::Invalid(format!("missing \"=\" after {key:?}")));
        }
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = Vec::new();
        if i < b.len() && b[i] == b'\'' {
            i += 1;
            loop {
                match b.get(i) {
                    None => return Err(ConfigError::Invalid("unterminated quoted value".into())),
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') if i + 1 < b.len() => {
                        value.push(b[i + 1]);
                        i += 2;
                    }
                    Some(c) => {
                        value.push(*c);
                        i += 1;
                    }
                }
            }
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                value.push(b[i]);
                i += 1;
            }
        }
        if TAKEN.contains(&key) {
            let value = String::from_utf8(value)
                .map_err(|_| ConfigError::Invalid(format!("{key} is not UTF-8")))?;
            take(key, value);
        } else {
            rest.push_str(&conn[start..i]);
        }
    }
    split.rest = rest;
    Ok(split)
}

fn percent_decode(s: &str) -> Result<String, ConfigError> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| ConfigError::Invalid("a query parameter is not UTF-8".into()))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls configuration `mode` asks for (`root`: a PEM file, or
/// `system` for the bundled Web PKI roots).
pub(super) fn tls_config(
    mode: Mode,
    root: Option<&str>,
) -> Result<rustls::ClientConfig, ConfigError> {
    let provider = provider();
    let roots = root.map(load_roots).transpose()?;
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, roots) {
        // Never used: no TLS is negotiated.
        (Mode::Disable, _) => Arc::new(NoVerify(provider)),
        // libpq checks nothing in these modes, root certificate or not.
        (Mode::Allow | Mode::Prefer, _) | (Mode::Require, None) => Arc::new(NoVerify(provider)),
        (Mode::VerifyCa | Mode::VerifyFull, None) => {
            return Err(ConfigError::NoRootCert(mode.name()))
        }
        (Mode::Require | Mode::VerifyCa, Some(roots)) => Arc::new(ChainOnly(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| ConfigError::Tls(rustls::Error::General(e.to_string())))?,
        )),
        (Mode::VerifyFull, Some(roots)) => {
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| ConfigError::Tls(rustls::Error::General(e.to_string())))?
        }
    };
    let mut config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(config)
}

fn load_roots(path: &str) -> Result<RootCertStore, ConfigError> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    if path == "system" {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        return Ok(roots);
    }
    let err = |reason: String| ConfigError::RootCert {
        path: path.to_string(),
        reason,
    };
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| err(e.to_string()))? {
        let cert = cert.map_err(|e| err(e.to_string()))?;
        roots.add(cert).map_err(|e| err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(err("no PEM certificate in the file".into()));
    }
    Ok(roots)
}

/// `verify-ca`: the chain must lead to a root, the host name is not
/// checked. The Web PKI verifier checks the chain before the name, so a
/// name error means the chain passed.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer`, and `require` without a root certificate: encrypted, the
/// certificate not checked (the handshake's signatures still are).
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Database;
    use tokio_postgres::config::SslMode;

    fn split(s: &str) -> (String, Option<String>, Option<String>) {
        let s = split_tls_options(s).unwrap();
        (s.rest, s.sslmode, s.sslrootcert)
    }

    #[test]
    fn tls_options_are_taken_out_of_urls() {
        assert_eq!(
            split("postgresql://u:p@h:5432/db?sslmode=verify-full&application_name=x&sslrootcert=%2Ftmp%2Fca.pem"),
            (
                "postgresql://u:p@h:5432/db?application_name=x".into(),
                Some("verify-full".into()),
                Some("/tmp/ca.pem".into())
            )
        );
        assert_eq!(
            split("postgres://h/db?sslmode=require"),
            ("postgres://h/db".into(), Some("require".into()), None)
        );
        assert_eq!(
            split("postgres://h/db"),
            ("postgres://h/db".into(), None, None)
        );
    }

    #[test]
    fn tls_options_are_taken_out_of_key_value_strings() {
        assert_eq!(
            split("host=h sslmode=verify-ca  dbname='my db' sslrootcert = '/a b\\'c.pem' user=u"),
            (
                "host=h  dbname='my db' user=u".into(),
                Some("verify-ca".into()),
                Some("/a b'c.pem".into())
            )
        );
        assert_eq!(
            split("host=h password=se\\ cret"),
            ("host=h password=se\\ cret".into(), None, None)
        );
        assert!(split_tls_options("host=h sslmode").is_err());
        assert!(split_tls_options("host='h").is_err());
    }

    #[test]
    fn sslmodes_map_onto_tokio_postgres() {
        let ssl = |s: &str| Database::new(s, None).map(|d| d.config.get_ssl_mode());
        assert_eq!(
            ssl("postgres://h/db?sslmode=disable").unwrap(),
            SslMode::Disable
        );
        assert_eq!(ssl("postgres://h/db").unwrap(), SslMode::Prefer);
        assert_eq!(ssl("host=h sslmode=require").unwrap(), SslMode::Require);
        assert!(matches!(
            ssl("postgres://h/db?sslmode=verify-full"),
            Err(ConfigError::NoRootCert("verify-full"))
        ));
        assert!(matches!(
            ssl("postgres://h/db?sslmode=bogus"),
            Err(ConfigError::SslMode(_))
        ));
        assert_eq!(
            ssl("postgres://h/db?sslmode=verify-full&sslrootcert=system").unwrap(),
            SslMode::Require
        );
        let e = ssl("host=h sslmode=verify-ca sslrootcert=/nonexistent.pem").unwrap_err();
        assert!(e.to_string().contains("/nonexistent.pem"), "{e}");
    }
}
