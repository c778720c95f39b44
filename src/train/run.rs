//! The native training run (`wgpt train`): the loop over `Trainer::train_step` with log lines,
//! evaluations, samples, `metrics.jsonl` and a checkpoint in the run directory at each evaluation,
//! every `save_every` steps, at the end and on SIGINT/SIGTERM; resume from the newest checkpoint;
//! device faults; and the blocking forms of the trainer's async calls.

use crate::dist::Place;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use super::checkpoint;
use super::checkpoints;
use super::config::RunConfig;
use super::interrupt;
use super::trainer::{Corpus, StepReport, Stepped, Trainer};
use crate::data::batches::Rng;
use crate::data::dataset::TokenSet;
use crate::data::Tokenizer;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::GptConfig;
use crate::ops::matmul::Variant;

/// Blocking forms of the async calls, for the command line and the tests.
impl Trainer {
    pub fn new(gpu: &Gpu, cfg: RunConfig, corpus: &Corpus) -> Result<Trainer> {
        cfg.validate()?;
        let (tokenizer, tokens) = Trainer::tokenize(&cfg, &corpus.text)?;
        Self::with_tokens(gpu, cfg, tokenizer, tokens, Vec::new())
    }

    pub fn with_tokens(
        gpu: &Gpu,
        cfg: RunConfig,
        tokenizer: Tokenizer,
        tokens: TokenSet,
        shards: Vec<PathBuf>,
    ) -> Result<Trainer> {
        pollster::block_on(Trainer::build(gpu, cfg, tokenizer, tokens, shards))
    }

    pub fn for_model(
        gpu: &Gpu,
        cfg: RunConfig,
        model: GptConfig,
        tokenizer: Tokenizer,
        params: &HashMap<String, Vec<f32>>,
    ) -> Result<Trainer> {
        pollster::block_on(Trainer::build_for_model(gpu, cfg, model, tokenizer, params))
    }

    pub fn eval(&self) -> Result<f64> {
        pollster::block_on(self.evaluate())
    }

    /// `build_forward_only`, blocking.
    pub fn forward_only(
        gpu: &Gpu,
        cfg: RunConfig,
        model: GptConfig,
        tokenizer: Tokenizer,
        params: &HashMap<String, Vec<f32>>,
        windows: usize,
        keep_logits: bool,
    ) -> Result<Trainer> {
        pollster::block_on(Trainer::build_forward_only(gpu, cfg, model, tokenizer, params, windows, keep_logits))
    }

    pub fn eval_windows(&self, tokens: &[u32]) -> Result<(f64, usize)> {
        pollster::block_on(self.score_windows(tokens))
    }

    pub fn generate(
        &self,
        prompt: &[u32],
        n: usize,
        sampling: crate::infer::Sampling,
        rng: &mut Rng,
    ) -> Result<Vec<u32>> {
        pollster::block_on(self.continue_text(prompt, n, sampling, rng))
    }
}

impl Trainer {
    /// Saves a checkpoint of this step into `dir/checkpoints/step-N/` (see `checkpoints`):
    /// config.json, model.safetensors, tokenizer.json, optimizer.safetensors (AdamW moments) and
    /// trainer_state.json (step, AdamW t, sampler and loss-scale state, token shards).
    pub fn save(&self, dir: &Path) -> Result<PathBuf> {
        let [model, tokenizer, config] = pollster::block_on(self.model_files())?;
        let moments = pollster::block_on(self.ts.read_moments(&*self.comm))?;
        // Weights read from a lost device are not weights: keep the last checkpoint instead.
        self.check_device(dir, self.step)?;
        // Shards inside the run directory are recorded relative to it, so the run can be moved;
        // others absolute, so a resume from another working directory finds them.
        let shards: Vec<String> = self
            .shards
            .iter()
            .map(|p| match p.strip_prefix(dir) {
                Ok(inside) => inside.display().to_string(),
                Err(_) => std::path::absolute(p).unwrap_or_else(|_| p.clone()).display().to_string(),
            })
            .collect();
        let ls = &self.ts.loss_scale;
        let state = json!({
            "step": self.step, "adamw_t": self.ts.t, "rng": self.rng.0.to_string(), "shards": shards,
            "loss_scale": ls.scale, "loss_scale_clean": ls.clean, "skipped_steps": ls.skipped,
            "corpus": self.corpus,
        });
        // The weights first: a save cut short never has its manifest, whatever it holds.
        let files = [
            model,
            ("optimizer.safetensors", checkpoint::flat_bytes(&moments)?),
            tokenizer,
            config,
            ("trainer_state.json", checkpoint::json_bytes(&state)),
        ];
        checkpoints::save(dir, self.step, &files, self.cfg.keep)
    }

    /// Restores a run saved by `save` in `dir` from its newest checkpoint that verifies: weights,
    /// moments, step and sampler, so the continued run draws the same batches and computes the same
    /// losses as an uninterrupted one. The tokens are the shards the checkpoint records; a run
    /// trained from memory (no shards) needs its `corpus` again. `changes` are `key=value` settings
    /// applied over the saved ones, each one of `RunConfig::RESUMABLE`. `notes` gets a line for every
    /// damaged checkpoint passed over.
    pub fn resume(
        gpu: &Gpu,
        dir: &Path,
        corpus: Option<&Corpus>,
        changes: &[String],
        notes: &mut Vec<String>,
    ) -> Result<Trainer> {
        Self::resume_from(gpu, &ResumePoint::find(dir, notes)?, corpus, changes, Place::ALONE)
    }

    /// `resume` from a checkpoint already found, as `place` in a data-parallel job (which may have
    /// another number of ranks than the one that saved it; only rank 0 touches the directory).
    pub fn resume_from(
        gpu: &Gpu,
        at: &ResumePoint,
        corpus: Option<&Corpus>,
        changes: &[String],
        place: Place,
    ) -> Result<Trainer> {
        let (dir, ck, state, doc) = (&at.dir, &at.checkpoint, &at.state, &at.config);
        let mut cfg = at.settings()?;
        (cfg.ranks, cfg.rank) = (place.ranks, place.rank);
        // The kernels it ran: a resumed run computes with the same ones. A checkpoint from before
        // there were variants ran every product on `register`.
        if doc["wgpt"].get("kernels").is_none() {
            cfg.matmul = Some(Variant::Register);
        }
        if let Some(kernels) = doc["wgpt"]["kernels"].as_object() {
            for (key, v) in kernels {
                let v = v.as_str().and_then(Variant::parse).ok_or_else(|| {
                    Error::Other(format!(
                        "{}: \"wgpt\".\"kernels\".\"{key}\": expected one of {}",
                        ck.join("config.json").display(),
                        Variant::ALL.map(Variant::name).join(", ")
                    ))
                })?;
                cfg.kernels.insert(key.clone(), v);
            }
        }
        let saved_precision = cfg.precision;
        for kv in changes {
            let key = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k.trim());
            if !RunConfig::RESUMABLE.contains(&key) {
                return Err(Error::Other(format!(
                    "--set {key}: the checkpoint fixes it on --resume; keys that may change: {}",
                    RunConfig::RESUMABLE.join(", ")
                )));
            }
            cfg.set(kv)?;
        }
        let tokenizer = Tokenizer::load(&ck.join("tokenizer.json"))?;
        let saved = checkpoint::model_from_config(doc)?;
        let shards = at.shards();
        let tokens = match (shards.is_empty(), corpus) {
            (false, None) => {
                if let Some(gone) = shards.iter().find(|p| !p.is_file()) {
                    return Err(Error::Other(format!(
                        "{}: the checkpoint trains on token shard {}, which is gone; put it back to resume",
                        dir.display(),
                        gone.display()
                    )));
                }
                TokenSet::open(&shards, tokenizer.vocab_size())?
            }
            (false, Some(_)) => {
                return Err(Error::Other(format!(
                    "{}: the run continues on the token shards its checkpoint records; drop --data",
                    dir.display()
                )))
            }
            (true, Some(c)) => TokenSet::Memory(tokenizer.encode(&c.text)?),
            (true, None) => {
                return Err(Error::Other(format!(
                    "{}: the checkpoint records no token shards (an older wgpt made it); pass its --data again",
                    dir.display()
                )))
            }
        };
        let mut t = Trainer::with_tokens(gpu, cfg, tokenizer, tokens, shards)?;
        t.corpus = at.corpus();
        if saved != t.model {
            return Err(Error::Other(format!(
                "{}: the checkpoint's model {saved:?} differs from the run's {:?}",
                dir.display(),
                t.model
            )));
        }
        let bad = || Error::Other(format!("{}: trainer_state.json is incomplete", ck.display()));
        let params = checkpoint::load_model(&ck.join("model.safetensors"), &t.model)?;
        t.ts.load_params(|name, _| Ok(params[name].clone()))?;
        let moments = checkpoint::load_flat(&ck.join("optimizer.safetensors"))?;
        t.ts.load_moments(&moments, state["adamw_t"].as_u64().ok_or_else(bad)?)?;
        t.step = state["step"].as_u64().ok_or_else(bad)?;
        t.rng = Rng(state["rng"].as_str().and_then(|s| s.parse().ok()).ok_or_else(bad)?);
        // Absent from checkpoints made before loss scaling: the run starts afresh from the default.
        let ls = &mut t.ts.loss_scale;
        // A run that switches to f16 on resume starts from f16's initial scale, not f32's 1.
        let scaled = ls.dynamic && saved_precision == t.cfg.precision;
        if let Some(s) = state["loss_scale"].as_f64().filter(|s| *s > 0.0 && scaled) {
            ls.scale = s as f32;
        }
        ls.clean = state["loss_scale_clean"].as_u64().unwrap_or(0);
        ls.skipped = state["skipped_steps"].as_u64().unwrap_or(0);
        if place.leads() {
            truncate_metrics(&dir.join("metrics.jsonl"), t.step)?;
        }
        Ok(t)
    }

    /// Runs `cfg.steps` steps, reporting through `progress` and into `dir/metrics.jsonl`; saves at
    /// each evaluation and at the end.
    pub fn run(&mut self, dir: &Path, progress: impl Progress) -> Result<()> {
        self.run_until(dir, self.cfg.steps, progress)
    }

    /// Like `run`, but stops after step `stop` (saving a checkpoint there) as an interrupted run would.
    /// A device fault ends it with `Error::DeviceLost`, whatever error the fault caused on the way.
    pub fn run_until(&mut self, dir: &Path, stop: u64, progress: impl Progress) -> Result<()> {
        let run = self.steps(dir, stop, progress);
        if matches!(run, Err(Error::DeviceLost { .. })) {
            return run; // it names the step it was met in
        }
        self.check_device(dir, self.step + 1)?;
        run
    }

    /// A checkpoint every rank of a job reaches at the same step: rank 0 writes it; under ZeRO-1
    /// the others send it their shards of the masters (fp16) and the moments, in `save`'s order.
    fn save_point(&self, dir: &Path) -> Result<()> {
        if self.leads() {
            self.save(dir)?;
        } else if self.ts.sharded() {
            pollster::block_on(self.ts.read_masters(&*self.comm))?;
            pollster::block_on(self.ts.read_moments(&*self.comm))?;
        }
        Ok(())
    }

    /// The signal that asks the job to stop, if any rank got one: in a job of several ranks they
    /// agree after every step, so all stop at the same one and save it together.
    fn interrupted(&self) -> Result<Option<i32>> {
        let mine = interrupt::pending();
        if self.comm.size() == 1 {
            return Ok(mine);
        }
        let all = self.comm.all_gather(vec![mine.unwrap_or(0) as f32])?;
        Ok(all.iter().map(|s| s.first().copied().unwrap_or(0.0) as i32).find(|&s| s != 0))
    }

    /// `Error::DeviceLost` if the device reported a fault (`step`: the step it was met in).
    fn check_device(&self, dir: &Path, step: u64) -> Result<()> {
        match self.ts.fault() {
            Some(reason) => Err(Error::DeviceLost { step, reason, checkpoint: last_checkpoint(dir) }),
            None => Ok(()),
        }
    }

    fn steps(&mut self, dir: &Path, stop: u64, mut progress: impl Progress) -> Result<()> {
        // In a data-parallel job only rank 0 writes the run directory, evaluates and samples.
        let leader = self.leads();
        let io = |e: std::io::Error| crate::util::io_error(&dir.join("metrics.jsonl"), &e);
        let mut metrics = match leader {
            true => Some(
                std::fs::OpenOptions::new().create(true).append(true).open(dir.join("metrics.jsonl")).map_err(io)?,
            ),
            false => None,
        };
        let mut record = |v: serde_json::Value| match &mut metrics {
            Some(m) => writeln!(m, "{v}").map_err(io),
            None => Ok(()),
        };
        // The whole job's: every rank trains batch_size x grad_accum sequences per step.
        let tokens_per_step = (self.cfg.batch_size * self.cfg.block_size * self.cfg.grad_accum * self.cfg.ranks) as f64;
        let (started, first) = (Instant::now(), self.step);
        let mut window = (Instant::now(), 0u64);
        // Steps in a row whose loss or gradients were not finite, or that were outliers (each
        // skipped on the GPU).
        let mut bad_run = 0u64;
        self.guard.z = self.cfg.outlier_z;
        let lose_device_at = lose_device_at();
        while self.step < self.cfg.steps.min(stop) {
            if let Some(signal) = self.interrupted()? {
                if !leader {
                    self.save_point(dir)?;
                    let checkpoint = "rank 0's run directory".to_string();
                    return Err(Error::Interrupted { signal, step: self.step, checkpoint });
                }
                let ck = interrupt::save_for_signal(|| self.save(dir))?;
                return Err(Error::Interrupted { signal, step: self.step, checkpoint: ck.display().to_string() });
            }
            if lose_device_at == Some(self.step + 1) {
                self.ts.lose_device();
            }
            let Stepped { stats: s, lr } = pollster::block_on(self.train_step())?;
            self.check_device(dir, self.step)?;
            if s.skipped || !s.loss.is_finite() {
                bad_run += 1;
                let ls = &self.ts.loss_scale;
                let [norm_max, loss_max] = self.ts.ceilings;
                let why = if s.outlier {
                    format!(
                        "outlier (loss {:.4}, grad norm {:.3}; ceilings {loss_max:.4} and {norm_max:.3}, the mean + \
                         {} sd of the last good steps)",
                        s.loss, s.grad_norm, self.cfg.outlier_z
                    )
                } else if s.loss.is_finite() && self.ts.loss_scale.dynamic {
                    format!("gradients overflowed at loss scale {}; scale now {}", s.loss_scale, ls.scale)
                } else {
                    format!("loss {} and gradient norm {} are not both finite", s.loss, s.grad_norm)
                };
                progress.line(&format!("step {:>6}: {why}; step skipped ({bad_run} in a row)", self.step));
                let finite = |x: f32| if x.is_finite() { json!(x) } else { json!(x.to_string()) };
                record(json!({
                    "step": self.step, "skipped": true, "outlier": s.outlier, "loss": finite(s.loss),
                    "grad_norm": finite(s.grad_norm), "loss_scale": ls.scale, "skipped_steps": ls.skipped,
                }))?;
                if bad_run >= self.cfg.max_bad_steps {
                    return Err(Error::Other(format!(
                        "steps {}..{}: {bad_run} steps in a row were skipped for a non-finite loss or gradients \
                         or as outliers (max_bad_steps); stopped without saving. {}; resume it with --resume \
                         and a lower lr (--set lr=...), or a higher outlier_z if the guard skipped them",
                        self.step + 1 - bad_run,
                        self.step,
                        last_checkpoint(dir)
                    )));
                }
            } else {
                bad_run = 0;
            }
            window.1 += 1;
            let tps = tokens_per_step * window.1 as f64 / window.0.elapsed().as_secs_f64();
            let grad_norm = s.grad_norm;
            progress.step(&StepReport {
                step: self.step,
                steps: self.cfg.steps,
                loss: s.loss,
                lr,
                grad_norm,
                tokens_per_s: tps,
            });
            if progress.wants_params(self.step) {
                progress.params(self.step, &pollster::block_on(self.ts.read_params())?);
            }
            if (self.step.is_multiple_of(self.cfg.log_every) || self.step == self.cfg.steps) && bad_run == 0 {
                let eta = (self.cfg.steps - self.step) as f64 * tokens_per_step / tps;
                progress.line(&format!(
                    "step {:>6}/{}  loss {:.4}  lr {:.2e}  grad norm {:.3}  {:.0} tok/s  ETA {:.0}s",
                    self.step, self.cfg.steps, s.loss, lr, s.grad_norm, tps, eta
                ));
                let ls = &self.ts.loss_scale;
                let mut line = json!({
                    "step": self.step, "loss": s.loss, "lr": lr, "grad_norm": s.grad_norm, "tokens_per_s": tps,
                    "loss_scale": ls.scale, "skipped_steps": ls.skipped,
                });
                if self.cfg.ranks > 1 {
                    line["ranks"] = json!(self.cfg.ranks);
                    line["comm_s"] = json!(s.comm_s);
                }
                record(line)?;
                window = (Instant::now(), 0);
            }
            let last = self.step == self.cfg.steps;
            let evaluate =
                leader && ((self.cfg.eval_every > 0 && self.step.is_multiple_of(self.cfg.eval_every)) || last);
            if evaluate {
                let val = self.eval()?;
                progress.line(&format!("step {:>6}  val loss {val:.4}  perplexity {:.2}", self.step, val.exp()));
                progress.eval(self.step, val);
                record(json!({"step": self.step, "val_loss": val, "val_perplexity": val.exp()}))?;
            }
            let eval_point = (self.cfg.eval_every > 0 && self.step.is_multiple_of(self.cfg.eval_every)) || last;
            if eval_point || (self.cfg.save_every > 0 && self.step.is_multiple_of(self.cfg.save_every)) {
                self.save_point(dir)?;
            }
            if leader && ((self.cfg.sample_every > 0 && self.step.is_multiple_of(self.cfg.sample_every)) || last) {
                let text = pollster::block_on(self.sample_text())?;
                progress.line(&format!("sample at step {}:\n{text}\n", self.step));
                record(json!({"step": self.step, "sample": text}))?;
            }
        }
        if self.step < self.cfg.steps {
            self.save_point(dir)?;
            progress.line(&format!("stopped at step {}; checkpoint saved", self.step));
        }
        // Over the whole run, evaluations and checkpoints included (the benchmarks' figure).
        let secs = started.elapsed().as_secs_f64();
        let tps = (self.step - first) as f64 * tokens_per_step / secs;
        progress.line(&format!("{} steps in {secs:.1}s ({tps:.0} tok/s)", self.step));
        Ok(())
    }
}

/// Which checkpoint a run that stops on an error leaves to resume from.
fn last_checkpoint(dir: &Path) -> String {
    match checkpoints::list(dir).pop() {
        Some((_, d)) => format!("The last checkpoint, {}, is intact", d.display()),
        None => "No checkpoint was written yet".into(),
    }
}

/// `WGPT_LOSE_DEVICE_AT=N` destroys the device just before step N: the fault tests' stand-in for a
/// driver reset or a GPU that falls off the bus.
fn lose_device_at() -> Option<u64> {
    std::env::var("WGPT_LOSE_DEVICE_AT").ok()?.parse().ok()
}

/// The files of a checkpoint; a resume needs them all.
pub const CHECKPOINT_FILES: [&str; 5] =
    ["model.safetensors", "optimizer.safetensors", "tokenizer.json", "config.json", "trainer_state.json"];

/// The checkpoint a `--resume` of a run directory starts from, read but not yet loaded: what the
/// command line is checked against (`setup::resume`) before anything is compiled.
pub struct ResumePoint {
    pub dir: PathBuf,
    /// The newest checkpoint folder that verifies, or the run directory itself for runs saved
    /// before checkpoint folders existed.
    pub checkpoint: PathBuf,
    /// Its trainer_state.json and config.json.
    pub state: serde_json::Value,
    pub config: serde_json::Value,
}

impl ResumePoint {
    /// `notes` gets a line for every damaged checkpoint passed over.
    pub fn find(dir: &Path, notes: &mut Vec<String>) -> Result<ResumePoint> {
        let (found, passed) = checkpoints::latest(dir, &CHECKPOINT_FILES);
        let damaged = !passed.is_empty();
        notes.extend(passed);
        let checkpoint = match found {
            Some((_, ck)) => ck,
            None if checkpoints::list(dir).is_empty() && dir.join("trainer_state.json").is_file() => dir.to_path_buf(),
            None => {
                return Err(Error::Other(format!(
                    "--resume: {} holds no complete checkpoint{}; delete it or pick another --out to start over",
                    dir.display(),
                    if damaged { " (every one failed its checksum)" } else { "" }
                )))
            }
        };
        let state = checkpoint::load_json(&checkpoint.join("trainer_state.json"))?;
        let config = checkpoint::load_json(&checkpoint.join("config.json"))?;
        Ok(ResumePoint { dir: dir.to_path_buf(), checkpoint, state, config })
    }

    /// The run's settings as saved.
    pub fn settings(&self) -> Result<RunConfig> {
        RunConfig::from_json(&self.config["wgpt"]["train"])
    }

    /// The token shards the run trains on (none for runs trained from memory).
    pub fn shards(&self) -> Vec<PathBuf> {
        self.state["shards"]
            .as_array()
            .map(|v| v.iter().filter_map(|s| s.as_str()).map(|s| self.dir.join(s)).collect())
            .unwrap_or_default()
    }

    /// The fingerprint of the corpus the run was made from, where the checkpoint records one.
    pub fn corpus(&self) -> Option<String> {
        self.state["corpus"].as_str().map(str::to_string)
    }
}

/// Drops the records of `metrics.jsonl` after `step` (work lost with the process that logged
/// it) and any line a crash cut short, so that the resumed run's log reads as one run.
fn truncate_metrics(path: &Path, step: u64) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(()) };
    let keep = |l: &&str| {
        serde_json::from_str::<serde_json::Value>(l).ok().and_then(|v| v["step"].as_u64()).is_some_and(|s| s <= step)
    };
    let kept: Vec<&str> = text.lines().filter(keep).collect();
    if kept.len() == text.lines().count() && text.ends_with('\n') {
        return Ok(());
    }
    crate::util::write_atomic(path, kept.iter().map(|l| format!("{l}\n")).collect::<String>().as_bytes())
}

/// Where the training loop reports: whole lines (log lines, evaluations, samples) and, after
/// every step, the figures a progress bar shows. A closure taking lines is a `Progress` too.
pub trait Progress {
    fn line(&mut self, text: &str);
    fn step(&mut self, _report: &StepReport) {}
    /// The validation loss of an evaluation after step `step` (also reported as a line).
    fn eval(&mut self, _step: u64, _val_loss: f64) {}
    /// Whether `params` should be handed the weights after step `step` (a GPU read-back, so a
    /// display asks only every so many steps).
    fn wants_params(&mut self, _step: u64) -> bool {
        false
    }
    /// The weights after step `step` (Hugging Face names), when `wants_params` asked for them.
    fn params(&mut self, _step: u64, _params: &HashMap<String, Vec<f32>>) {}
}

impl<F: FnMut(&str)> Progress for F {
    fn line(&mut self, text: &str) {
        self(text)
    }
}
