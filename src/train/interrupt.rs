//! SIGINT and SIGTERM during training: the first one sets a flag the training loop checks after
//! each step (it saves a checkpoint, then returns `Error::Interrupted`); a second one ends the
//! process at once, which is safe because checkpoints are written atomically.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crate::error::{Error, Result};

/// The signal that asked training to stop (0: none).
static PENDING: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

/// Routes SIGINT and SIGTERM to the flag. Without it (library use, tests) they keep their
/// default action.
pub fn install() -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let pending = PENDING.get_or_init(|| Arc::new(AtomicUsize::new(0)));
    let seen = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        let err = |e: std::io::Error| Error::Other(format!("could not install the handler of signal {sig}: {e}"));
        // Runs first: on the second signal the flag is already set, and the process exits.
        signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, seen.clone()).map_err(err)?;
        signal_hook::flag::register(sig, seen.clone()).map_err(err)?;
        signal_hook::flag::register_usize(sig, pending.clone(), sig as usize).map_err(err)?;
    }
    Ok(())
}

/// The signal received since `install`, if any.
pub fn pending() -> Option<i32> {
    let sig = PENDING.get()?.load(Ordering::Relaxed);
    (sig != 0).then_some(sig as i32)
}
