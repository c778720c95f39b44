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

/// The test hook `WGPT_TEST_PAUSE_SAVE=FILE`: the first checkpoint written after a signal stops
/// halfway (its first file written, its manifest not) and writes FILE (`step N` and the
/// half-written folder); it goes on once FILE is removed. A test can then send a second signal
/// that provably lands during the save, however busy the machine. Without the variable, or
/// without a pending signal, nothing happens.
pub fn pause_in_save(step: u64, half_written: &std::path::Path) {
    static PAUSED: AtomicBool = AtomicBool::new(false);
    let Some(file) = std::env::var_os("WGPT_TEST_PAUSE_SAVE").map(std::path::PathBuf::from) else { return };
    if pending().is_none() || PAUSED.swap(true, Ordering::Relaxed) {
        return;
    }
    // Written whole, then renamed: the test never reads half of it.
    let tmp = file.with_extension("partial");
    let note = format!("step {step}\n{}\n", half_written.display());
    if std::fs::write(&tmp, note).and_then(|()| std::fs::rename(&tmp, &file)).is_err() {
        return;
    }
    // Bounded, so a test that forgot to release it does not hang a run forever.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while file.exists() && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
