//! The live window draws something and shows it on the display: a few training steps, then
//! `wgpt viz RUN --screenshot` (the window's own capture: the plot area and the attention area
//! must not be one flat colour), then `wgpt viz RUN` again with the X display itself captured by
//! `xwd`, which must show that same picture. Needs the cargo feature `viz` and an X display
//! (`make test-viz` starts Xvfb); without a display, or without xwd, it skips, unless
//! WGPT_REQUIRE_DISPLAY=1 (set in CI) makes that a failure.
#![cfg(feature = "viz")]

mod common;
use std::process::Command;
use std::time::{Duration, Instant};

use common::process::{run, Watched, DEADLINE};
use common::scratch;

/// Runs wgpt to its end; its stdout.
fn wgpt(args: &[&str]) -> String {
    let ended = run(common::process::wgpt().args(args));
    assert!(ended.ok(), "wgpt {args:?} failed:\n{}", ended.all);
    ended.stdout
}

/// Captures the display once a second until `done` holds for the share of `shot`'s pixels it
/// shows (see `overlap`), up to the tests' deadline; the last share.
fn watch_display(shot: &Rgb, mut done: impl FnMut(f64) -> bool, mut alive: impl FnMut() -> bool) -> f64 {
    let started = Instant::now();
    loop {
        let share = overlap(shot, &grab_screen().unwrap());
        if done(share) || started.elapsed() >= DEADLINE {
            return share;
        }
        assert!(alive(), "wgpt viz exited before its window was shown");
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn required() -> bool {
    std::env::var_os("WGPT_REQUIRE_DISPLAY").is_some()
}

/// An RGB image, row-major.
struct Rgb {
    w: usize,
    h: usize,
    px: Vec<[u8; 3]>,
}

fn read_png(path: &std::path::Path) -> Rgb {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgba);
    let px = buf[..info.buffer_size()].chunks(4).map(|c| [c[0], c[1], c[2]]).collect();
    Rgb { w: info.width as usize, h: info.height as usize, px }
}

/// The whole X screen, captured with `xwd -root` (an XWD dump: a big-endian header, a colour map,
/// then the pixels; Xvfb's 24-bit TrueColor visual stores them as 32-bit words with RGB masks).
fn grab_screen() -> Option<Rgb> {
    let out = Command::new("xwd").args(["-root", "-silent"]).output().ok()?;
    assert!(out.status.success(), "xwd failed: {}", String::from_utf8_lossy(&out.stderr));
    let d = out.stdout;
    let field = |i: usize| u32::from_be_bytes(d[4 * i..4 * i + 4].try_into().unwrap()) as usize;
    let (header, w, h, byte_order, bpp, line) = (field(0), field(4), field(5), field(7), field(11), field(12));
    let (masks, ncolors) = ([field(14), field(15), field(16)], field(19));
    assert_eq!(bpp, 32, "xwd: {bpp} bits per pixel; this test reads 32");
    let start = header + 12 * ncolors;
    let mut px = Vec::with_capacity(w * h);
    for y in 0..h {
        for x in 0..w {
            let b: [u8; 4] = d[start + y * line + 4 * x..][..4].try_into().unwrap();
            let v = if byte_order == 0 { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) } as usize;
            px.push(masks.map(|m| ((v & m) >> m.trailing_zeros()) as u8));
        }
    }
    Some(Rgb { w, h, px })
}

/// The share of `shot`'s pixels that `screen` has at the same place (the window sits at 0,0 on a
/// display without a window manager).
fn overlap(shot: &Rgb, screen: &Rgb) -> f64 {
    let mut same = 0;
    for y in 0..shot.h.min(screen.h) {
        for x in 0..shot.w.min(screen.w) {
            same += (shot.px[y * shot.w + x] == screen.px[y * screen.w + x]) as usize;
        }
    }
    same as f64 / (shot.w * shot.h) as f64
}

#[test]
fn window_shows_plots_and_attention_on_the_display() {
    if std::env::var_os("DISPLAY").is_none() {
        assert!(!required(), "WGPT_REQUIRE_DISPLAY is set but DISPLAY is not");
        eprintln!("skipped: no DISPLAY (run under Xvfb, as `make test-viz` does)");
        return;
    }
    let dir = scratch("viz-test");
    let run = dir.join("run");
    let run = run.to_str().unwrap();
    let shot_path = dir.join("shot.png");
    wgpt(&["train", "--steps", "12", "--set", "log_every=1", "--set", "eval_every=6", "--out", run]);
    // The window takes its picture once the steps and maps are in, however long that takes (its
    // own limit is 10 minutes, after which the line says what was missing).
    let said = wgpt(&["viz", run, "--screenshot", shot_path.to_str().unwrap()]);
    let line = said.lines().find(|l| l.starts_with("screenshot: ")).unwrap_or_else(|| panic!("no screenshot:\n{said}"));
    assert!(!line.contains("limit"), "{line}");

    // The window's own capture: plots and a heat map, not flat colour.
    let shot = read_png(&shot_path);
    let areas: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{}.json", shot_path.display())).unwrap()).unwrap();
    for name in ["plot", "map"] {
        let r: Vec<usize> =
            areas[name].as_array().unwrap().iter().map(|v| v.as_i64().unwrap().max(0) as usize).collect();
        let (x0, y0, x1, y1) = (r[0], r[1], r[2].min(shot.w), r[3].min(shot.h));
        assert!(x1 > x0 + 50 && y1 > y0 + 50, "{name} area {r:?} is too small in a {}x{} screenshot", shot.w, shot.h);
        let colours: std::collections::HashSet<[u8; 3]> =
            (y0..y1).flat_map(|y| (x0..x1).map(move |x| (x, y))).map(|(x, y)| shot.px[y * shot.w + x]).collect();
        assert!(colours.len() >= 4, "the {name} area {r:?} has {} colour(s): blank", colours.len());
    }

    // The display itself: before the window it does not look like the capture, then it does.
    // Both are awaited (the X server removes the screenshot's closed window when it gets to it;
    // start-up and the maps take seconds to minutes on a busy software adapter), up to the
    // tests' deadline.
    if grab_screen().is_none() {
        assert!(!required(), "xwd is needed to capture the display (apt-get install x11-apps)");
        eprintln!("display capture skipped: no xwd (apt-get install x11-apps)");
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let base = watch_display(&shot, |share| share < 0.5, || true);
    assert!(base < 0.5, "the display still matches the closed window after {} s ({base:.2})", DEADLINE.as_secs());
    let mut child = Watched::start(common::process::wgpt().args(["viz", run]));
    let shown = watch_display(&shot, |share| share >= 0.9, || child.running());
    drop(child);
    assert!(
        shown >= 0.9,
        "the display did not show the window within {} s: {:.0}% of its pixels",
        DEADLINE.as_secs(),
        shown * 100.0
    );
    eprintln!(
        "the display showed {:.1}% of the window's pixels (before it opened: {:.1}%)",
        shown * 100.0,
        base * 100.0
    );
    let _ = std::fs::remove_dir_all(&dir);
}
