//! A headless machine's terminal shows wgpt's own lines only: the drivers' display probes (EGL's
//! and Mesa's Vulkan device-select layer's Wayland connection, which prints "error:
//! XDG_RUNTIME_DIR is invalid or not set in the environment.") are silenced unless `WGPT_DEBUG`
//! is set.

mod common;
use common::process::{run, wgpt};

const NOISE: &str = "XDG_RUNTIME_DIR";

/// Output of wgpt with `args` and no XDG_RUNTIME_DIR, plain and with WGPT_DEBUG=1.
fn plain_and_debug(args: &[&str]) -> (String, String) {
    let go = |debug: bool| {
        let mut cmd = wgpt();
        cmd.env_remove("XDG_RUNTIME_DIR").env_remove("WGPT_DEBUG").args(args);
        if debug {
            cmd.env("WGPT_DEBUG", "1");
        }
        let ended = run(&mut cmd);
        assert!(ended.ok(), "wgpt {args:?} failed:\n{}", ended.all);
        ended.all
    };
    (go(false), go(true))
}

#[test]
fn driver_probes_print_nothing_without_wgpt_debug() {
    let mut shown = 0;
    for args in [
        &["info"][..],
        &["bench", "--preset", "tiny", "--steps", "1"],
        &["--backend", "gl", "bench", "--preset", "tiny", "--steps", "1"],
    ] {
        let (plain, debug) = plain_and_debug(args);
        assert!(!plain.contains(NOISE), "wgpt {args:?} printed a driver's message:\n{plain}");
        shown += debug.contains(NOISE) as usize;
    }
    // Where the drivers print nothing (no Wayland client library), there was nothing to silence.
    if shown == 0 {
        eprintln!("note: this machine's drivers print no {NOISE} message, even with WGPT_DEBUG");
    }
}
