//! Standard Webhooks signing: `v1,` + base64(HMAC-SHA256(key, "{id}.{ts}.{body}")),
//! where the key is the base64-decoded part of a `whsec_` secret; and the
//! request headers that are pg_webhook's own (`headers`).

pub mod headers;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Why a secret or a signature header was refused.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("invalid webhook secret: {0}")]
    InvalidSecret(String),
    #[error("invalid signature header: {0}")]
    InvalidSignature(String),
    #[error("{0}")]
    Internal(String),
}

type HmacSha256 = Hmac<Sha256>;

pub const SECRET_PREFIX: &str = "whsec_";
/// Standard Webhooks asks for 24 to 64 bytes of key material.
pub const MIN_KEY_BYTES: usize = 24;
pub const MAX_KEY_BYTES: usize = 64;

/// Decode a `whsec_<base64>` secret into its key bytes, refusing weak keys.
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, SigningError> {
    let b64 = secret
        .strip_prefix(SECRET_PREFIX)
        .ok_or_else(|| SigningError::InvalidSecret("a secret must start with \"whsec_\"".into()))?;
    let key = B64.decode(b64.as_bytes()).map_err(|_| {
        SigningError::InvalidSecret("the part after \"whsec_\" is not valid base64".into())
    })?;
    if key.len() < MIN_KEY_BYTES {
        return Err(SigningError::InvalidSecret(format!(
            "the key is {} bytes; at least {MIN_KEY_BYTES} are required",
            key.len()
        )));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(SigningError::InvalidSecret(format!(
            "the key is {} bytes; at most {MAX_KEY_BYTES} are allowed",
            key.len()
        )));
    }
    Ok(key)
}

/// A fresh `whsec_` secret with 32 bytes from the operating system's CSPRNG.
pub fn generate_secret() -> Result<String, SigningError> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key)
        .map_err(|e| SigningError::Internal(format!("no randomness available: {e}")))?;
    Ok(format!("{SECRET_PREFIX}{}", B64.encode(key)))
}

fn mac(key: &[u8], msg_id: &str, ts: i64, body: &[u8]) -> Result<HmacSha256, SigningError> {
    let mut mac = HmacSha256::new_from_slice(key)
        .map_err(|e| SigningError::Internal(format!("hmac key rejected: {e}")))?;
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(ts.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(mac)
}

/// One `v1,<base64>` signature entry.
pub fn sign(secret: &str, msg_id: &str, ts: i64, body: &[u8]) -> Result<String, SigningError> {
    let key = decode_secret(secret)?;
    let tag = mac(&key, msg_id, ts, body)?.finalize().into_bytes();
    Ok(format!("v1,{}", B64.encode(tag)))
}

/// True when any `v1,` entry of a (space-separated) signature header matches.
/// Comparison is constant-time per entry; unknown versions are skipped, as the
/// specification asks, so a future `v1a,` entry does not break verification.
pub fn verify(
    secret: &str,
    msg_id: &str,
    ts: i64,
    body: &[u8],
    header: &str,
) -> Result<bool, SigningError> {
    let key = decode_secret(secret)?;
    let expected = mac(&key, msg_id, ts, body)?.finalize().into_bytes();
    let mut ok = false;
    for entry in header.split_whitespace() {
        let Some((version, sig)) = entry.split_once(',') else {
            return Err(SigningError::InvalidSignature(format!(
                "entry {entry:?} has no comma"
            )));
        };
        if version != "v1" {
            continue;
        }
        if let Ok(bytes) = B64.decode(sig.as_bytes()) {
            ok |= bool::from(bytes.as_slice().ct_eq(expected.as_slice()));
        }
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn standard_webhooks_vector() {
        assert_eq!(sign(SECRET, ID, TS, BODY).unwrap(), SIG);
        assert!(verify(SECRET, ID, TS, BODY, SIG).unwrap());
        assert!(verify(SECRET, ID, TS, BODY, &format!("v1,AAAA {SIG}")).unwrap());
        assert!(!verify(SECRET, ID, TS + 1, BODY, SIG).unwrap());
        assert!(!verify(SECRET, ID, TS, b"{}", SIG).unwrap());
    }

    #[test]
    fn weak_and_malformed_secrets_are_refused() {
        assert!(decode_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(decode_secret("whsec_c2hvcnQ=").is_err());
        assert!(decode_secret("whsec_!!!").is_err());
        let fresh = generate_secret().unwrap();
        assert_eq!(decode_secret(&fresh).unwrap().len(), 32);
    }
}
