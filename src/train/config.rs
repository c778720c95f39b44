//! Run configuration: named presets and `key=value` overrides (an unknown key is an error).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::precision::Precision;
use crate::error::{Error, Result};
use crate::gpu::tuning::Autotune;
use crate::graph::Recompute;
use crate::ops::attention;
use crate::ops::matmul::Variant;

#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    pub preset: String,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_embd: usize,
    pub block_size: usize,
    pub batch_size: usize,
    pub steps: u64,
    pub lr: f64,
    pub min_lr: f64,
    pub warmup_steps: u64,
    pub weight_decay: f64,
    /// AdamW's moment decays (0.9 and 0.95, as GPT-3 and llm.c; nanoGPT's small runs use 0.99).
    pub beta1: f64,
    pub beta2: f64,
    pub grad_clip: f64,
    pub eval_every: u64,
    pub eval_batches: usize,
    pub sample_every: u64,
    pub sample_tokens: usize,
    pub temperature: f64,
    pub top_k: usize,
    /// Nucleus sampling: the smallest set of likeliest tokens with this much probability (1: all).
    pub top_p: f64,
    pub seed: u64,
    pub val_fraction: f64,
    /// "char" or "bpe".
    pub tokenizer: String,
    /// Target vocabulary of the BPE tokenizer (char-level takes the corpus's characters).
    pub vocab_size: usize,
    pub log_every: u64,
    /// Micro-batches per optimizer step (gradient accumulation), per rank.
    pub grad_accum: usize,
    /// Ranks of the data-parallel job running this config (1: one process). Set by how the run
    /// was started, not a `--set` key, and not recorded: a run may resume at another rank count.
    pub ranks: usize,
    /// This process's rank in that job (runtime only, like `ranks`).
    pub rank: usize,
    /// One process standing for a job of this many ranks, for its bits: the step's grad_accum
    /// micro-batches go in this many groups whose sums add in rank order, as `mpirun -np N` with
    /// grad_accum / N each would (`--set virtual_ranks`; it must divide grad_accum).
    pub virtual_ranks: usize,
    /// ZeRO stage 1 in a job of several ranks: each keeps the AdamW moments of its shard of the
    /// parameters only, updates that shard and gathers the rest (`--set zero=0|1`; the same bits).
    pub zero: bool,
    /// Seconds a rank waits in an exchange for the others (one stopped or hung) before the job
    /// stops; 0: `WGPT_COMM_TIMEOUT`, else 60. It must exceed rank 0's evaluations and saves.
    pub comm_timeout: f64,
    /// Tokens per optimizer step asked for with `batch_tokens` (0: none): grad_accum follows it
    /// whatever order batch_size and block_size are set in.
    pub batch_tokens: usize,
    /// Storage type of activations and gradients (f16 with dynamic loss scaling).
    pub precision: Precision,
    /// Activations recomputed in the backward pass instead of kept: none, gelu, norm, attn, block.
    pub recompute: Recompute,
    /// A checkpoint every this many steps besides those at evaluations (0: only at evaluations).
    pub save_every: u64,
    /// Checkpoints kept in the run directory (the newest ones).
    pub keep: usize,
    /// Steps in a row with a non-finite loss or gradients, or outliers (each skipped), that stop
    /// the run.
    pub max_bad_steps: u64,
    /// The outlier guard: skip a step whose loss or gradient norm is more than this many standard
    /// deviations above the mean of the last good steps (0: off).
    pub outlier_z: f64,
    /// One matmul kernel variant for every product (None: chosen per product when the step is
    /// compiled, by `autotune`).
    pub matmul: Option<Variant>,
    /// When kernel variants are timed on the device (auto: on GPUs).
    pub autotune: Autotune,
    /// The attention kernels' variant (None: by adapter type, `rows` on CPU adapters, `tiled` on
    /// GPUs).
    pub attention: Option<attention::Variant>,
    /// The variant each product of the run's step got, by product key: recorded in config.json
    /// beside the settings (under "wgpt"."kernels", not a `--set` key), reused on `--resume` so a
    /// resumed run computes with the same kernels whatever a new timing would say.
    pub kernels: BTreeMap<String, Variant>,
}

pub const PRESETS: [&str; 5] = ["tiny", "shakespeare-char", "shakespeare", "gpt2", "gpt2-medium"];

impl RunConfig {
    /// Keys `--set` may change on `--resume`: the host-side schedule, logging and safety settings,
    /// and what makes a step fit in less memory (storage precision, recomputation, the micro-batch:
    /// `batch_size` x `grad_accum` sequences are drawn in the same order whatever the split). The
    /// rest fixes the model, the data or the optimizer.
    pub const RESUMABLE: [&'static str; 27] = [
        "steps",
        "lr",
        "min_lr",
        "warmup_steps",
        "eval_every",
        "eval_batches",
        "sample_every",
        "sample_tokens",
        "temperature",
        "top_k",
        "top_p",
        "log_every",
        "save_every",
        "keep",
        "max_bad_steps",
        "outlier_z",
        "precision",
        "recompute",
        "batch_size",
        "grad_accum",
        "virtual_ranks",
        "zero",
        "comm_timeout",
        "batch_tokens",
        "matmul",
        "autotune",
        "attention",
    ];

    pub fn preset(name: &str) -> Result<Self> {
        let base = RunConfig {
            preset: name.to_string(),
            n_layer: 2,
            n_head: 2,
            n_embd: 32,
            block_size: 16,
            batch_size: 8,
            steps: 300,
            lr: 3e-3,
            min_lr: 3e-4,
            warmup_steps: 20,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.95,
            grad_clip: 1.0,
            eval_every: 100,
            eval_batches: 8,
            sample_every: 0,
            sample_tokens: 200,
            temperature: 0.8,
            top_k: 0,
            top_p: 1.0,
            seed: 1337,
            val_fraction: 0.1,
            tokenizer: "char".into(),
            vocab_size: 512,
            log_every: 10,
            grad_accum: 1,
            ranks: 1,
            rank: 0,
            virtual_ranks: 1,
            zero: false,
            comm_timeout: 0.0,
            batch_tokens: 0,
            precision: Precision::F32,
            recompute: Recompute::None,
            save_every: 0,
            keep: 3,
            // Loss scaling halves the scale on each overflow: 20 in a row take 65536 below 0.1.
            max_bad_steps: 20,
            outlier_z: 0.0,
            matmul: None,
            autotune: Autotune::Auto,
            attention: None,
            kernels: BTreeMap::new(),
        };
        Ok(match name {
            // Learns visibly within a couple of minutes on a CPU adapter.
            "tiny" => RunConfig { steps: 1000, eval_every: 250, log_every: 50, ..base },
            // nanoGPT's shakespeare_char run scaled to its CPU baseline.
            "shakespeare-char" => RunConfig {
                n_layer: 4,
                n_head: 4,
                n_embd: 128,
                block_size: 64,
                batch_size: 12,
                steps: 2000,
                lr: 1e-3,
                min_lr: 1e-4,
                warmup_steps: 100,
                eval_every: 250,
                eval_batches: 20,
                ..base
            },
            "shakespeare" => RunConfig {
                n_layer: 6,
                n_head: 6,
                n_embd: 384,
                block_size: 256,
                batch_size: 64,
                steps: 5000,
                lr: 1e-3,
                min_lr: 1e-4,
                warmup_steps: 100,
                eval_every: 250,
                eval_batches: 20,
                ..base
            },
            "gpt2" | "gpt2-medium" => RunConfig {
                n_layer: if name == "gpt2" { 12 } else { 24 },
                n_head: if name == "gpt2" { 12 } else { 16 },
                n_embd: if name == "gpt2" { 768 } else { 1024 },
                block_size: 1024,
                batch_size: 8,
                steps: 10_000,
                lr: 6e-4,
                min_lr: 6e-5,
                warmup_steps: 700,
                eval_every: 500,
                eval_batches: 20,
                tokenizer: "bpe".into(),
                vocab_size: 50257,
                ..base
            },
            other => {
                return Err(Error::Other(format!(
                    "--preset: unknown preset '{other}'; choose one of {}",
                    PRESETS.join(", ")
                )))
            }
        })
    }

    /// Applies one `key=value` override and checks the result.
    /// Applies one `key=value`; on any error the configuration is left as it was.
    pub fn set(&mut self, kv: &str) -> Result<()> {
        let mut next = self.clone();
        next.apply(kv)?;
        next.check().map_err(|m| Error::Other(format!("--set {}: {m}", kv.trim())))?;
        *self = next;
        Ok(())
    }

    fn apply(&mut self, kv: &str) -> Result<()> {
        self.apply_key(kv)?;
        // Re-derived after every setting, so the order they come in does not matter; `check` says
        // when the final sizes do not divide it.
        let micro = self.batch_size * self.block_size;
        if self.batch_tokens > 0 && micro > 0 && self.batch_tokens.is_multiple_of(micro) {
            self.grad_accum = self.batch_tokens / micro;
        }
        Ok(())
    }

    fn apply_key(&mut self, kv: &str) -> Result<()> {
        let (k, v) = kv.split_once('=').ok_or_else(|| Error::Other(format!("--set {kv}: expected KEY=VALUE")))?;
        let (k, v) = (k.trim(), v.trim());
        let bad = |what: &str| Error::Other(format!("--set {k}={v}: expected {what}"));
        macro_rules! num {
            ($field:ident, $what:expr) => {
                self.$field = v.parse().map_err(|_| bad($what))?
            };
        }
        match k {
            "n_layer" => num!(n_layer, "a positive integer"),
            "n_head" => num!(n_head, "a positive integer"),
            "n_embd" => num!(n_embd, "a positive integer"),
            "block_size" => num!(block_size, "a positive integer"),
            "batch_size" => num!(batch_size, "a positive integer"),
            "steps" => num!(steps, "a non-negative integer"),
            "lr" => num!(lr, "a number"),
            "min_lr" => num!(min_lr, "a number"),
            "warmup_steps" => num!(warmup_steps, "a non-negative integer"),
            "weight_decay" => num!(weight_decay, "a number"),
            "beta1" => num!(beta1, "a number in [0, 1)"),
            "beta2" => num!(beta2, "a number in [0, 1)"),
            "grad_clip" => num!(grad_clip, "a number"),
            "eval_every" => num!(eval_every, "a non-negative integer"),
            "eval_batches" => num!(eval_batches, "a positive integer"),
            "sample_every" => num!(sample_every, "a non-negative integer"),
            "sample_tokens" => num!(sample_tokens, "a non-negative integer"),
            "temperature" => num!(temperature, "a number"),
            "top_k" => num!(top_k, "a non-negative integer"),
            "top_p" => num!(top_p, "a number in (0, 1]"),
            "seed" => num!(seed, "a non-negative integer"),
            "val_fraction" => num!(val_fraction, "a number in [0, 1)"),
            "vocab_size" => num!(vocab_size, "a positive integer"),
            "log_every" => num!(log_every, "a positive integer"),
            "grad_accum" => {
                num!(grad_accum, "a positive integer");
                self.batch_tokens = 0;
            }
            "virtual_ranks" => num!(virtual_ranks, "a positive integer"),
            "comm_timeout" => num!(comm_timeout, "a number of seconds (0: WGPT_COMM_TIMEOUT, else 60)"),
            "zero" => {
                self.zero = match v {
                    "0" => false,
                    "1" => true,
                    _ => return Err(bad("0 or 1 (ZeRO stage 1: AdamW moments sharded over the ranks)")),
                }
            }
            "save_every" => num!(save_every, "a non-negative integer"),
            "keep" => num!(keep, "a positive integer"),
            "max_bad_steps" => num!(max_bad_steps, "a positive integer"),
            "outlier_z" => num!(outlier_z, "a number of standard deviations (0: off)"),
            // The global batch in tokens, as in "0.5M tokens per step": sets grad_accum (below).
            "batch_tokens" => {
                self.batch_tokens = v.parse().ok().filter(|&t| t > 0).ok_or_else(|| bad("a positive integer"))?;
            }
            "precision" => self.precision = Precision::parse(v).map_err(|_| bad("f32 or f16"))?,
            "autotune" => {
                self.autotune = Autotune::parse(v).ok_or_else(|| bad(&Autotune::NAMES.join(", ")))?;
            }
            "matmul" => {
                let names: Vec<&str> = Variant::ALL.iter().map(|v| v.name()).collect();
                self.matmul = match v {
                    "auto" => None,
                    _ => Some(Variant::parse(v).ok_or_else(|| bad(&format!("auto, {}", names.join(", "))))?),
                }
            }
            "attention" => {
                let names: Vec<&str> = attention::Variant::ALL.iter().map(|v| v.name()).collect();
                self.attention = match v {
                    "auto" => None,
                    _ => Some(attention::Variant::parse(v).ok_or_else(|| bad(&format!("auto, {}", names.join(", "))))?),
                }
            }
            "recompute" => {
                self.recompute =
                    Recompute::parse(v).map_err(|_| bad(&format!("one of {}", Recompute::NAMES.join(", "))))?
            }
            "tokenizer" => {
                if v != "char" && v != "bpe" {
                    return Err(bad("char or bpe"));
                }
                self.tokenizer = v.to_string();
            }
            _ => {
                return Err(Error::Other(format!(
                    "--set {k}: unknown key; known keys: {}",
                    self.to_json()
                        .as_object()
                        .unwrap()
                        .keys()
                        .filter(|k| *k != "preset")
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<()> {
        self.check().map_err(|m| Error::Other(format!("config: {m}")))?;
        let micro = self.batch_size * self.block_size;
        if self.batch_tokens > 0 && self.batch_tokens != micro * self.grad_accum {
            return Err(Error::Other(format!(
                "--set batch_tokens={}: not a multiple of batch_size x block_size = {micro} tokens",
                self.batch_tokens
            )));
        }
        if !self.grad_accum.is_multiple_of(self.virtual_ranks) {
            return Err(Error::Other(format!(
                "--set virtual_ranks={}: it must divide grad_accum ({}), the micro-batches of the ranks it stands \
                 for: use grad_accum = (each rank's grad_accum) x virtual_ranks",
                self.virtual_ranks, self.grad_accum
            )));
        }
        // The model's own rules (n_embd divisible by n_head, the head size limit), checked once every
        // setting is in (each --set alone may pass through a combination that does not fit).
        crate::model::GptConfig {
            vocab_size: 1,
            block_size: self.block_size,
            n_layer: self.n_layer,
            n_head: self.n_head,
            n_embd: self.n_embd,
        }
        .validate()
    }

    /// What is wrong with the settings, if anything.
    fn check(&self) -> Result<(), String> {
        let bad = |m: &str| Err(m.to_string());
        let floats = [
            ("lr", self.lr),
            ("min_lr", self.min_lr),
            ("weight_decay", self.weight_decay),
            ("beta1", self.beta1),
            ("beta2", self.beta2),
            ("grad_clip", self.grad_clip),
            ("temperature", self.temperature),
            ("top_p", self.top_p),
            ("val_fraction", self.val_fraction),
            ("outlier_z", self.outlier_z),
            ("comm_timeout", self.comm_timeout),
        ];
        if let Some((k, v)) = floats.iter().find(|(_, v)| !v.is_finite()) {
            return Err(format!("{k} is {v}; it must be a finite number"));
        }
        if self.n_layer == 0 || self.n_head == 0 || self.n_embd == 0 || self.block_size == 0 || self.batch_size == 0 {
            return bad("n_layer, n_head, n_embd, block_size and batch_size must be positive");
        }
        if !(0.0..1.0).contains(&self.val_fraction) {
            return bad("val_fraction must be in [0, 1)");
        }
        if !(self.lr > 0.0 && self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            return bad("need lr > 0 and 0 <= min_lr <= lr");
        }
        if !((0.0..1.0).contains(&self.beta1) && (0.0..1.0).contains(&self.beta2)) {
            return bad("beta1 and beta2 must be in [0, 1)");
        }
        if self.grad_clip < 0.0 || self.grad_clip.is_nan() {
            return bad("grad_clip must be >= 0 (0 turns clipping off)");
        }
        if self.eval_batches == 0 || self.log_every == 0 || self.grad_accum == 0 || self.virtual_ranks == 0 {
            return bad("eval_batches, log_every, grad_accum and virtual_ranks must be positive");
        }
        if self.keep == 0 || self.max_bad_steps == 0 {
            return bad("keep and max_bad_steps must be positive");
        }
        if self.comm_timeout < 0.0 {
            return bad("comm_timeout must be >= 0 seconds (0: WGPT_COMM_TIMEOUT, else 60)");
        }
        if self.outlier_z < 0.0 {
            return bad("outlier_z must be >= 0 (0 turns the outlier guard off)");
        }
        if self.weight_decay < 0.0 || self.temperature < 0.0 {
            return bad("weight_decay and temperature must be >= 0");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p must be in (0, 1] (1 keeps every token)");
        }
        if self.tokenizer == "bpe" && self.vocab_size < 256 {
            return Err(format!(
                "vocab_size {} is too small: byte-level BPE needs its 256 byte symbols",
                self.vocab_size
            ));
        }
        Ok(())
    }

    /// Applies a TOML file of `key = value` settings (the same keys as `--set`; `preset` is
    /// taken by the caller). Unknown keys and wrong types are errors naming the file.
    pub fn apply_toml(&mut self, path: &std::path::Path) -> Result<()> {
        let bad = |m: String| Error::Other(format!("--config {}: {m}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| bad(crate::util::io_reason(&e)))?;
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| bad(e.message().to_string()))?;
        for (k, v) in &table {
            if k == "preset" {
                continue;
            }
            let v = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                other => return Err(bad(format!("{k}: expected a string or a number, got {}", other.type_str()))),
            };
            self.apply(&format!("{k}={v}")).map_err(|e| bad(e.to_string()))?;
        }
        self.check().map_err(bad)
    }

    /// The preset a TOML config names, if any.
    pub fn toml_preset(path: &std::path::Path) -> Result<Option<String>> {
        Ok(Self::toml_table(path)?.get("preset").and_then(|v| v.as_str()).map(str::to_string))
    }

    /// Whether the TOML file sets `key`.
    pub fn toml_sets(path: &std::path::Path, key: &str) -> Result<bool> {
        Ok(Self::toml_table(path)?.contains_key(key))
    }

    fn toml_table(path: &std::path::Path) -> Result<toml::Table> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Other(format!("--config {}: {}", path.display(), crate::util::io_reason(&e))))?;
        text.parse().map_err(|e: toml::de::Error| Error::Other(format!("--config {}: {}", path.display(), e.message())))
    }

    /// The settings `to_json` stored (a resumed run continues with them).
    pub fn from_json(doc: &Value) -> Result<Self> {
        let obj = doc.as_object().ok_or_else(|| Error::Other("config.json: \"wgpt.train\" is not an object".into()))?;
        let preset = obj.get("preset").and_then(Value::as_str).unwrap_or("tiny");
        let mut cfg = RunConfig::preset(preset)?;
        for (k, v) in obj {
            if k == "preset" {
                continue;
            }
            let v = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
            cfg.apply(&format!("{k}={v}"))?;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Every setting, as stored in the checkpoint's config.json under "wgpt".
    pub fn to_json(&self) -> Value {
        json!({
            "preset": self.preset, "n_layer": self.n_layer, "n_head": self.n_head, "n_embd": self.n_embd,
            "block_size": self.block_size, "batch_size": self.batch_size, "steps": self.steps, "lr": self.lr,
            "min_lr": self.min_lr, "warmup_steps": self.warmup_steps, "weight_decay": self.weight_decay,
            "beta1": self.beta1, "beta2": self.beta2, "grad_clip": self.grad_clip, "eval_every": self.eval_every,
            "eval_batches": self.eval_batches, "sample_every": self.sample_every, "sample_tokens": self.sample_tokens,
            "temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p, "seed": self.seed, "val_fraction": self.val_fraction,
            "tokenizer": self.tokenizer, "vocab_size": self.vocab_size, "log_every": self.log_every,
            "grad_accum": self.grad_accum, "virtual_ranks": self.virtual_ranks, "zero": u8::from(self.zero),
            "comm_timeout": self.comm_timeout,
            "precision": self.precision.name(), "recompute": self.recompute.name(),
            "save_every": self.save_every, "keep": self.keep, "max_bad_steps": self.max_bad_steps,
            "outlier_z": self.outlier_z, "matmul": self.matmul.map_or("auto", Variant::name), "autotune": self.autotune.name(),
            "attention": self.attention.map_or("auto", attention::Variant::name),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::RunConfig;

    #[test]
    fn set_and_toml_apply_known_keys_and_reject_unknown_ones() {
        let mut cfg = RunConfig::preset("shakespeare-char").unwrap();
        cfg.set("lr=2e-3").unwrap();
        assert_eq!(cfg.lr, 2e-3);
        assert!(cfg.set("learning_rate=1").unwrap_err().to_string().contains("unknown key"));
        assert!(cfg.set("steps=many").unwrap_err().to_string().contains("expected"));
        cfg.set("beta2=0.99").unwrap();
        assert_eq!(cfg.beta2, 0.99);
        assert!(cfg.set("beta1=1.5").unwrap_err().to_string().contains("beta1"));
        assert_eq!(cfg.beta1, 0.9, "a rejected setting leaves the configuration unchanged");
        cfg.set("batch_tokens=1536").unwrap();
        assert_eq!(cfg.grad_accum, 2, "1536 tokens = 2 micro-batches of 12 x 64");
        // Whatever order: a later batch_size keeps the tokens per step.
        cfg.set("batch_size=4").unwrap();
        assert_eq!(cfg.grad_accum, 6, "1536 tokens = 6 micro-batches of 4 x 64");
        cfg.set("batch_size=5").unwrap();
        assert!(cfg.validate().unwrap_err().to_string().contains("not a multiple"), "5 x 64 does not divide 1536");
        cfg.set("block_size=32").unwrap();
        cfg.set("batch_size=6").unwrap();
        assert_eq!(cfg.grad_accum, 8, "1536 tokens = 8 micro-batches of 6 x 32, whatever passed on the way");
        cfg.validate().unwrap();
        cfg.set("block_size=64").unwrap();
        cfg.set("grad_accum=3").unwrap();
        cfg.set("batch_size=2").unwrap();
        assert_eq!(cfg.grad_accum, 3, "an explicit grad_accum replaces batch_tokens");

        let dir = std::env::temp_dir().join(format!("wgpt-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("run.toml");
        std::fs::write(&good, "preset = \"tiny\"\nsteps = 5\nlr = 1e-3\ntokenizer = \"bpe\"\n").unwrap();
        assert_eq!(RunConfig::toml_preset(&good).unwrap().as_deref(), Some("tiny"));
        let mut cfg = RunConfig::preset("tiny").unwrap();
        cfg.apply_toml(&good).unwrap();
        assert_eq!((cfg.steps, cfg.lr, cfg.tokenizer.as_str()), (5, 1e-3, "bpe"));
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "stepz = 5\n").unwrap();
        let err = cfg.apply_toml(&bad).unwrap_err().to_string();
        assert!(err.contains("bad.toml") && err.contains("unknown key"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stored_settings_round_trip() {
        let mut cfg = RunConfig::preset("shakespeare-char").unwrap();
        cfg.set("lr=1e-4").unwrap();
        cfg.set("min_lr=1e-5").unwrap();
        assert_eq!(RunConfig::from_json(&cfg.to_json()).unwrap(), cfg);
        cfg.set("matmul=tiled").unwrap();
        assert_eq!(RunConfig::from_json(&cfg.to_json()).unwrap(), cfg);
        cfg.set("matmul=auto").unwrap();
        assert_eq!(cfg.matmul, None);
        let err = cfg.set("matmul=fast").unwrap_err().to_string();
        assert!(err.contains("auto, register, tiled"), "{err}");
    }
}
