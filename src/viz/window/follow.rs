//! `wgpt viz RUN_DIR`: follows a run directory from another process, turning new lines of its
//! metrics.jsonl into events and its latest checkpoint into attention maps.

use std::collections::HashMap;
use std::io::{BufRead, Seek};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::time::{Duration, SystemTime};

use super::{Event, Link, MapMaker, Settings};
use crate::data::batches::Tokens;
use crate::data::Tokenizer;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::train::trainer::StepReport;

/// Follows a run directory: new lines of metrics.jsonl become events, and maps are recomputed from
/// the latest checkpoint when it changes or the settings do. Returns when the window is gone.
pub fn follow_run(dir: &Path, gpu: std::result::Result<Gpu, String>, prompt: String, link: Link) {
    let Link { feed, settings } = link;
    let mut metrics = MetricsReader::new(dir.join("metrics.jsonl"));
    let steps = crate::train::checkpoint::load_json(&dir.join("config.json"))
        .ok()
        .and_then(|d| d["wgpt"]["train"]["steps"].as_u64())
        .unwrap_or(0);
    let mut maker: Option<MapMaker> = None;
    let mut settings = Some(settings);
    let mut seen: Option<SystemTime> = None;
    loop {
        for e in metrics.read(steps) {
            if !feed.send(e) {
                return;
            }
        }
        let stamp = std::fs::metadata(dir.join("model.safetensors")).and_then(|m| m.modified()).ok();
        if maker.is_none() && stamp.is_some() {
            match (&gpu, settings.take()) {
                (Ok(gpu), Some(rx)) => match checkpoint_maker(dir, gpu, prompt.clone(), rx) {
                    Ok(m) => maker = Some(m),
                    Err(e) => {
                        if !feed.send(Event::Maps { step: 0, labels: Vec::new(), maps: Err(e.to_string()) }) {
                            return;
                        }
                    }
                },
                (Err(e), _) => {
                    feed.send(Event::Maps { step: 0, labels: Vec::new(), maps: Err(format!("no GPU for maps: {e}")) });
                }
                _ => {}
            }
        }
        if let Some(m) = maker.as_mut() {
            if m.poll() || stamp != seen {
                seen = stamp;
                let e = match load_weights(dir) {
                    Ok((step, params)) => m.make(step, &params),
                    Err(e) => Event::Maps { step: 0, labels: Vec::new(), maps: Err(e.to_string()) },
                };
                if !feed.send(e) {
                    return;
                }
            }
        }
        // Sending nothing tells whether the window is still there.
        if !feed.send(Event::Status(String::new())) {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The checkpoint's step and weights.
fn load_weights(dir: &Path) -> Result<(u64, HashMap<String, Vec<f32>>)> {
    let doc = crate::train::checkpoint::load_json(&dir.join("config.json"))?;
    let model = crate::train::checkpoint::model_from_config(&doc)?;
    let params = crate::train::checkpoint::load_model(&dir.join("model.safetensors"), &model)?;
    Ok((doc["wgpt"]["step"].as_u64().unwrap_or(0), params))
}

/// A map maker for the run in `dir`.
fn checkpoint_maker(dir: &Path, gpu: &Gpu, prompt: String, rx: Receiver<Settings>) -> Result<MapMaker> {
    use crate::train::checkpoint::{load_json, model_from_config};
    let model = model_from_config(&load_json(&dir.join("config.json"))?)?;
    let tokenizer = Tokenizer::load(&dir.join("tokenizer.json"))?;
    Ok(MapMaker::new(gpu, model, MAP_TOKENS, tokenizer, prompt, rx))
}

/// The default prompt of the run in `dir`: the start of its validation split (read from the token
/// shards it records), else its last sample.
pub fn run_prompt(dir: &Path) -> String {
    let doc = crate::train::checkpoint::load_json(&dir.join("config.json")).ok();
    let tok = Tokenizer::load(&dir.join("tokenizer.json")).ok();
    match (doc, tok) {
        (Some(doc), Some(tok)) => val_prompt(dir, &doc, &tok, MAP_TOKENS),
        _ => None,
    }
    .unwrap_or_else(|| last_sample(dir))
}

/// Tokens in a map: the labels stay readable.
pub const MAP_TOKENS: usize = 32;

fn val_prompt(dir: &Path, doc: &serde_json::Value, tok: &Tokenizer, n: usize) -> Option<String> {
    // The newest checkpoint's trainer state (in the run directory itself for older runs).
    let ck = crate::train::checkpoints::list(dir).pop().map_or_else(|| dir.to_path_buf(), |c| c.1);
    let state = crate::train::checkpoint::load_json(&ck.join("trainer_state.json")).ok()?;
    let shards: Vec<PathBuf> =
        state["shards"].as_array()?.iter().filter_map(|s| s.as_str()).map(|s| dir.join(s)).collect();
    let tokens = crate::data::dataset::TokenSet::open(&shards, tok.vocab_size()).ok()?;
    let cfg = crate::train::config::RunConfig::from_json(&doc["wgpt"]["train"]).ok()?;
    let (train, val) = crate::data::batches::split(tokens.len(), cfg.val_fraction, cfg.block_size).ok()?;
    Some(tok.decode(&crate::data::batches::held_out_head(&tokens, &train, &val, n)))
}

fn last_sample(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap_or_default();
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v["sample"].as_str().map(str::to_string))
        .unwrap_or_else(|| "Once upon a time".into())
}

/// Reads the lines appended to metrics.jsonl since the last call.
struct MetricsReader {
    path: PathBuf,
    offset: u64,
}

impl MetricsReader {
    fn new(path: PathBuf) -> Self {
        MetricsReader { path, offset: 0 }
    }

    fn read(&mut self, steps: u64) -> Vec<Event> {
        let Ok(mut f) = std::fs::File::open(&self.path) else { return Vec::new() };
        if f.seek(std::io::SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut r = std::io::BufReader::new(f);
        let mut line = String::new();
        // Only whole lines: a line being written is read at the next call.
        while r.read_line(&mut line).unwrap_or(0) > 0 && line.ends_with('\n') {
            self.offset += line.len() as u64;
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                out.extend(metric_event(&v, steps));
            }
            line.clear();
        }
        out
    }
}

/// The event of one metrics.jsonl record (a logged step or an evaluation).
fn metric_event(v: &serde_json::Value, steps: u64) -> Option<Event> {
    let step = v["step"].as_u64()?;
    if let Some(val_loss) = v["val_loss"].as_f64() {
        return Some(Event::Eval { step, val_loss });
    }
    Some(Event::Step(StepReport {
        step,
        steps,
        loss: v["loss"].as_f64()? as f32,
        lr: v["lr"].as_f64().unwrap_or(0.0),
        grad_norm: v["grad_norm"].as_f64().unwrap_or(0.0) as f32,
        tokens_per_s: v["tokens_per_s"].as_f64().unwrap_or(0.0),
    }))
}
