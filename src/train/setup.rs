//! Run set-up for `wgpt train`: the settings a command line asks for; a new run (its directory,
//! the corpus tokenized into it, the trainer), from fresh weights or from a model directory's
//! (`--init`), removed again if set-up fails; and a resumed run, the command line checked against
//! what its checkpoint recorded, so that the command that started a run continues it with
//! `--resume` added.

use crate::dist::Place;
use std::path::{Path, PathBuf};

use std::collections::HashMap;

use super::checkpoints::ModelDir;
use super::config::RunConfig;
use super::run::ResumePoint;
use super::trainer::{load_corpus, Trainer};
use crate::data::batches::{split, Tokens};
use crate::data::dataset::{Input, TokenSet};
use crate::data::Tokenizer;
use crate::error::{Error, Result};
use crate::gpu::Gpu;

/// The preset of a run whose command line names none (nor a config file with one).
pub const DEFAULT_PRESET: &str = "tiny";

/// What a `wgpt train` command line asks for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub data: Option<PathBuf>,
    pub preset: Option<String>,
    pub config: Option<PathBuf>,
    /// A model directory (Hugging Face GPT-2 layout, or a wgpt run) to start from.
    pub init: Option<PathBuf>,
    pub steps: Option<u64>,
    /// `key=value` settings in command-line order: the dedicated flags (--precision, --recompute,
    /// --keep), then every --set.
    pub settings: Vec<String>,
    /// This process's place in a data-parallel job (`dist::launch`).
    pub place: Place,
}

impl Request {
    /// The settings of a new run: the preset (or the config file's `preset`), the config file,
    /// --steps, then `settings`.
    pub fn run_config(&self) -> Result<RunConfig> {
        let config = self.config.as_deref();
        let file_preset = config.map(RunConfig::toml_preset).transpose()?.flatten();
        let preset = file_preset.as_deref().or(self.preset.as_deref()).unwrap_or(DEFAULT_PRESET);
        let mut cfg = RunConfig::preset(preset).map_err(|e| match (config, &file_preset) {
            (Some(path), Some(_)) => Error::Other(format!("--config {}: {e}", path.display())),
            _ => e,
        })?;
        if let Some(path) = config {
            cfg.apply_toml(path)?;
        }
        if let Some(s) = self.steps {
            cfg.steps = s;
        }
        for kv in &self.settings {
            cfg.set(kv)?;
        }
        cfg.validate()?;
        (cfg.ranks, cfg.rank) = (self.place.ranks, self.place.rank);
        Ok(cfg)
    }

    /// The settings of a new run and, with --init, the model it starts from: the model's
    /// architecture and tokenizer replace the preset's, and a setting the command line gives that
    /// contradicts them is one line naming it. Reads and checks everything before anything is
    /// written.
    pub fn plan(&self) -> Result<(RunConfig, Option<Init>)> {
        let mut cfg = self.run_config()?;
        let Some(path) = &self.init else { return Ok((cfg, None)) };
        let init = Init::open(path, &format!("--init {}", path.display()))?;
        let m = init.model;
        let flag = format!("--init {}", path.display());
        let kind = match init.tokenizer {
            Tokenizer::Char(_) => "char",
            Tokenizer::Bpe(_) => "bpe",
        };
        if let Some(given) = self.given("tokenizer")?.filter(|_| cfg.tokenizer != kind) {
            return Err(Error::Other(format!(
                "{given}: the model of {flag} has a {kind} tokenizer, which the run uses; drop the setting"
            )));
        }
        // The tokenizer first: a BPE preset's vocabulary rules must not judge a char model's size.
        cfg.tokenizer = kind.into();
        for (key, have) in
            [("n_layer", m.n_layer), ("n_head", m.n_head), ("n_embd", m.n_embd), ("vocab_size", m.vocab_size)]
        {
            let asked = cfg.to_json()[key].as_u64().map(|v| v as usize);
            if let Some(given) = self.given(key)?.filter(|_| asked != Some(have)) {
                return Err(Error::Other(format!(
                    "{given}: the model of {flag} has {key}={have} (its config.json); drop the setting, or start from \
                     another model"
                )));
            }
            cfg.set(&format!("{key}={have}"))?;
        }
        if cfg.block_size > m.block_size {
            if let Some(given) = self.given("block_size")? {
                return Err(Error::Other(format!(
                    "{given}: the model of {flag} has {} positions (n_positions); block_size may be at most that",
                    m.block_size
                )));
            }
            cfg.set(&format!("block_size={}", m.block_size))?;
        }
        cfg.validate()?;
        Ok((cfg, Some(init)))
    }

    /// The flag that set `key`, if the command line or its config file did.
    fn given(&self, key: &str) -> Result<Option<String>> {
        if let Some(kv) = self.settings.iter().rev().find(|kv| key_of(kv) == key) {
            return Ok(Some(format!("--set {kv}")));
        }
        match &self.config {
            Some(path) if RunConfig::toml_sets(path, key)? => Ok(Some(format!("--config {}", path.display()))),
            _ => Ok(None),
        }
    }

    /// The resumable changes this command line asks of a resumed run: --steps and the settings
    /// whose keys may change (the others were checked against the checkpoint).
    fn changes(&self) -> Vec<String> {
        let resumable = |kv: &&String| RunConfig::RESUMABLE.contains(&key_of(kv));
        self.steps.iter().map(|s| format!("steps={s}")).chain(self.settings.iter().filter(resumable).cloned()).collect()
    }
}

fn key_of(kv: &str) -> &str {
    kv.split_once('=').map_or(kv, |(k, _)| k.trim())
}

/// The model a run starts from (`--init`), at all its positions.
pub type Init = ModelDir;

/// The weights for a run of `block_size` positions: the position table cropped to its first rows,
/// as nanoGPT's `crop_block_size` does.
fn cropped(init: &Init, block_size: usize) -> HashMap<String, Vec<f32>> {
    let mut p = init.params.clone();
    if let Some(wpe) = p.get_mut("transformer.wpe.weight") {
        wpe.truncate(block_size * init.model.n_embd);
    }
    p
}

/// A new run in `dir`, which must not exist: the directory, the corpus tokenized into
/// `dir/tokens` (text) or the given shards, and the trainer, from fresh weights or from `init`'s
/// (with its tokenizer). A failure removes the directory: no half-made run. `say` gets the
/// progress lines (tokenization).
pub fn start(
    gpu: &Gpu,
    cfg: &RunConfig,
    init: Option<&Init>,
    input: &Input,
    dir: &Path,
    say: &mut dyn FnMut(String),
) -> Result<Trainer> {
    if let (Some(init), Input::Shards { tokenizer, .. }) = (init, input) {
        if Tokenizer::load(tokenizer)?.to_json() != init.tokenizer.to_json() {
            return Err(Error::Other(format!(
                "--data {}: token shards made with another tokenizer than the model of --init {}; give the text \
                 instead, which is tokenized with the model's",
                input.describe(),
                init.dir.display()
            )));
        }
    }
    crate::util::new_dir(dir, "pass --resume to continue it or pick another --out")?;
    let mut setup = || -> Result<Trainer> {
        let corpus = input.fingerprint()?;
        let (tokenizer, shards) = match input {
            Input::Shards { files, tokenizer } => (crate::data::Tokenizer::load(tokenizer)?, files.clone()),
            text => {
                let started = std::time::Instant::now();
                let tokenizer = match init {
                    Some(init) => init.tokenizer.clone(),
                    None => text.train_tokenizer(&cfg.tokenizer, cfg.vocab_size)?,
                };
                let shards = text.tokenize(&tokenizer, &dir.join("tokens"))?;
                say(format!(
                    "tokenized {} into {} shard(s) in {}/tokens ({:.1}s)",
                    text.describe(),
                    shards.len(),
                    dir.display(),
                    started.elapsed().as_secs_f64()
                ));
                (tokenizer, shards)
            }
        };
        let tokens = TokenSet::open(&shards, tokenizer.vocab_size())?;
        // A corpus too short for the split is named here (the trainer checks it again).
        split(Tokens::len(&tokens), cfg.val_fraction, cfg.block_size)
            .map_err(|e| Error::Other(format!("--data {}: {e}", input.describe())))?;
        let mut t = Trainer::with_tokens(gpu, cfg.clone(), tokenizer, tokens, shards)?;
        t.corpus = Some(corpus);
        if let Some(init) = init {
            let params = cropped(init, cfg.block_size);
            t.ts.load_params(|name, _| {
                params.get(name).cloned().ok_or_else(|| Error::Other(format!("--init: no {name} in the model")))
            })?;
        }
        Ok(t)
    };
    setup().inspect_err(|_| {
        let _ = std::fs::remove_dir_all(dir);
    })
}

/// The run in `dir` continued from its newest checkpoint that verifies. The command line may be
/// the one that started the run: a --data with the same content (by fingerprint, wherever it
/// lies), the same --preset, --config and settings are accepted; a real difference is one line
/// naming the flag, the recorded value and the new one. Resumable settings (`RunConfig::RESUMABLE`)
/// given on the command line change the run. `notes` gets a line per damaged checkpoint passed over.
pub fn resume(gpu: &Gpu, dir: &Path, req: &Request, notes: &mut Vec<String>) -> Result<Trainer> {
    let at = ResumePoint::find(dir, notes)?;
    check_settings(&at.settings()?, req)?;
    let corpus = match (&req.data, at.shards().is_empty()) {
        (None, _) => None,
        // Runs from before token shards were recorded trained from memory: the text again.
        (Some(data), true) => Some(load_corpus(Some(data))?),
        (Some(data), false) => {
            check_corpus(&at, data)?;
            None
        }
    };
    Trainer::resume_from(gpu, &at, corpus.as_ref(), &req.changes(), req.place)
}

/// The recorded corpus against `--data`: the same content, or one line saying what differs.
fn check_corpus(at: &ResumePoint, data: &Path) -> Result<()> {
    let flag = format!("--data {}", data.display());
    let Some(recorded) = at.corpus() else {
        return Err(Error::Other(format!(
            "{flag}: {} records no corpus fingerprint (an older wgpt made it), so the run continues on its \
             recorded token shards; drop --data",
            at.dir.display()
        )));
    };
    let given = Input::detect(Some(data))?.fingerprint()?;
    if given != recorded {
        return Err(Error::Other(format!(
            "{flag}: not the corpus this run was made from (recorded {}, given {}); resume without --data, \
             or start a new run with another --out",
            short(&recorded),
            short(&given)
        )));
    }
    Ok(())
}

/// The first 12 hex digits of a fingerprint: enough to tell two apart in a message.
fn short(fingerprint: &str) -> &str {
    &fingerprint[..fingerprint.len().min("sha256:".len() + 12)]
}

/// The settings the checkpoint fixes against the command line's: unchanged by whatever preset,
/// config file and --set the command names.
fn check_settings(saved: &RunConfig, req: &Request) -> Result<()> {
    // What the command line says, over the saved run where it names no preset, config file or
    // model to start from (with --init, the architecture is that model's, as when it started).
    let asked = if req.init.is_some() {
        req.plan()?.0
    } else if req.preset.is_some() || req.config.is_some() {
        req.run_config()?
    } else {
        let mut cfg = saved.clone();
        for kv in &req.settings {
            cfg.set(kv)?;
        }
        cfg
    };
    let (was, now) = (saved.to_json(), asked.to_json());
    let fixed = was.as_object().into_iter().flatten().map(|(k, _)| k.as_str());
    for key in fixed.filter(|k| !RunConfig::RESUMABLE.contains(k) && *k != "preset") {
        if was[key] == now[key] {
            continue;
        }
        let flag = match req.settings.iter().rev().find(|kv| key_of(kv) == key) {
            Some(kv) => format!("--set {kv}"),
            None => match (&req.config, &req.preset) {
                (Some(path), _) if RunConfig::toml_sets(path, key)? => format!("--config {}", path.display()),
                (_, Some(p)) => format!("--preset {p}"),
                (Some(path), None) => format!("--config {}", path.display()),
                (None, None) => unreachable!("without a preset or config file only --set changes a key"),
            },
        };
        return Err(Error::Other(format!(
            "{flag}: the run was started with {key}={}, and this asks for {key}={}; the checkpoint fixes {key} \
             (keys that may change on --resume: {})",
            plain(&was[key]),
            plain(&now[key]),
            RunConfig::RESUMABLE.join(", ")
        )));
    }
    Ok(())
}

/// A JSON setting as it is typed: strings without quotes.
fn plain(v: &serde_json::Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// A rank other than 0 of a data-parallel job: the same run as rank 0 (the same settings, corpus
/// and checkpoint), trained in step with it, silently. It writes nothing of the run: a new run's
/// tokens go to a scratch directory removed at the end; a resumed run reads rank 0's directory.
#[cfg(not(target_arch = "wasm32"))]
pub fn follow(
    backend: crate::gpu::BackendChoice,
    pick: crate::gpu::context::AdapterPick,
    req: &Request,
    out: Option<&Path>,
    resume: bool,
    comm: Box<dyn crate::dist::Comm>,
) -> Result<()> {
    use crate::dist::agree::accept_kernels;
    let gpu = pollster::block_on(Gpu::picked(backend, pick))?;
    let (mut trainer, dir, scratch) = match (resume, out) {
        (true, Some(dir)) => {
            // A resume compiles the kernels its checkpoint records, as rank 0 does.
            let t = self::resume(&gpu, dir, req, &mut Vec::new())?;
            accept_kernels(&*comm)?;
            (t, dir.to_path_buf(), None)
        }
        (true, None) => return Err(Error::Other("--resume needs --out DIR, the run directory to continue".into())),
        (false, _) => {
            let (mut cfg, init) = req.plan()?;
            let input = Input::detect(req.data.as_deref())?;
            let scratch = std::env::temp_dir().join(format!("wgpt-rank{}-{}", req.place.rank, std::process::id()));
            // Compiled alongside rank 0; compiled again with rank 0's kernels where its own
            // timings chose others.
            let mut t = start(&gpu, &cfg, init.as_ref(), &input, &scratch, &mut |_| {})?;
            let kernels = accept_kernels(&*comm)?;
            if kernels != t.cfg.kernels {
                cfg.kernels = kernels;
                drop(t);
                let _ = std::fs::remove_dir_all(&scratch);
                t = start(&gpu, &cfg, init.as_ref(), &input, &scratch, &mut |_| {})?;
            }
            (t, scratch.clone(), Some(scratch))
        }
    };
    trainer.join(comm)?;
    let run = trainer.run(&dir, |_: &str| {});
    if let Some(s) = scratch {
        let _ = std::fs::remove_dir_all(s);
    }
    run
}
