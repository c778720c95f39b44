//! `wgpt train` from its command line to the end of the run: the job's ranks and adapter, a run
//! directory resumed (checked before anything is written) or made new, the trainer (`setup`), and
//! the run itself in the terminal, or beside the window with --viz.

use std::path::{Path, PathBuf};

use super::setup::{self, Request};
use super::trainer::{Progress, StepReport, Trainer};
use crate::data::dataset::Input;
use crate::dist::{agree, launch, Comm, Place};
use crate::error::{Error, Result};
use crate::gpu::context::{AdapterPick, BackendChoice};
use crate::gpu::Gpu;

/// What `wgpt train` asks for: the run's settings (`Request`; `train` fills in its `place`) and
/// where and how it runs.
#[derive(Debug, Default)]
pub struct Launch {
    pub req: Request,
    /// --device: the INDEX-th of the equally preferred adapters (else the job's local rank's).
    pub device: Option<usize>,
    /// The run directory: to make (None: runs/<preset>-<seconds>) or, with `resume`, to continue.
    pub out: Option<PathBuf>,
    pub resume: bool,
    /// Train beside the window (feature `viz`), and save a PNG of it at the end.
    pub viz: bool,
    pub screenshot: Option<PathBuf>,
}

/// Runs `wgpt train`: as one rank of a job under mpirun (MPI starts before anything else), or
/// alone; resumes `out` or makes a new run directory, which must not exist; then trains to the end.
pub fn train(backend: BackendChoice, ask: Launch) -> Result<()> {
    let Launch { mut req, device, out, resume, viz, screenshot } = ask;
    #[cfg(not(feature = "viz"))]
    if viz {
        return Err(crate::error::no_viz());
    }
    // Under mpirun, one rank of a data-parallel job: MPI starts before anything else.
    let job = launch::detect()?;
    let (place, local_rank) = job.unwrap_or((Place::ALONE, 0));
    let pick = device.map_or(AdapterPick::LocalRank(local_rank), AdapterPick::Index);
    let comm = job.map(|(place, _)| launch::connect(place)).transpose()?;
    // Ctrl-C and SIGTERM save a checkpoint before the process ends.
    super::interrupt::install()?;
    req.place = place;
    if !place.leads() {
        let comm = comm.expect("a rank other than 0 is in a job");
        return setup::follow(backend, pick, &req, out.as_deref(), resume, comm);
    }
    let gpu = || pollster::block_on(Gpu::picked(backend, pick));
    let (gpu, trainer, dir) = if resume { resumed(gpu, &req, out, comm)? } else { made(gpu, &req, out, comm)? };
    let at = trainer.step;
    run_training(gpu, trainer, &dir, at, viz, screenshot)
}

/// Rank 0 gives the others its kernel choices, then the ranks check that they agree; the job's
/// line is printed.
fn join(t: &mut Trainer, comm: Option<Box<dyn Comm>>) -> Result<()> {
    if let Some(c) = comm {
        agree::offer_kernels(&*c, &t.cfg.kernels)?;
        t.join(c)?;
    }
    if let Some(line) = t.job_line() {
        println!("{line}");
    }
    Ok(())
}

/// The trainer of run directory `out` at its last checkpoint, the command line checked against it
/// (`setup::resume`). A directory that is missing or cannot be written fails before the adapter
/// is opened; nothing is created or changed.
fn resumed(
    gpu: impl FnOnce() -> Result<Gpu>,
    req: &Request,
    out: Option<PathBuf>,
    comm: Option<Box<dyn Comm>>,
) -> Result<(Gpu, Trainer, PathBuf)> {
    let Some(dir) = out else {
        return Err(Error::Other("--resume needs --out DIR, the run directory to continue".into()));
    };
    if !dir.is_dir() {
        return Err(Error::Other(format!("--resume: {} is not a run directory", dir.display())));
    }
    let metrics = dir.join("metrics.jsonl");
    if let Err(e) = std::fs::OpenOptions::new().append(true).open(&metrics) {
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(crate::util::io_error(&metrics, &e));
        }
    }
    let gpu = gpu()?;
    let mut notes = Vec::new();
    let trainer = setup::resume(&gpu, &dir, req, &mut notes);
    for n in notes {
        println!("{n}");
    }
    let mut trainer = trainer?;
    join(&mut trainer, comm)?;
    println!("adapter: {}; resuming {} at step {}", gpu.describe(), dir.display(), trainer.step);
    if let Some(n) = &trainer.notice {
        println!("{n}");
    }
    Ok((gpu, trainer, dir))
}

/// A new run: its directory `out` (None: runs/<preset>-<seconds>), which must not exist, made with
/// the corpus tokenized into it and the trainer set up (`setup::start`); what it is, printed.
fn made(
    gpu: impl FnOnce() -> Result<Gpu>,
    req: &Request,
    out: Option<PathBuf>,
    comm: Option<Box<dyn Comm>>,
) -> Result<(Gpu, Trainer, PathBuf)> {
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
    let gpu = gpu()?;
    println!("adapter: {}", gpu.describe());
    if let Some(init) = &init {
        println!("starting from the model in {}", init.dir.display());
    }
    let mut trainer = setup::start(&gpu, &cfg, init.as_ref(), &input, &dir, &mut |line| println!("{line}"))?;
    join(&mut trainer, comm)?;
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
    Ok((gpu, trainer, dir))
}

/// Runs `trainer` to the end, reporting to the terminal, and to a window with --viz: training
/// then runs in its own thread while the window has the main one.
fn run_training(
    gpu: Gpu,
    mut trainer: Trainer,
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
        Err(crate::error::no_viz())
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
        let training = training.map_err(|e| Error::Other(format!("could not start the training thread: {e}")))?;
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
        training.join().map_err(|_| Error::Other("the training thread panicked".into()))?
    }
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

impl Progress for Bar {
    fn line(&mut self, text: &str) {
        if self.0.is_hidden() || self.0.is_finished() {
            println!("{text}");
        } else {
            self.0.println(text);
        }
    }

    fn step(&mut self, r: &StepReport) {
        self.0.set_position(r.step);
        self.0.set_message(format!("loss {:.4}  lr {:.2e}  {:.0} tok/s", r.loss, r.lr, r.tokens_per_s));
        if r.step == r.steps {
            self.0.finish_and_clear();
        }
    }
}
