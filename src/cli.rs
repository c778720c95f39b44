//! Command-line interface (native only): `wgpt info` lists adapters; later stages add train,
//! sample, eval, tokenizer and bench.

use std::path::{Path, PathBuf};

use clap::builder::PossibleValuesParser;
use clap::{Parser, Subcommand};

use crate::error::Result;
use crate::gpu::context::{choose, probe, BackendChoice, WANTED_FEATURES};
use crate::graph::Recompute;
use crate::train::checkpoints::ModelDir;
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

/// The error of `--viz` / `wgpt viz` in a build without the window.
#[cfg(not(feature = "viz"))]
fn no_viz() -> crate::Error {
    crate::Error::Other(
        "this wgpt was built without the window; rebuild with `cargo build --release --features viz`".into(),
    )
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
        Command::Train(args) => train(backend, args),
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
            bench(
                backend,
                &preset,
                steps,
                &set,
                BenchMode { profile, json, plan_only, compile_only, memory, ranks: ranks as usize },
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
            if no_cache {
                return sample_recomputing(backend, &ckpt, &prompt, tokens, sampling, seed);
            }
            sample(backend, &ckpt, &prompt, tokens, sampling, seed, num_samples)
        }
        Command::Viz { dir, screenshot } => viz(backend, &dir, screenshot),
    }
}

#[cfg(not(feature = "viz"))]
fn viz(_: BackendChoice, _: &Path, _: Option<PathBuf>) -> Result<()> {
    Err(no_viz())
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

/// Runs `trainer` to the end, reporting to the terminal, and to a window with --viz: training
/// then runs in its own thread while the window has the main one.
fn run_training(
    gpu: crate::gpu::Gpu,
    mut trainer: crate::train::trainer::Trainer,
    dir: &Path,
    at: u64,
    viz: bool,
    screenshot: Option<PathBuf>,
) -> Result<()> {
    let bar = Bar::new(trainer.cfg.steps, at);
    if !viz {
        return trainer.run(dir, bar);
    }
    #[cfg(not(feature = "viz"))]
    {
        let _ = (gpu, screenshot);
        Err(no_viz())
    }
    #[cfg(feature = "viz")]
    {
        use crate::viz::window::{self, Event, MapMaker, WindowProgress, MAP_TOKENS};
        let (link, ends, shown) = window::link();
        let prompt = trainer.tokenizer.decode(&trainer.val_tokens(MAP_TOKENS));
        let maps =
            MapMaker::new(&gpu, trainer.model, MAP_TOKENS, trainer.tokenizer.clone(), prompt.clone(), link.settings);
        let feed = link.feed.clone();
        let progress = WindowProgress::new(bar, link.feed, maps);
        let (d, steps) = (dir.to_path_buf(), trainer.cfg.steps);
        let training = std::thread::Builder::new().name("train".into()).spawn(move || {
            window::wait_shown(shown, std::time::Duration::from_secs(60));
            let r = trainer.run(&d, progress);
            drop(gpu);
            feed.send(Event::Status(match &r {
                Ok(()) => "training finished".into(),
                Err(e) => format!("training failed: {e}"),
            }));
            r
        });
        let training =
            training.map_err(|e| crate::Error::Other(format!("could not start the training thread: {e}")))?;
        // With --train --viz the picture is taken when training ends.
        let shot = screenshot.map(|path| window::Screenshot {
            path,
            min_steps: 5,
            at_end: true,
            timeout: std::time::Duration::from_secs(600),
        });
        if let Err(e) = window::open(&dir.display().to_string(), ends, prompt, shot) {
            println!("wgpt: {e}; training continues in the terminal");
        } else if !training.is_finished() {
            println!("window closed; training continues in the terminal to step {steps} (Ctrl-C stops it; --resume continues from the last checkpoint)");
        }
        training.join().map_err(|_| crate::Error::Other("the training thread panicked".into()))?
    }
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

fn train(backend: BackendChoice, args: TrainArgs) -> Result<()> {
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
    } = args;
    #[cfg(not(feature = "viz"))]
    if viz {
        return Err(no_viz());
    }
    // Under mpirun, one rank of a data-parallel job: MPI starts before anything else.
    let job = crate::dist::launch::detect()?;
    let (place, local_rank) = job.unwrap_or((crate::dist::Place::ALONE, 0));
    use crate::gpu::context::AdapterPick;
    let pick = device.map_or(AdapterPick::LocalRank(local_rank), AdapterPick::Index);
    let comm = job.map(|(place, _)| crate::dist::launch::connect(place)).transpose()?;
    // Ctrl-C and SIGTERM save a checkpoint before the process ends.
    crate::train::interrupt::install()?;
    use crate::data::dataset::Input;
    use crate::train::setup::{self, Request};
    use crate::Error;
    let settings: Vec<String> = precision
        .iter()
        .map(|p| format!("precision={p}"))
        .chain(recompute.iter().map(|r| format!("recompute={r}")))
        .chain(keep.iter().map(|k| format!("keep={k}")))
        .chain(set)
        .collect();
    let req = Request { data, preset, config, init, steps, settings, place };
    // Rank 0 gives the others its kernel choices, then the ranks check that they agree.
    let join = |t: &mut crate::train::trainer::Trainer, comm: Option<Box<dyn crate::dist::Comm>>| match comm {
        Some(c) => {
            crate::dist::agree::offer_kernels(&*c, &t.cfg.kernels)?;
            t.join(c)
        }
        None => Ok(()),
    };
    if !place.leads() {
        let comm = comm.expect("a rank other than 0 is in a job");
        return crate::train::setup::follow(backend, pick, &req, out.as_deref(), resume, comm);
    }
    if resume {
        let Some(dir) = out else {
            return Err(Error::Other("--resume needs --out DIR, the run directory to continue".into()));
        };
        if !dir.is_dir() {
            return Err(Error::Other(format!("--resume: {} is not a run directory", dir.display())));
        }
        // A run directory that cannot be written (read-only, no permission) fails now, not after
        // the step is compiled; nothing is created or changed here.
        let metrics = dir.join("metrics.jsonl");
        if let Err(e) = std::fs::OpenOptions::new().append(true).open(&metrics) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(crate::util::io_error(&metrics, &e));
            }
        }
        let gpu = pollster::block_on(crate::gpu::Gpu::picked(backend, pick))?;
        let mut notes = Vec::new();
        let trainer = setup::resume(&gpu, &dir, &req, &mut notes);
        for n in notes {
            println!("{n}");
        }
        let mut trainer = trainer?;
        join(&mut trainer, comm)?;
        if let Some(line) = trainer.job_line() {
            println!("{line}");
        }
        println!("adapter: {}; resuming {} at step {}", gpu.describe(), dir.display(), trainer.step);
        if let Some(n) = &trainer.notice {
            println!("{n}");
        }
        let at = trainer.step;
        return run_training(gpu, trainer, &dir, at, viz, screenshot);
    }
    let (cfg, init) = req.plan()?;
    let input = Input::detect(req.data.as_deref())?;
    let dir = out.unwrap_or_else(|| {
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        PathBuf::from(format!("runs/{}-{secs}", cfg.preset))
    });
    if dir.exists() {
        return Err(Error::Other(format!(
            "--out {}: the directory exists; pass --resume to continue it or pick another --out (nothing was changed)",
            dir.display()
        )));
    }
    let gpu = pollster::block_on(crate::gpu::Gpu::picked(backend, pick))?;
    println!("adapter: {}", gpu.describe());
    if let Some(init) = &init {
        println!("starting from the model in {}", init.dir.display());
    }
    let mut trainer = setup::start(&gpu, &cfg, init.as_ref(), &input, &dir, &mut |line| println!("{line}"))?;
    join(&mut trainer, comm)?;
    if let Some(line) = trainer.job_line() {
        println!("{line}");
    }
    println!("corpus: {}; tokenizer: {} ({} tokens)", input.describe(), cfg.tokenizer, trainer.model.vocab_size);
    println!(
        "model: {} layers, {} heads, C={}, T={}, V={}; {} train / {} val tokens; {} dispatches per step",
        trainer.model.n_layer,
        trainer.model.n_head,
        trainer.model.n_embd,
        trainer.model.block_size,
        trainer.model.vocab_size,
        trainer.train.len(),
        trainer.val.len(),
        trainer.ts.step.len()
    );
    if let Some(n) = &trainer.notice {
        println!("{n}");
    }
    println!("precision: {}; {}", trainer.cfg.precision.name(), trainer.ts.step.plan.summary());
    println!("run directory: {}", dir.display());
    run_training(gpu, trainer, &dir, 0, viz, screenshot)
}

/// The training progress bar on a terminal (step, loss, lr, tokens/s, ETA), with log lines printed
/// above it; without a terminal, only the log lines.
struct Bar(indicatif::ProgressBar);

impl Bar {
    fn new(steps: u64, at: u64) -> Bar {
        let bar = indicatif::ProgressBar::new(steps).with_position(at);
        let style = indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} ETA {eta}")
            .expect("a valid progress template");
        bar.set_style(style);
        Bar(bar)
    }
}

impl crate::train::trainer::Progress for Bar {
    fn line(&mut self, text: &str) {
        if self.0.is_hidden() || self.0.is_finished() {
            println!("{text}");
        } else {
            self.0.println(text);
        }
    }

    fn step(&mut self, r: &crate::train::trainer::StepReport) {
        self.0.set_position(r.step);
        self.0.set_message(format!("loss {:.4}  lr {:.2e}  {:.0} tok/s", r.loss, r.lr, r.tokens_per_s));
        if r.step == r.steps {
            self.0.finish_and_clear();
        }
    }
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

/// A forward-only trainer holding a checkpoint's weights, for `windows` windows at a time at most,
/// and what `prepare` makes of the model and tokenizer first: a mistake in the input (a prompt or
/// text the tokenizer does not cover, a text too short) is reported before the GPU is set up.
fn open_checkpoint<T>(
    backend: BackendChoice,
    ckpt: &Path,
    windows: impl FnOnce(&crate::model::GptConfig, &T) -> usize,
    prepare: impl FnOnce(&crate::model::GptConfig, &crate::data::Tokenizer) -> Result<T>,
    keep_logits: bool,
) -> Result<(crate::train::trainer::Trainer, T)> {
    use crate::train::config::RunConfig;
    use crate::train::trainer::Trainer;
    let found = ModelDir::open(ckpt, &format!("--ckpt {}", ckpt.display()))?;
    let (model, tokenizer) = (found.model, found.tokenizer);
    let prepared = prepare(&model, &tokenizer)?;
    let mut cfg = RunConfig::preset("tiny")?;
    (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size) =
        (model.n_layer, model.n_head, model.n_embd, model.block_size);
    let gpu = pollster::block_on(crate::gpu::Gpu::new(backend))?;
    let windows = windows(&model, &prepared);
    Ok((Trainer::forward_only(&gpu, cfg, model, tokenizer, &found.params, windows, keep_logits)?, prepared))
}

/// `sample --no-cache`: a whole forward pass over the context for every token.
fn sample_recomputing(
    backend: BackendChoice,
    ckpt: &Path,
    prompt: &str,
    tokens: usize,
    sampling: crate::infer::Sampling,
    seed: u64,
) -> Result<()> {
    let (trainer, ids) = open_checkpoint(
        backend,
        ckpt,
        |_, _| 1,
        |_, tok| tok.encode(prompt).map_err(|e| crate::Error::Other(format!("--prompt: {e}"))),
        true,
    )?;
    let mut rng = crate::data::batches::Rng(seed);
    let started = std::time::Instant::now();
    let out = trainer.generate(&ids, tokens, sampling, &mut rng)?;
    let secs = started.elapsed().as_secs_f64();
    println!("{}", trainer.tokenizer.decode(&out));
    eprintln!("{tokens} tokens in {secs:.2}s ({:.1} tokens/s, whole forward per token)", tokens as f64 / secs);
    Ok(())
}

/// Generates with the KV cache (`infer::Generator`), streaming the text of a single sample as it
/// comes; several samples are printed when done. Stops at --tokens, at the tokenizer's end-of-text
/// token, or at the model's context length.
fn sample(
    backend: BackendChoice,
    ckpt: &Path,
    prompt: &str,
    tokens: usize,
    sampling: crate::infer::Sampling,
    seed: u64,
    num_samples: usize,
) -> Result<()> {
    use std::io::Write;
    let ModelDir { model, tokenizer, params, .. } = ModelDir::open(ckpt, &format!("--ckpt {}", ckpt.display()))?;
    let ids = tokenizer.encode(prompt).map_err(|e| crate::Error::Other(format!("--prompt: {e}")))?;
    if ids.len() > model.block_size {
        return Err(crate::Error::Other(format!(
            "--prompt: {} tokens, more than the model's context of {}",
            ids.len(),
            model.block_size
        )));
    }
    let gpu = pollster::block_on(crate::gpu::Gpu::new(backend))?;
    let generator = pollster::block_on(crate::infer::Generator::new(&gpu, model, num_samples, sampling))?;
    generator.load_params(&params)?;
    let mut rng = crate::data::batches::Rng(seed);
    let started = std::time::Instant::now();
    let mut shown = crate::infer::TextStream::default();
    let stream = num_samples == 1;
    if stream {
        print!("{prompt}");
    }
    let out = pollster::block_on(generator.generate(&ids, tokens, tokenizer.end_of_text(), false, &mut rng, |next| {
        if let Some(text) = stream.then(|| shown.push(&tokenizer, next[0])).flatten() {
            print!("{text}");
            let _ = std::io::stdout().flush();
        }
    }))?;
    let secs = started.elapsed().as_secs_f64();
    if stream {
        println!("{}", shown.finish(&tokenizer));
    } else {
        for (i, seq) in out.iter().enumerate() {
            println!("--- sample {} ---\n{prompt}{}", i + 1, tokenizer.decode(seq));
        }
    }
    let made: usize = out.iter().map(Vec::len).sum();
    eprintln!("{made} tokens in {secs:.2}s ({:.1} tokens/s, {} sequence(s), KV cache)", made as f64 / secs, out.len());
    Ok(())
}

fn eval(backend: BackendChoice, ckpt: &Path, data: Option<&Path>, json: bool) -> Result<()> {
    let corpus = crate::train::trainer::load_corpus(data)?;
    let in_text = |e: crate::Error| crate::Error::Other(format!("{}: {e}", corpus.source));
    let windows = |model: &crate::model::GptConfig, t: &Vec<u32>| (t.len() - 1) / model.block_size;
    let (trainer, tokens) = open_checkpoint(
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

/// How `wgpt bench` runs and prints.
struct BenchMode {
    profile: Option<crate::train::bench::ProfileAsk>,
    json: bool,
    plan_only: bool,
    compile_only: bool,
    memory: Option<u64>,
    ranks: usize,
}

fn bench(backend: BackendChoice, presets: &[String], steps: usize, set: &[String], mode: BenchMode) -> Result<()> {
    use crate::train::config::RunConfig;
    let presets: Vec<String> =
        if presets.is_empty() { vec!["tiny".into(), "shakespeare-char".into()] } else { presets.to_vec() };
    let mut cfgs = Vec::new();
    for p in &presets {
        let mut cfg = RunConfig::preset(p)?;
        for kv in set {
            cfg.set(kv)?;
        }
        cfg.validate()?;
        cfg.ranks = mode.ranks;
        cfgs.push(cfg);
    }
    let gpu = pollster::block_on(crate::gpu::Gpu::new(backend));
    let (gpu, adapter) = match gpu {
        Ok(g) => {
            let name = g.describe();
            (Some(g), name)
        }
        // Planning needs only the limits; WebGPU's defaults stand in for an absent adapter.
        Err(_) if mode.plan_only => (None, "none (WebGPU default limits)".to_string()),
        Err(e) => return Err(e),
    };
    if !mode.json {
        println!("adapter: {adapter}");
    }
    for cfg in &mut cfgs {
        if let (Some(g), false) = (&gpu, mode.plan_only) {
            let (precision, notice) = crate::train::TrainStep::supported_precision(g, cfg.precision);
            cfg.precision = precision;
            if let Some(n) = notice {
                eprintln!("{n}");
            }
        }
        let cfg = &*cfg;
        let budget = crate::train::budget::Budget {
            memory: mode.memory.or(gpu.as_ref().and_then(|g| g.memory_cap)),
            max_buffer: gpu.as_ref().map_or(256 << 20, |g| g.max_buffer()),
            max_binding: gpu.as_ref().map_or(128 << 20, |g| g.max_binding()),
            align: gpu.as_ref().map_or(256, |g| g.align()),
        };
        let r = match &gpu {
            Some(g) if mode.compile_only => crate::train::bench::compile_only(g, cfg)?,
            Some(g) if !mode.plan_only => crate::train::bench::bench(g, cfg, steps, mode.profile)?,
            _ => crate::train::bench::plan_only(cfg, budget.max_binding, budget.max_buffer, budget.align)?,
        };
        let fits = if mode.plan_only && budget.memory.is_some() { Some(budget.fits(cfg)?) } else { None };
        if mode.json {
            let mut j = r.to_json(&adapter);
            if let Some(fits) = &fits {
                budget.add_json(&mut j, cfg, fits)?;
            }
            println!("{j}");
            continue;
        }
        let timing = match (r.ms_per_step, r.tokens_per_s, r.compile_s) {
            (Some(ms), Some(tps), _) => format!("{ms:10.1} ms/step  {tps:10.0} tokens/s"),
            (_, _, Some(s)) => format!("(compiled in {s:.1} s, not run)"),
            _ => "(plan only)".into(),
        };
        println!(
            "{:<18} B={:<3} T={:<5} {} recompute={:<5} matmul={:<8} {:5} dispatches  {timing}",
            r.preset,
            r.batch,
            r.seq,
            r.precision.name(),
            r.recompute.name(),
            r.matmul.map_or("auto", |v| v.name()),
            r.dispatches
        );
        println!("    {}", r.plan.summary());
        if let Some(fits) = &fits {
            print!("{}", budget.report(cfg, fits)?);
        }
        if let (Some(p), Some(ms)) = (&r.profile, r.ms_per_step) {
            print!("{}", p.to_text(ms));
        }
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
