//! The web console's sessions, kept in this process's memory: a session
//! has its own random id (the cookie's value; never a token, so a copied
//! cookie is no bearer token and a log of Cookie headers leaks no token),
//! an expiry the server enforces, and a CSRF token of its own. Signing out
//! ends it here; a restart (new tokens, a token removed) ends them all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::{Digest, Sha256};

use super::auth::{Identity, Role};

/// A session ends this long after sign-in, whatever the browser keeps.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// Sessions at most; at the bound the one closest to its end makes room.
pub const MAX_SESSIONS: usize = 1000;

/// What a session is: who signed in, and the CSRF token of its forms.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub token: Arc<str>,
    pub role: Role,
    pub csrf: String,
    pub expires: Instant,
}

pub struct Sessions {
    /// By the SHA-256 of the id: the map's own lookup then tells nothing
    /// about ids it holds.
    inner: Mutex<HashMap<[u8; 32], SessionInfo>>,
    lifetime: Duration,
    max: usize,
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

fn random_text() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new(SESSION_LIFETIME, MAX_SESSIONS)
    }
}

impl Sessions {
    pub fn new(lifetime: Duration, max: usize) -> Self {
        Sessions {
            inner: Mutex::new(HashMap::new()),
            lifetime,
            max: max.max(1),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], SessionInfo>> {
        // A panic elsewhere while holding the lock leaves a map still
        // consistent (every change is one insert or remove).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session for who signed in: (its id, what it is).
    pub fn start(&self, who: &Identity, now: Instant) -> (String, SessionInfo) {
        let id = random_text();
        let info = SessionInfo {
            token: who.name.clone(),
            role: who.role,
            csrf: random_text(),
            expires: now + self.lifetime,
        };
        let mut m = self.map();
        if m.len() >= self.max {
            m.retain(|_, s| s.expires > now);
        }
        while m.len() >= self.max {
            let Some(k) = m.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k) else {
                break;
            };
            m.remove(&k);
        }
        m.insert(key(&id), info.clone());
        (id, info)
    }

    /// The session of this id, while it lasts.
    pub fn get(&self, id: &str, now: Instant) -> Option<SessionInfo> {
        let k = key(id);
        let mut m = self.map();
        match m.get(&k) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                m.remove(&k);
                None
            }
            None => None,
        }
    }

    /// Ends a session; whether it was one.
    pub fn end(&self, id: &str) -> bool {
        self.map().remove(&key(id)).is_some()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map().len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::auth::same_secret;
    use super::*;

    fn who(name: &str) -> Identity {
        Identity {
            name: name.into(),
            role: Role::Admin,
        }
    }

    #[test]
    fn a_session_lasts_until_it_expires_or_ends() {
        let s = Sessions::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        let (id, info) = s.start(&who("alice"), t0);
        assert_eq!(&*info.token, "alice");
        assert_eq!(
            s.get(&id, t0 + Duration::from_secs(59)).unwrap().csrf,
            info.csrf
        );
        assert!(s.get(&id, t0 + Duration::from_secs(60)).is_none());
        assert!(s.get(&id, t0).is_none(), "an expired session is gone");

        let (id, _) = s.start(&who("alice"), t0);
        assert!(s.end(&id));
        assert!(s.get(&id, t0).is_none());
        assert!(!s.end(&id));
        assert!(s.get("", t0).is_none());
    }

    #[test]
    fn sessions_have_ids_and_csrf_tokens_of_their_own() {
        let s = Sessions::default();
        let now = Instant::now();
        let (a, ia) = s.start(&who("alice"), now);
        let (b, ib) = s.start(&who("alice"), now);
        assert_ne!(a, b);
        assert_ne!(ia.csrf, ib.csrf);
        assert!(same_secret(&ia.csrf, &ia.csrf.clone()));
        assert!(!same_secret(&ia.csrf, &ib.csrf));
        assert!(a.len() >= 43, "{a}");
    }

    #[test]
    fn the_store_is_bounded() {
        let s = Sessions::new(Duration::from_secs(60), 3);
        let t0 = Instant::now();
        let ids: Vec<String> = (0..5)
            .map(|i| s.start(&who("a"), t0 + Duration::from_secs(i)).0)
            .collect();
        assert_eq!(s.len(), 3);
        // The oldest made room.
        assert!(s.get(&ids[0], t0).is_none() && s.get(&ids[1], t0).is_none());
        assert!(s.get(&ids[4], t0).is_some());
    }
}
