//! The command line (native only): the flags of every command, their checks, and the dispatch to
//! the stage that runs each (`train::launch`, `infer::sample`, `train::bench`, ...); the small
//! commands (info, eval, report, viz, tokenizer) are here.

use std::path::{Path, PathBuf};

use clap::builder::PossibleValuesParser;
use clap::{Parser, Subcommand};

use crate::error::Result;
use crate::gpu::context::{choose, probe, BackendChoice, WANTED_FEATURES};
use crate::graph::Recompute;
use crate::train::Precision;

#[derive(Parser, Debug)]
#[command(name = "wgpt", version, about = "Train GPT-style language models with WGSL compute shaders on any GPU")]
pub struct Cli {
    /// Graphics backend: auto (WGPU_BACKEND if set, else all), vulkan, metal, dx12 or gl.
    #[arg(long, global = true, default_value = "auto")]
    pub backend: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a GPT. Without --data it trains on a built-in corpus of generated short stories.
    Train(TrainArgs),
    /// Mean loss and perplexity of a checkpoint on non-overlapping block_size windows of a text
    /// file, from its start (a final partial window is dropped); without --data, on the built-in
    /// corpus.
    Eval {
        /// The run directory to evaluate (config.json, model.safetensors, tokenizer.json).
        #[arg(long)]
        ckpt: PathBuf,
        /// A UTF-8 text file (or directory of .txt files) to score; default: the built-in stories.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Print one JSON object {"loss", "perplexity", "tokens"}.
        #[arg(long)]
        json: bool,
    },
    /// Training-step throughput of presets on this adapter, from random weights and tokens.
    Bench {
        /// Presets to time (repeatable); default: tiny and shakespeare-char.
        #[arg(long)]
        preset: Vec<String>,
        /// Timed steps per preset, after one warm-up step.
        #[arg(long, default_value_t = 5, allow_negative_numbers = true, value_parser = positive::<usize>)]
        steps: usize,
        /// Override a setting of every benchmarked preset, e.g. --set batch_size=1 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Also time every kernel (GPU timestamps where the adapter has them) and print, per entry
        /// point, its time, share, FLOPs, GFLOP/s and GB/s, and the step's MFU.
        #[arg(long)]
        profile: bool,
        /// The adapter's peak in TFLOP/s for MFU (default: a table of known GPUs' fp32 peaks).
        #[arg(long, value_name = "TFLOPS", requires = "profile", value_parser = tflops)]
        peak_tflops: Option<f64>,
        /// Print one JSON object per preset (peak_bytes, bytes by class, step_ms, tokens_per_s).
        #[arg(long)]
        json: bool,
        /// Only plan the step's memory (nothing is allocated or run): for models too large to
        /// step on this adapter. Uses the adapter's binding limits, or WebGPU's defaults without one.
        #[arg(long)]
        plan_only: bool,
        /// Build the step (every buffer created, every pipeline built) and run nothing: shows
        /// that a shape fits this adapter without the time a step would take.
        #[arg(long, conflicts_with_all = ["plan_only", "profile"])]
        compile_only: bool,
        /// With --plan-only: the memory the step must fit (e.g. 24GiB; default WGPT_DEVICE_MEMORY):
        /// says whether it does, and for each precision and recompute policy the largest
        /// micro-batch that fits and the grad_accum keeping the tokens per step.
        #[arg(long, value_name = "SIZE", requires = "plan_only", value_parser = size)]
        memory: Option<u64>,
        /// With --plan-only: plan one rank of a data-parallel job of N ranks (with --set zero=1,
        /// its shard of the AdamW moments).
        #[arg(long, value_name = "N", requires = "plan_only", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        ranks: u32,
        /// f32 or f16 storage (same as --set precision=...).
        #[arg(long, value_parser = PossibleValuesParser::new(Precision::NAMES))]
        precision: Option<String>,
        /// Activations the backward pass recomputes instead of keeping (same as --set recompute=...).
        #[arg(long, value_parser = PossibleValuesParser::new(Recompute::NAMES))]
        recompute: Option<String>,
    },
    /// Tokenizer tools.
    Tokenizer {
        #[command(subcommand)]
        command: TokenizerCommand,
    },
    /// Generate text from a checkpoint (a run directory).
    Sample {
        /// The run directory to sample from (config.json, model.safetensors, tokenizer.json).
        #[arg(long)]
        ckpt: PathBuf,
        /// Text to continue (default: the first token of the vocabulary).
        #[arg(long, default_value = "")]
        prompt: String,
        /// Tokens to generate.
        #[arg(long, default_value_t = 200, allow_negative_numbers = true, value_parser = whole::<usize>)]
        tokens: usize,
        /// Softmax temperature; 0 picks the most likely token.
        #[arg(long, default_value_t = 0.8, allow_negative_numbers = true, value_parser = temperature)]
        temperature: f64,
        /// Sample among the K most likely tokens only (0 = all).
        #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = whole::<usize>)]
        top_k: usize,
        /// Then sample among the smallest set of most likely tokens whose probability reaches P
        /// (nucleus sampling; 1 = all).
        #[arg(long, default_value_t = 1.0, allow_negative_numbers = true, value_parser = top_p)]
        top_p: f64,
        /// Seed of the sampler: the same seed and prompt give the same text.
        #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = whole::<u64>)]
        seed: u64,
        /// Continuations of the prompt generated side by side (one batch).
        #[arg(long, default_value_t = 1, value_name = "N", value_parser = positive::<usize>)]
        num_samples: usize,
        /// Recompute a whole forward pass per token instead of keeping a KV cache (the reference
        /// generation checks against, and the baseline of its benchmark).
        #[arg(long, conflicts_with = "num_samples")]
        no_cache: bool,
    },
    /// Write PNG charts of a run into its directory: loss.png (train and validation loss from
    /// metrics.jsonl) and attention_L<l>.png (every head of layer l as heat maps, from the latest
    /// checkpoint on --prompt, or on the first 64 tokens of the built-in stories).
    Report {
        /// The run directory (metrics.jsonl, config.json, model.safetensors, tokenizer.json).
        run_dir: PathBuf,
        /// Layers to draw (repeatable; default: all).
        #[arg(long = "layer", value_name = "L", allow_negative_numbers = true, value_parser = whole::<usize>)]
        layers: Vec<usize>,
        /// Text whose attention to show (at most block_size tokens).
        #[arg(long)]
        prompt: Option<String>,
    },
    /// Open the training window on a run directory, finished or running: its metrics.jsonl
    /// (re-read as it grows) and attention maps from its latest checkpoint. Needs the cargo
    /// feature `viz`.
    Viz {
        /// The run directory (metrics.jsonl, config.json, model.safetensors, tokenizer.json).
        dir: PathBuf,
        /// Save a PNG of the window once the metrics and maps are shown (or after 10 minutes,
        /// saying what was missing), then close it.
        #[arg(long, value_name = "PATH")]
        screenshot: Option<PathBuf>,
    },
    /// List every adapter (name, backend, device type), the features wgpt uses and the key limits;
    /// marks the one wgpt would pick (WGPU_ADAPTER_NAME filters by name).
    Info,
}

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// A UTF-8 text file, a directory whose .txt files are read in name order, or token shards (a
    /// .tok file or a directory of them, with their tokenizer.json) from `wgpt tokenizer encode`.
    /// Text is tokenized once into shards in <out>/tokens. Default: the built-in stories.
    #[arg(long)]
    data: Option<PathBuf>,
    /// tiny (the default), shakespeare-char, shakespeare, gpt2 or gpt2-medium.
    #[arg(long)]
    preset: Option<String>,
    /// Train on the INDEX-th of the equally preferred adapters (from 0, as `wgpt info` lists
    /// them). Under mpirun each rank takes its local rank's by default.
    #[arg(long, value_name = "INDEX")]
    device: Option<usize>,
    /// Optimizer steps (overrides the preset).
    #[arg(long, allow_negative_numbers = true, value_parser = whole::<u64>)]
    steps: Option<u64>,
    /// Override any setting, e.g. --set lr=1e-3 --set tokenizer=bpe (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Activations the backward pass recomputes instead of keeping, to save memory: none, gelu,
    /// norm, attn, or block (keep only each transformer block's input). Gradients are unchanged.
    #[arg(long, value_parser = PossibleValuesParser::new(Recompute::NAMES))]
    recompute: Option<String>,
    /// A TOML file of settings (`preset = "..."` and any --set key); --set wins over it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Start from the weights and tokenizer of a GPT-2 directory (as transformers' save_pretrained
    /// writes it: config.json, model.safetensors, tokenizer.json or vocab.json + merges.txt) or of a
    /// wgpt run, with fresh optimizer state and schedule; --data is tokenized with its tokenizer.
    /// The architecture is the model's; block_size may be at most its n_positions.
    #[arg(long, value_name = "DIR")]
    init: Option<PathBuf>,
    /// Run directory for checkpoints and metrics.jsonl (default: runs/<preset>-<time>); must not
    /// exist unless --resume.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in --out from its newest checkpoint whose checksums verify, with its saved
    /// settings and the token shards it recorded (--steps may raise the total, --keep change).
    #[arg(long)]
    resume: bool,
    /// Checkpoints to keep in <out>/checkpoints (the newest; default 3). Same as --set keep=N.
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = positive::<usize>)]
    keep: Option<usize>,
    /// Storage of activations and gradients: f32, or f16 with f32 master weights and dynamic loss
    /// scaling (falls back to f32 on adapters without shader-f16). Same as --set precision=...
    #[arg(long, value_parser = PossibleValuesParser::new(Precision::NAMES))]
    precision: Option<String>,
    /// Open a window with live loss, lr, grad-norm and tokens/s plots and attention maps while
    /// training runs (needs the cargo feature `viz`).
    #[arg(long, hide = cfg!(not(feature = "viz")))]
    viz: bool,
    /// With --viz: save a PNG of the window when training ends (or after 10 minutes, saying what
    /// was missing), then close it (for benchmarks and screenshots without anyone to close the window).
    #[arg(long, value_name = "PATH", requires = "viz", hide = cfg!(not(feature = "viz")))]
    screenshot: Option<PathBuf>,
}

impl TrainArgs {
    /// The run's settings in command-line order: the dedicated flags, then every --set.
    fn into_launch(self) -> crate::train::launch::Launch {
        let TrainArgs {
            data,
            preset,
            device,
            steps,
            set,
            recompute,
            config,
            init,
            out,
            resume,
            keep,
            precision,
            viz,
            screenshot,
        } = self;
        let settings: Vec<String> = precision
            .iter()
            .map(|p| format!("precision={p}"))
            .chain(recompute.iter().map(|r| format!("recompute={r}")))
            .chain(keep.iter().map(|k| format!("keep={k}")))
            .chain(set)
            .collect();
        let req = crate::train::setup::Request { data, preset, config, init, steps, settings, ..Default::default() };
        crate::train::launch::Launch { req, device, out, resume, viz, screenshot }
    }
}

/// A command-line mistake as one line (clap's own message is several): its `error:` line, the
/// possible values or tip clap adds, and where the options are listed. None for --help,
/// --version and a missing subcommand, which clap prints as usual. `args` (the command line, without
/// the program) names the subcommand when clap's message does not.
pub fn usage_error(e: &clap::Error, args: &[String]) -> Option<String> {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        return None;
    }
    let text = e.to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("invalid command line");
    let mut parts = vec![first.strip_prefix("error: ").unwrap_or(first).to_string()];
    let subcommands: Vec<String> =
        <Cli as clap::CommandFactory>::command().get_subcommands().map(|c| c.get_name().to_string()).collect();
    let mut command = match args.iter().find(|a| subcommands.contains(a)) {
        Some(sub) => format!("wgpt {sub}"),
        None => "wgpt".to_string(),
    };
    for l in lines {
        if let Some(usage) = l.strip_prefix("Usage: ") {
            let words: Vec<&str> = usage.split_whitespace().take_while(|w| !w.starts_with(['[', '<', '-'])).collect();
            command = words.join(" ");
        } else if l.starts_with('[') || l.starts_with("tip:") {
            parts.push(l.trim_matches(['[', ']']).to_string());
        }
    }
    Some(format!("{}; `{command} --help` lists the options", parts.join("; ")))
}

/// `--flag N` for a count that may be 0.
fn whole<T: std::str::FromStr>(s: &str) -> std::result::Result<T, String> {
    s.trim().parse().map_err(|_| "expected a whole number >= 0".to_string())
}

/// `--flag N` for a count that must be at least 1.
fn positive<T: std::str::FromStr + PartialOrd + Default>(s: &str) -> std::result::Result<T, String> {
    match whole::<T>(s) {
        Ok(n) if n > T::default() => Ok(n),
        _ => Err("expected a whole number >= 1".into()),
    }
}

/// `--peak-tflops X`: a finite number > 0.
fn tflops(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(t) if t.is_finite() && t > 0.0 => Ok(t),
        _ => Err("expected the adapter's peak in TFLOP/s, a number > 0 (e.g. 66.9)".into()),
    }
}

/// `--memory SIZE`: bytes, or a number with K, M or G (GiB and the like too).
fn size(s: &str) -> std::result::Result<u64, String> {
    crate::gpu::faults::parse_bytes(s)
        .filter(|&b| b > 0)
        .ok_or_else(|| format!("expected a size such as 24GiB, 512M or 1000000 (bytes), got '{s}'"))
}

/// `--top-p P`: a number in (0, 1].
fn top_p(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 1.0 => Ok(p),
        _ => Err(format!("expected a number in (0, 1] (1 keeps every token), got '{s}'")),
    }
}

/// `--temperature T`: a finite number >= 0.
fn temperature(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(t) if t.is_finite() && t >= 0.0 => Ok(t),
        _ => Err("expected a finite number >= 0 (0 picks the most likely token)".into()),
    }
}

#[derive(Subcommand, Debug)]
pub enum TokenizerCommand {
    /// Train a byte-level BPE tokenizer on a text and save it as a Hugging Face tokenizer.json.
    Train {
        /// A UTF-8 text file or a directory of .txt files (BPE trains on its first 16 MiB).
        #[arg(long)]
        data: PathBuf,
        /// Vocabulary size (at least 256: the byte symbols, then one merge per extra token).
        #[arg(long, allow_negative_numbers = true, value_parser = whole::<usize>)]
        vocab: usize,
        /// Where to write the tokenizer.json.
        #[arg(long)]
        out: PathBuf,
    },
    /// Tokenize text once into token shards (DIR/0000.tok, ...) with a copy of the tokenizer, for
    /// `wgpt train --data DIR`.
    Encode {
        /// A UTF-8 text file or a directory of .txt files.
        #[arg(long)]
        data: PathBuf,
        /// The tokenizer.json to encode with.
        #[arg(long)]
        tokenizer: PathBuf,
        /// Directory for the shards; must not exist.
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(cli: Cli) -> Result<()> {
    let backend = BackendChoice::parse(&cli.backend)?;
    match cli.command {
        Command::Info => info(backend),
        Command::Train(args) => crate::train::launch::train(backend, args.into_launch()),
        Command::Eval { ckpt, data, json } => eval(backend, &ckpt, data.as_deref(), json),
        Command::Bench {
            preset,
            steps,
            set,
            profile,
            peak_tflops,
            json,
            plan_only,
            compile_only,
            memory,
            ranks,
            precision,
            recompute,
        } => {
            let set: Vec<String> = precision
                .iter()
                .map(|p| format!("precision={p}"))
                .chain(recompute.iter().map(|r| format!("recompute={r}")))
                .chain(set)
                .collect();
            let profile = profile.then_some(crate::train::bench::ProfileAsk { peak_tflops });
            crate::train::bench::command(
                backend,
                &preset,
                steps,
                &set,
                crate::train::bench::BenchMode {
                    profile,
                    json,
                    plan_only,
                    compile_only,
                    memory,
                    ranks: ranks as usize,
                },
            )
        }
        Command::Tokenizer { command: TokenizerCommand::Train { data, vocab, out } } => {
            let input = crate::data::dataset::Input::detect(Some(&data))?;
            let tok = input.train_tokenizer("bpe", vocab)?;
            tok.save(&out)?;
            println!("{}: byte-level BPE with {} tokens", out.display(), tok.vocab_size());
            if tok.vocab_size() < vocab {
                println!("(fewer than --vocab {vocab}: after that many merges no pair of symbols occurs twice)");
            }
            Ok(())
        }
        Command::Tokenizer { command: TokenizerCommand::Encode { data, tokenizer, out } } => {
            encode(&data, &tokenizer, &out)
        }
        Command::Report { run_dir, layers, prompt } => report(backend, &run_dir, &layers, prompt.as_deref()),
        Command::Sample { ckpt, prompt, tokens, temperature, top_k, top_p, seed, num_samples, no_cache } => {
            let sampling = crate::infer::Sampling { temperature, top_k, top_p };
            let ask = crate::infer::sample::Ask {
                ckpt: &ckpt,
                prompt: &prompt,
                tokens,
                sampling,
                seed,
                num_samples,
                no_cache,
            };
            crate::infer::sample::run(backend, &ask)
        }
        Command::Viz { dir, screenshot } => viz(backend, &dir, screenshot),
    }
}

#[cfg(not(feature = "viz"))]
fn viz(_: BackendChoice, _: &Path, _: Option<PathBuf>) -> Result<()> {
    Err(crate::error::no_viz())
}

#[cfg(feature = "viz")]
fn viz(backend: BackendChoice, dir: &Path, screenshot: Option<PathBuf>) -> Result<()> {
    use crate::viz::window;
    if !dir.join("metrics.jsonl").is_file() && !dir.join("config.json").is_file() {
        return Err(crate::Error::Other(format!(
            "{}: not a run directory (no metrics.jsonl or config.json)",
            dir.display()
        )));
    }
    let (link, ends, _) = window::link();
    let prompt = window::run_prompt(dir);
    let (d, p) = (dir.to_path_buf(), prompt.clone());
    std::thread::spawn(move || {
        let gpu = pollster::block_on(crate::gpu::Gpu::new(backend)).map_err(|e| e.to_string());
        window::follow_run(&d, gpu, p, link);
    });
    let shot = screenshot.map(|path| window::Screenshot {
        path,
        min_steps: 1,
        at_end: false,
        // Generous: on a busy software adapter the maps' probe alone can take a minute to compile.
        timeout: std::time::Duration::from_secs(600),
    });
    window::open(&dir.display().to_string(), ends, prompt, shot)
}

fn info(backend: BackendChoice) -> Result<()> {
    // Every tier, GL included: this command lists what there is. The one marked is the one
    // `Gpu::new` opens: the first tier's choice.
    let (mut adapters, mut chosen) = (Vec::new(), None);
    let name = std::env::var("WGPU_ADAPTER_NAME").ok();
    for backends in backend.tiers() {
        let found = pollster::block_on(probe(backends)).1;
        if chosen.is_none() {
            chosen = choose(found.clone(), name.as_deref()).map(|a| a.get_info());
        }
        adapters.extend(found);
    }
    if adapters.is_empty() {
        return Err(crate::Error::NoAdapter { detail: format!(" for backends {:?}", backend.backends()) });
    }
    for a in &adapters {
        let i = a.get_info();
        let mark = if chosen.as_ref() == Some(&i) { "*" } else { " " };
        println!("{mark} {} ({:?}, {:?}) driver: {} {}", i.name, i.backend, i.device_type, i.driver, i.driver_info);
        let f = a.features();
        let feat = |x: wgpu::Features, n: &str| format!("{n}={}", if f.contains(x) { "yes" } else { "no" });
        println!(
            "    features: {} {} (sizes {}..={}) {} {}",
            feat(wgpu::Features::SHADER_F16, "shader-f16"),
            feat(wgpu::Features::SUBGROUP, "subgroups"),
            i.subgroup_min_size,
            i.subgroup_max_size,
            feat(wgpu::Features::TIMESTAMP_QUERY, "timestamps"),
            feat(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX, "cooperative-matrix")
        );
        let _ = WANTED_FEATURES;
        let l = a.limits();
        println!(
            "    limits: max_buffer_size={} max_storage_buffer_binding_size={} storage_buffers_per_stage={} workgroup_storage={} invocations_per_workgroup={} workgroups_per_dim={} storage_offset_alignment={}",
            l.max_buffer_size,
            l.max_storage_buffer_binding_size,
            l.max_storage_buffers_per_shader_stage,
            l.max_compute_workgroup_storage_size,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroups_per_dimension,
            l.min_storage_buffer_offset_alignment
        );
    }
    println!("(* = the adapter wgpt uses: a real GPU is preferred over a software one)");
    Ok(())
}

/// Creates `--out` DIR, which must not exist, in one step (not checked, then made): two commands
/// given the same directory cannot both take it and later remove each other's files.
fn encode(data: &Path, tokenizer: &Path, out: &Path) -> Result<()> {
    use crate::data::dataset::Input;
    let input = Input::detect(Some(data))?;
    if matches!(input, Input::Shards { .. }) {
        return Err(crate::Error::Other(format!("--data {}: already token shards", data.display())));
    }
    let tok = crate::data::Tokenizer::load(tokenizer)?;
    crate::util::new_dir(out, "pick a new directory")?;
    let made = input
        .tokenize(&tok, out)
        .map_err(|e| crate::Error::Other(format!("encoding with --tokenizer {}: {e}", tokenizer.display())))
        .and_then(|files| tok.save(&out.join("tokenizer.json")).map(|_| files));
    match made {
        Ok(files) => {
            let n: usize = files.iter().map(|f| crate::data::shard::Shard::open(f).map_or(0, |s| s.len())).sum();
            println!("{}: {} shard(s), {n} tokens, with tokenizer.json", out.display(), files.len());
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(out);
            Err(e)
        }
    }
}

fn eval(backend: BackendChoice, ckpt: &Path, data: Option<&Path>, json: bool) -> Result<()> {
    let corpus = crate::train::trainer::load_corpus(data)?;
    let in_text = |e: crate::Error| crate::Error::Other(format!("{}: {e}", corpus.source));
    let windows = |model: &crate::model::GptConfig, t: &Vec<u32>| (t.len() - 1) / model.block_size;
    let (trainer, tokens) = crate::train::checkpoints::open_forward_only(
        backend,
        ckpt,
        windows,
        |model, tok| {
            let tokens = tok.encode(&corpus.text).map_err(|e| {
                in_text(crate::Error::Other(format!("{e}; evaluate on text the checkpoint's tokenizer covers")))
            })?;
            crate::train::trainer::check_windows(tokens.len(), model.block_size).map_err(in_text)?;
            Ok(tokens)
        },
        false,
    )?;
    let (loss, n) = trainer.eval_windows(&tokens).map_err(in_text)?;
    if json {
        println!("{}", serde_json::json!({"loss": loss, "perplexity": loss.exp(), "tokens": n}));
    } else {
        println!("{}: loss {loss:.4}  perplexity {:.3}  over {n} tokens", corpus.source, loss.exp());
    }
    Ok(())
}

fn report(backend: BackendChoice, dir: &Path, layers: &[usize], prompt: Option<&str>) -> Result<()> {
    if !dir.is_dir() {
        return Err(crate::Error::Other(format!("report: {}: no such run directory", dir.display())));
    }
    let gpu = pollster::block_on(crate::gpu::Gpu::new(backend))?;
    let w = crate::viz::report::report(&gpu, dir, layers, prompt)?;
    for p in std::iter::once(&w.loss).chain(&w.attention) {
        println!("{}", p.display());
    }
    Ok(())
}
