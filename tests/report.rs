//! `wgpt report` end to end: a tiny run trained for a few steps into a temporary directory, then
//! the report; both PNGs decode with the expected dimensions and are not blank (several distinct
//! colours; the attention heat maps hold varied values).

mod common;
use std::collections::HashSet;
use std::path::Path;

use common::*;
use wgpt::train::config::RunConfig;
use wgpt::train::trainer::{load_corpus, Trainer};
use wgpt::viz::report::report;

/// (width, height, RGB pixels) of a PNG file.
fn decode(path: &Path) -> (u32, u32, Vec<[u8; 3]>) {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb, "{}", path.display());
    let px = buf[..info.buffer_size()].chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect();
    (info.width, info.height, px)
}

#[test]
fn report_of_a_short_run() {
    let dir = std::env::temp_dir().join(format!("wgpt-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg = RunConfig::preset("tiny").unwrap();
    (cfg.steps, cfg.log_every, cfg.eval_every, cfg.eval_batches, cfg.sample_tokens) = (12, 2, 6, 2, 8);
    let corpus = load_corpus(None).unwrap();
    Trainer::new(gpu(), cfg, &corpus).unwrap().run(&dir, |_: &str| {}).unwrap();

    let w = report(gpu(), &dir, &[], None).unwrap();
    assert_eq!(w.loss, dir.join("loss.png"));
    assert_eq!(w.attention, vec![dir.join("attention_L0.png"), dir.join("attention_L1.png")]);

    let (lw, lh, loss) = decode(&w.loss);
    assert_eq!((lw, lh), (800, 500));
    let colours: HashSet<[u8; 3]> = loss.iter().cloned().collect();
    println!("loss.png: {lw}x{lh}, {} colours", colours.len());
    assert!(colours.len() >= 5, "loss.png has {} colours", colours.len());
    // The train line (blue) and the val points (orange) are drawn.
    assert!(loss.contains(&[31, 119, 180]) && loss.contains(&[255, 127, 14]));

    for path in &w.attention {
        let (aw, ah, px) = decode(path);
        let colours: HashSet<[u8; 3]> = px.iter().cloned().collect();
        println!("{}: {aw}x{ah}, {} colours", path.display(), colours.len());
        // tiny: 2 heads side by side, 16 tokens of 16 px, labels on the axes.
        assert!(aw > 2 * 16 * 16 && ah > 16 * 16, "{aw}x{ah}");
        assert!(colours.len() >= 10, "{} colours", colours.len());
    }

    // A chosen layer and a prompt; --layer out of range is an error naming the layers.
    let w = report(gpu(), &dir, &[1], Some("Once upon")).unwrap();
    assert_eq!(w.attention, vec![dir.join("attention_L1.png")]);
    let e = report(gpu(), &dir, &[2], None).unwrap_err().to_string();
    assert!(e.contains("--layer 2") && e.contains("0..1"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
