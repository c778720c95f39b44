//! The live window draws something: a few training steps, then `wgpt viz RUN --screenshot`, and the
//! plot area and the attention area of the PNG must not be one flat colour. Needs the cargo feature
//! `viz` and an X display (`.ci/run` starts Xvfb); without a display it skips, unless
//! WGPT_REQUIRE_DISPLAY=1 (set in CI) makes that a failure.
#![cfg(feature = "viz")]

use std::process::Command;

fn wgpt(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_wgpt")).args(args).output().expect("wgpt runs");
    assert!(
        out.status.success(),
        "wgpt {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn screenshot_shows_plots_and_an_attention_panel() {
    if std::env::var_os("DISPLAY").is_none() {
        assert!(std::env::var_os("WGPT_REQUIRE_DISPLAY").is_none(), "WGPT_REQUIRE_DISPLAY is set but DISPLAY is not");
        eprintln!("skipped: no DISPLAY (run under Xvfb, as .ci/run does)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("wgpt-viz-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let run = dir.join("run");
    let shot = dir.join("shot.png");
    wgpt(&["train", "--steps", "12", "--set", "log_every=1", "--set", "eval_every=6", "--out", run.to_str().unwrap()]);
    wgpt(&["viz", run.to_str().unwrap(), "--screenshot", shot.to_str().unwrap()]);

    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgba);
    let (w, h) = (info.width as i64, info.height as i64);
    let areas: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{}.json", shot.display())).unwrap()).unwrap();
    for name in ["plot", "map"] {
        let r: Vec<i64> = areas[name].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        let (x0, y0, x1, y1) = (r[0].max(0), r[1].max(0), r[2].min(w), r[3].min(h));
        assert!(x1 - x0 > 50 && y1 - y0 > 50, "{name} area {r:?} is too small in a {w}x{h} screenshot");
        let mut colours = std::collections::HashSet::new();
        for y in y0..y1 {
            for x in x0..x1 {
                let i = ((y * w + x) * 4) as usize;
                colours.insert([buf[i], buf[i + 1], buf[i + 2]]);
            }
        }
        assert!(colours.len() >= 4, "the {name} area {r:?} has {} colour(s): blank", colours.len());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
