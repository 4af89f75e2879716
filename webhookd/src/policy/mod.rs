//! The decisions webhookd makes, each a pure function or state machine
//! tested on its own: when to try again (retry), whether an endpoint is
//! healthy enough to be sent to (breaker), which addresses a receiver may
//! be at (ssrf).

pub mod breaker;
pub mod retry;
pub mod ssrf;
