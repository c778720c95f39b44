//! The live window (cargo feature `viz`): loss, learning-rate, gradient-norm and tokens/s plots and
//! attention maps, fed over a channel by a training thread (`wgpt train --viz`) or by a thread that
//! follows a run directory (`wgpt viz RUN_DIR`).
//!
//! The feeding side never blocks: events go through a bounded channel with `try_send` and are
//! dropped when it is full (or when the window is gone). Attention maps are computed on the side
//! that owns the GPU, on a snapshot of the weights, every `every` steps, and sent as events too;
//! the window sends its settings (prompt, refresh interval) back over a second channel.

use crate::data::batches::Tokens;
use std::collections::HashMap;
use std::io::{BufRead, Seek};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use eframe::egui;
use egui::{Color32, Pos2, Rect, Vec2};
use egui_plot::{Legend, Line, Plot, PlotPoints};

use super::maps::{AttentionMaps, AttentionProbe};
use crate::data::Tokenizer;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::GptConfig;
use crate::train::trainer::{Progress, StepReport};

/// What travels to the window.
#[derive(Debug, Clone)]
pub enum Event {
    Step(StepReport),
    Eval {
        step: u64,
        val_loss: f64,
    },
    /// The maps after `step` (or why there are none), with one label per token.
    Maps {
        step: u64,
        labels: Vec<String>,
        maps: std::result::Result<AttentionMaps, String>,
    },
    /// A line for the status bar (the run finished, failed, ...).
    Status(String),
}

/// What the window asks of the side that computes maps.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub prompt: String,
    /// Recompute the maps every this many steps (0: never).
    pub every: u64,
}

/// The sending end of the event channel: never blocks, drops events when the channel is full.
/// The window polls it five times a second (no repaint per event: with small models that would be
/// hundreds of frames a second taken from the trainer).
#[derive(Clone)]
pub struct Feed {
    tx: SyncSender<Event>,
}

impl Feed {
    /// Sends `e` unless the channel is full; false once the window is gone.
    pub fn send(&self, e: Event) -> bool {
        !matches!(self.tx.try_send(e), Err(std::sync::mpsc::TrySendError::Disconnected(_)))
    }
}

/// The two channels between a feeding thread and the window.
pub struct Link {
    pub feed: Feed,
    pub settings: Receiver<Settings>,
}

/// The window's ends of the channels.
pub struct WindowEnds {
    events: Receiver<Event>,
    settings: Sender<Settings>,
}

/// A linked pair: the feeder's ends and the window's.
pub fn link() -> (Link, WindowEnds) {
    // Room for several thousand steps between two frames; past that, events are dropped.
    let (tx, events) = sync_channel(8192);
    let (settings_tx, settings) = channel();
    (Link { feed: Feed { tx }, settings }, WindowEnds { events, settings: settings_tx })
}

/// Attention maps of a prompt under snapshots of the weights, on the GPU of the feeding thread.
pub struct MapMaker {
    probe: std::result::Result<AttentionProbe, String>,
    tokenizer: Tokenizer,
    settings: Settings,
    rx: Receiver<Settings>,
    /// The settings changed since the last maps: recompute at the next chance.
    dirty: bool,
}

impl MapMaker {
    /// Maps of at most `t` tokens; `prompt` is the default prompt.
    pub fn new(
        gpu: &Gpu,
        model: GptConfig,
        t: usize,
        tokenizer: Tokenizer,
        prompt: String,
        rx: Receiver<Settings>,
    ) -> Self {
        let probe = AttentionProbe::new(gpu, model, t.min(model.block_size)).map_err(|e| e.to_string());
        MapMaker { probe, tokenizer, settings: Settings { prompt, every: 10 }, rx, dirty: true }
    }

    pub fn prompt(&self) -> &str {
        &self.settings.prompt
    }

    /// Takes the window's latest settings; true when they changed.
    pub fn poll(&mut self) -> bool {
        let mut changed = false;
        while let Ok(s) = self.rx.try_recv() {
            changed |= s != self.settings;
            self.settings = s;
        }
        self.dirty |= changed;
        changed
    }

    /// Whether the maps are due after `step`.
    pub fn due(&mut self, step: u64) -> bool {
        self.poll();
        self.dirty || (self.settings.every > 0 && step.is_multiple_of(self.settings.every))
    }

    /// The maps of the prompt under `params`, as an event.
    pub fn make(&mut self, step: u64, params: &HashMap<String, Vec<f32>>) -> Event {
        self.dirty = false;
        let probe = match &self.probe {
            Ok(p) => p,
            Err(e) => return Event::Maps { step, labels: Vec::new(), maps: Err(e.clone()) },
        };
        let mut ids = match self.tokenizer.encode(&self.settings.prompt) {
            Ok(ids) => ids,
            Err(e) => return Event::Maps { step, labels: Vec::new(), maps: Err(format!("the prompt: {e}")) },
        };
        ids.truncate(probe.t);
        if ids.is_empty() {
            return Event::Maps { step, labels: Vec::new(), maps: Err("the prompt is empty".into()) };
        }
        let labels = ids.iter().map(|&id| label(&self.tokenizer.decode(&[id]))).collect();
        Event::Maps { step, labels, maps: probe.maps(params, &ids).map_err(|e| e.to_string()) }
    }
}

/// A token as an axis label: whitespace made visible.
fn label(s: &str) -> String {
    s.replace(' ', "·").replace('\n', "⏎").replace('\t', "⇥")
}

/// A `Progress` that keeps reporting to `inner` (the terminal) and forwards every step, evaluation
/// and line to the window, with attention maps every so many steps while the window is open.
pub struct WindowProgress<P> {
    pub inner: P,
    pub feed: Feed,
    pub maps: MapMaker,
    open: bool,
}

impl<P: Progress> WindowProgress<P> {
    pub fn new(inner: P, feed: Feed, maps: MapMaker) -> Self {
        WindowProgress { inner, feed, maps, open: true }
    }

    fn send(&mut self, e: Event) {
        self.open &= self.feed.send(e);
    }
}

impl<P: Progress> Progress for WindowProgress<P> {
    fn line(&mut self, text: &str) {
        self.inner.line(text);
    }

    fn step(&mut self, r: &StepReport) {
        self.inner.step(r);
        self.send(Event::Step(*r));
    }

    fn eval(&mut self, step: u64, val_loss: f64) {
        self.inner.eval(step, val_loss);
        self.send(Event::Eval { step, val_loss });
    }

    fn wants_params(&mut self, step: u64) -> bool {
        self.open && self.maps.due(step)
    }

    fn params(&mut self, step: u64, params: &HashMap<String, Vec<f32>>) {
        let e = self.maps.make(step, params);
        self.send(e);
    }
}

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
    let state = crate::train::checkpoint::load_json(&dir.join("trainer_state.json")).ok()?;
    let shards: Vec<PathBuf> =
        state["shards"].as_array()?.iter().filter_map(|s| s.as_str()).map(|s| dir.join(s)).collect();
    let tokens = crate::data::dataset::TokenSet::open(&shards, tok.vocab_size()).ok()?;
    let cfg = crate::train::config::RunConfig::from_json(&doc["wgpt"]["train"]).ok()?;
    let (train, val) = crate::data::batches::split(tokens.len(), cfg.val_fraction, cfg.block_size).ok()?;
    let r = if val.is_empty() { train } else { val };
    let ids: Vec<u32> = (r.start..r.end.min(r.start + n)).map(|i| tokens.get(i)).collect();
    Some(tok.decode(&ids))
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

/// Where `--screenshot` writes, and when.
pub struct Screenshot {
    pub path: PathBuf,
    /// Saved once this many steps are shown and the maps (or their error) arrived, and with
    /// `at_end` once the run reports it finished; or after `timeout`, whichever comes first.
    pub min_steps: usize,
    pub at_end: bool,
    pub timeout: Duration,
}

/// Opens the window and runs it until it is closed. `title` names the run.
pub fn open(title: &str, ends: WindowEnds, prompt: String, screenshot: Option<Screenshot>) -> Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title(format!("wgpt — {title}"))
            .with_inner_size([1280.0, 800.0]),
        renderer: eframe::Renderer::Wgpu,
        ..Default::default()
    };
    let title = title.to_string();
    eframe::run_native("wgpt", options, Box::new(move |_| Ok(Box::new(App::new(title, ends, prompt, screenshot)))))
        .map_err(|e| Error::Other(format!("the window: {e}")))
}

struct App {
    title: String,
    ends: WindowEnds,
    steps: Vec<StepReport>,
    evals: Vec<[f64; 2]>,
    maps: Option<(u64, Vec<String>, std::result::Result<AttentionMaps, String>)>,
    status: String,
    /// The feeding thread reported the end of the run.
    done: bool,
    log_scale: bool,
    layer: usize,
    head: usize,
    grid: bool,
    prompt: String,
    every: u64,
    shot: Option<Screenshot>,
    started: Instant,
    shot_taken: Arc<Mutex<Option<std::result::Result<(), String>>>>,
    shot_asked: bool,
    /// The plot and heat-map rectangles of the last frame (points), saved beside a screenshot.
    areas: (Rect, Rect),
}

impl App {
    fn new(title: String, ends: WindowEnds, prompt: String, shot: Option<Screenshot>) -> Self {
        App {
            title,
            ends,
            steps: Vec::new(),
            evals: Vec::new(),
            maps: None,
            status: String::new(),
            done: false,
            log_scale: false,
            layer: 0,
            head: 0,
            grid: false,
            prompt,
            every: 10,
            shot,
            started: Instant::now(),
            shot_taken: Arc::new(Mutex::new(None)),
            shot_asked: false,
            areas: (Rect::NOTHING, Rect::NOTHING),
        }
    }

    fn drain(&mut self) {
        loop {
            match self.ends.events.try_recv() {
                Ok(Event::Step(r)) => {
                    // A resumed or re-read run may repeat steps: keep the steps increasing.
                    self.steps.retain(|s| s.step < r.step);
                    self.steps.push(r);
                }
                Ok(Event::Eval { step, val_loss }) => {
                    self.evals.retain(|e| e[0] < step as f64);
                    self.evals.push([step as f64, val_loss]);
                }
                Ok(Event::Maps { step, labels, maps }) => self.maps = Some((step, labels, maps)),
                Ok(Event::Status(s)) if s.is_empty() => {}
                Ok(Event::Status(s)) => {
                    self.done = true;
                    self.status = s;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    if self.status.is_empty() {
                        self.status = "the run's thread has stopped".into();
                    }
                    break;
                }
            }
        }
    }

    fn send_settings(&self) {
        let _ = self.ends.settings.send(Settings { prompt: self.prompt.clone(), every: self.every });
    }

    fn plots(&mut self, ui: &mut egui::Ui) -> Rect {
        let h = (ui.available_height() - 24.0) / 2.0;
        let w = ui.available_width() / 2.0 - 8.0;
        let series = |f: &dyn Fn(&StepReport) -> f64| -> Vec<[f64; 2]> {
            self.steps.iter().map(|r| [r.step as f64, f(r)]).collect()
        };
        let log = self.log_scale;
        let y = move |v: f64| if log { v.max(1e-9).log10() } else { v };
        let train: Vec<[f64; 2]> = series(&|r| r.loss as f64).into_iter().map(|[x, v]| [x, y(v)]).collect();
        let val: Vec<[f64; 2]> = self.evals.iter().map(|&[x, v]| [x, y(v)]).collect();
        let lr = series(&|r| r.lr);
        let gn = series(&|r| r.grad_norm as f64);
        let tps = series(&|r| r.tokens_per_s);
        let link = egui::Id::unique("steps");
        let mut rect = Rect::NOTHING;
        ui.horizontal(|ui| {
            ui.vertical(|ui| {
                ui.horizontal(|ui| {
                    ui.label("loss");
                    ui.checkbox(&mut self.log_scale, "log scale");
                });
                let mut p = Plot::new("loss")
                    .width(w)
                    .height(h - 20.0)
                    .legend(Legend::default())
                    .link_axis(link, [true, false]);
                if log {
                    p = p.y_axis_formatter(|m, _| format!("{:.3}", 10f64.powf(m.value)));
                }
                let r = p.show(ui, |pu| {
                    pu.line(Line::new("train", PlotPoints::from(train)));
                    pu.line(Line::new("val", PlotPoints::from(val)).width(2.0));
                });
                rect = r.response.rect;
                ui.label("grad norm");
                Plot::new("gradnorm").width(w).height(h - 20.0).link_axis(link, [true, false]).show(ui, |pu| {
                    pu.line(Line::new("grad norm", PlotPoints::from(gn)));
                });
            });
            ui.vertical(|ui| {
                ui.label("learning rate");
                Plot::new("lr").width(w).height(h).link_axis(link, [true, false]).show(ui, |pu| {
                    pu.line(Line::new("lr", PlotPoints::from(lr)));
                });
                ui.label("tokens/s");
                Plot::new("tps").width(w).height(h - 20.0).link_axis(link, [true, false]).show(ui, |pu| {
                    pu.line(Line::new("tokens/s", PlotPoints::from(tps)));
                });
            });
        });
        rect
    }

    fn attention(&mut self, ui: &mut egui::Ui) -> Rect {
        ui.heading("attention");
        let (n_layer, n_head) = match &self.maps {
            Some((_, _, Ok(m))) => (m.n_layer, m.n_head),
            _ => (1, 1),
        };
        let mut changed = false;
        ui.horizontal(|ui| {
            ui.label("layer");
            ui.add(egui::DragValue::new(&mut self.layer).range(0..=n_layer - 1));
            ui.label("head");
            ui.add_enabled(!self.grid, egui::DragValue::new(&mut self.head).range(0..=n_head - 1));
            ui.checkbox(&mut self.grid, "all heads of the layer");
            ui.label("refresh every");
            changed |= ui.add(egui::DragValue::new(&mut self.every).range(0..=100_000).suffix(" steps")).changed();
        });
        self.layer = self.layer.min(n_layer - 1);
        self.head = self.head.min(n_head - 1);
        ui.horizontal(|ui| {
            ui.label("prompt");
            let r = ui.add(egui::TextEdit::singleline(&mut self.prompt).desired_width(f32::INFINITY));
            changed |= r.lost_focus();
        });
        if changed {
            self.send_settings();
        }
        let avail = ui.available_size();
        let (rect, _) = ui.allocate_exact_size(avail, egui::Sense::hover());
        let painter = ui.painter_at(rect);
        painter.rect_filled(rect, 0.0, ui.visuals().extreme_bg_color);
        match &self.maps {
            None => {
                painter.text(
                    rect.center(),
                    egui::Align2::CENTER_CENTER,
                    "waiting for the first maps…",
                    egui::FontId::proportional(16.0),
                    ui.visuals().text_color(),
                );
            }
            Some((step, _, Err(e))) => {
                let galley = painter.layout(
                    format!("attention maps (step {step}): {e}"),
                    egui::FontId::proportional(15.0),
                    Color32::from_rgb(230, 110, 90),
                    rect.width() - 20.0,
                );
                painter.galley(rect.min + Vec2::splat(10.0), galley, Color32::WHITE);
            }
            Some((step, labels, Ok(m))) => {
                painter.text(
                    rect.min + Vec2::new(4.0, 2.0),
                    egui::Align2::LEFT_TOP,
                    format!("step {step}"),
                    egui::FontId::proportional(12.0),
                    ui.visuals().weak_text_color(),
                );
                let inner = rect.shrink(4.0).with_min_y(rect.min.y + 18.0);
                if self.grid {
                    let cols = (m.n_head as f32).sqrt().ceil() as usize;
                    let rows = m.n_head.div_ceil(cols);
                    let cell = Vec2::new(inner.width() / cols as f32, inner.height() / rows as f32);
                    for h in 0..m.n_head {
                        let min = inner.min + Vec2::new((h % cols) as f32 * cell.x, (h / cols) as f32 * cell.y);
                        let r = Rect::from_min_size(min, cell).shrink(6.0);
                        painter.text(
                            r.min,
                            egui::Align2::LEFT_BOTTOM,
                            format!("head {h}"),
                            egui::FontId::proportional(11.0),
                            ui.visuals().text_color(),
                        );
                        heat(&painter, r.with_min_y(r.min.y + 2.0), m.head(self.layer, h), m.t(), None);
                    }
                } else {
                    heat(&painter, inner, m.head(self.layer, self.head), m.t(), Some(labels));
                }
            }
        }
        rect
    }
}

/// Draws a T x T map into `rect` (square, left-aligned), with token labels on both axes if given.
fn heat(painter: &egui::Painter, rect: Rect, probs: &[f32], t: usize, labels: Option<&Vec<String>>) {
    let margin = if labels.is_some() { 70.0 } else { 0.0 };
    let side = (rect.width() - margin).min(rect.height() - margin).max(1.0);
    let origin = rect.min + Vec2::new(margin, 0.0);
    let c = side / t as f32;
    for q in 0..t {
        for k in 0..=q {
            let p = probs[q * t + k].clamp(0.0, 1.0);
            let cell = Rect::from_min_size(origin + Vec2::new(k as f32 * c, q as f32 * c), Vec2::splat(c));
            painter.rect_filled(cell, 0.0, color(p));
        }
    }
    painter.rect_stroke(
        Rect::from_min_size(origin, Vec2::splat(side)),
        0.0,
        (1.0, Color32::GRAY),
        egui::StrokeKind::Outside,
    );
    if let Some(labels) = labels {
        let font = egui::FontId::monospace((c * 0.8).clamp(6.0, 12.0));
        for (i, l) in labels.iter().enumerate().take(t) {
            let mid = i as f32 * c + c / 2.0;
            // Queries down the left, keys along the bottom (rotated).
            painter.text(
                Pos2::new(origin.x - 4.0, origin.y + mid),
                egui::Align2::RIGHT_CENTER,
                l,
                font.clone(),
                Color32::LIGHT_GRAY,
            );
            let galley = painter.layout_no_wrap(l.clone(), font.clone(), Color32::LIGHT_GRAY);
            let at = Pos2::new(origin.x + mid - galley.size().y / 2.0, origin.y + side + 4.0);
            painter.add(
                egui::epaint::TextShape::new(at + Vec2::new(galley.size().y, 0.0), galley, Color32::LIGHT_GRAY)
                    .with_angle(std::f32::consts::FRAC_PI_2),
            );
        }
    }
}

/// A dark-blue → yellow ramp.
fn color(p: f32) -> Color32 {
    let p = p.sqrt();
    let lerp = |a: f32, b: f32| (a + (b - a) * p) as u8;
    Color32::from_rgb(lerp(20.0, 250.0), lerp(20.0, 220.0), lerp(70.0, 40.0))
}

impl eframe::App for App {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.drain();
        let ctx = ui.ctx().clone();
        egui::Panel::top("status").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.strong(&self.title);
                if let Some(r) = self.steps.last() {
                    ui.label(format!(
                        "step {}/{}  loss {:.4}  lr {:.2e}  grad norm {:.3}  {:.0} tok/s",
                        r.step, r.steps, r.loss, r.lr, r.grad_norm, r.tokens_per_s
                    ));
                }
                if let Some(v) = self.evals.last() {
                    ui.label(format!("val loss {:.4} (step {})", v[1], v[0]));
                }
                ui.label(&self.status);
            });
        });
        egui::Panel::right("attention").default_size(ui.available_width() * 0.45).show(ui, |ui| {
            self.areas.1 = self.attention(ui);
        });
        egui::CentralPanel::default().show(ui, |ui| {
            self.areas.0 = self.plots(ui);
        });
        self.screenshot(&ctx);
        ctx.request_repaint_after(Duration::from_millis(200));
    }
}

impl App {
    fn screenshot(&mut self, ctx: &egui::Context) {
        let Some(shot) = &self.shot else { return };
        if let Some(done) = self.shot_taken.lock().expect("screenshot slot").take() {
            match done {
                Ok(()) => println!("screenshot: {}", shot.path.display()),
                Err(e) => eprintln!("wgpt: error: screenshot: {e}"),
            }
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            return;
        }
        let ready = self.steps.len() >= shot.min_steps && self.maps.is_some() && (self.done || !shot.at_end);
        if self.shot_asked || !(ready || self.started.elapsed() > shot.timeout) {
            return;
        }
        self.shot_asked = true;
        let ppp = ctx.pixels_per_point();
        let area = |r: Rect| [r.min.x * ppp, r.min.y * ppp, r.max.x * ppp, r.max.y * ppp].map(|v| v.round() as i64);
        let areas = serde_json::json!({"plot": area(self.areas.0), "map": area(self.areas.1)});
        let (path, slot, ctx2) = (shot.path.clone(), self.shot_taken.clone(), ctx.clone());
        ctx.request_screenshot(move |image| {
            let r = save_png(&path, &image).and_then(|()| {
                let side = PathBuf::from(format!("{}.json", path.display()));
                std::fs::write(&side, areas.to_string()).map_err(|e| format!("{}: {e}", side.display()))
            });
            *slot.lock().expect("screenshot slot") = Some(r);
            ctx2.request_repaint();
        });
    }
}

fn save_png(path: &Path, image: &egui::ColorImage) -> std::result::Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let f = std::fs::File::create(path).map_err(|e| err(&e))?;
    let [w, h] = image.size;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(f), w as u32, h as u32);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    let mut wr = enc.write_header().map_err(|e| err(&e))?;
    let bytes: Vec<u8> = image.pixels.iter().flat_map(|c| c.to_array()).collect();
    wr.write_image_data(&bytes).map_err(|e| err(&e))
}
