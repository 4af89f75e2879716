//! Wake the dispatcher only when it is idle.
//!
//! A NOTIFY makes the committing backend take a cluster-wide lock, which costs a
//! tracked table about a third of its insert rate when every commit notifies.
//! A busy dispatcher does not need the hint (it will find the event on its next
//! claim), so the dispatcher publishes "I am idle until T" and a commit that
//! wrote events notifies only while that deadline lies in the future.
//!
//! The deadline lives in an 8-byte file in the data directory, mapped shared
//! by every backend that loads the library: reading it is one atomic load, and
//! it needs no `shared_preload_libraries`. One file per database, because each
//! database has its own dispatcher(s). A dispatcher that dies while idle leaves
//! a stale deadline; it expires by itself, so the worst case is a few
//! unnecessary NOTIFYs, and a lost wake-up only costs latency up to the
//! dispatcher's poll interval: correctness never depends on this flag.

use std::sync::atomic::{AtomicI64, AtomicPtr, Ordering};

use pgrx::pg_sys;

use crate::error::WebhookError;

static STATE: AtomicPtr<AtomicI64> = AtomicPtr::new(std::ptr::null_mut());

/// The notification channel `webhookd` listens on.
pub const CHANNEL: &std::ffi::CStr = c"webhook";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn map_state() -> Result<&'static AtomicI64, WebhookError> {
    let existing = STATE.load(Ordering::Acquire);
    if !existing.is_null() {
        // SAFETY: a non-null pointer was stored only after a successful mmap
        // that is never unmapped for the life of the process.
        return Ok(unsafe { &*existing });
    }
    // SAFETY: MyDatabaseId is set for every backend that can run our functions.
    let db = unsafe { pg_sys::MyDatabaseId };
    // Backends run with the data directory as their working directory.
    let dir = std::path::Path::new("pg_webhook");
    std::fs::create_dir_all(dir)
        .map_err(|e| WebhookError::Internal(format!("creating pg_webhook/: {e}")))?;
    let path = dir.join(format!("idle.{}", u32::from(db)));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| WebhookError::Internal(format!("opening {}: {e}", path.display())))?;
    file.set_len(8)
        .map_err(|e| WebhookError::Internal(format!("sizing {}: {e}", path.display())))?;
    use std::os::fd::AsRawFd;
    // SAFETY: mapping 8 bytes of a file we just sized to 8 bytes, shared, so
    // every backend sees the same word. The fd may be closed after mmap.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            8,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(WebhookError::Internal(format!(
            "mmap of {} failed: {}",
            path.display(),
            std::io::Error::last_os_error()
        )));
    }
    let ptr = ptr as *mut AtomicI64;
    match STATE.compare_exchange(
        std::ptr::null_mut(),
        ptr,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        // SAFETY: page-aligned mapping of 8 bytes is a valid AtomicI64.
        Ok(_) => Ok(unsafe { &*ptr }),
        Err(winner) => {
            // SAFETY: we own `ptr` and nobody else has seen it.
            unsafe { libc::munmap(ptr.cast(), 8) };
            // SAFETY: as above for the winner's mapping.
            Ok(unsafe { &*winner })
        }
    }
}

/// Dispatcher side: idle for the next `idle_ms` milliseconds (0: busy).
pub fn set_idle(idle_ms: i64) -> Result<(), WebhookError> {
    let state = map_state()?;
    let deadline = if idle_ms <= 0 {
        0
    } else {
        now_ms().saturating_add(idle_ms)
    };
    state.store(deadline, Ordering::Release);
    Ok(())
}

/// Committer side: should this commit wake a dispatcher? Yes while one is
/// idle; and the first committer to see that takes the flag down, so the
/// commits that follow before the dispatcher's next claim do not notify too
/// (with synchronous commit every NOTIFY holds a cluster-wide lock across the
/// WAL flush, so one per commit serializes them all).
pub fn take_wakeup() -> bool {
    let Ok(state) = map_state() else {
        // Without the flag, notifying is the safe choice.
        return true;
    };
    let deadline = state.load(Ordering::Acquire);
    deadline > now_ms()
        && state
            .compare_exchange(deadline, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
}

// commands/async.h is not among pgrx's bindings; the symbol is exported by
// the postgres executable since 9.0 with this signature.
extern "C-unwind" {
    fn Async_Notify(channel: *const std::ffi::c_char, payload: *const std::ffi::c_char);
}

/// Queue a NOTIFY on the channel, sent when the transaction commits.
///
/// # Safety
/// Must be called inside a transaction (PostgreSQL may raise an ERROR, so the
/// caller must be inside a pg_guard'ed frame).
pub unsafe fn notify() {
    Async_Notify(CHANNEL.as_ptr(), std::ptr::null());
}
