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

/// Set while the trainer writes the checkpoint a signal asked for.
static SAVING_FOR_SIGNAL: AtomicBool = AtomicBool::new(false);

/// Runs `save`, the checkpoint the pending signal asked for (what `pause_in_save` holds).
pub fn save_for_signal<T>(save: impl FnOnce() -> T) -> T {
    SAVING_FOR_SIGNAL.store(true, Ordering::Relaxed);
    let r = save();
    SAVING_FOR_SIGNAL.store(false, Ordering::Relaxed);
    r
}

/// The test hook `WGPT_TEST_PAUSE_SAVE=FILE`: the checkpoint a signal asked for stops halfway (its
/// first file written, its manifest not) and writes FILE (`step N` and the half-written folder);
/// it goes on once FILE is removed. A test can then send a second signal that provably lands
/// during that save, however busy the machine. Without the variable nothing happens, and other
/// saves (every `save_every` steps) never pause.
pub fn pause_in_save(step: u64, half_written: &std::path::Path) {
    let Some(file) = std::env::var_os("WGPT_TEST_PAUSE_SAVE").map(std::path::PathBuf::from) else { return };
    if !SAVING_FOR_SIGNAL.load(Ordering::Relaxed) {
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
