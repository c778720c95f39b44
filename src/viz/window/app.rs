//! The window itself (eframe): the status line, the four plots and the attention panel, redrawn
//! rarely on a software adapter, and the `--screenshot` that CI and the README use.

use std::path::{Path, PathBuf};
use std::sync::mpsc::TryRecvError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eframe::egui;
use egui::{Color32, Pos2, Rect, Vec2};
use egui_plot::{Legend, Line, Plot, PlotPoints};

use super::{Event, Settings, WindowEnds, DEFAULT_MAP_EVERY};
use crate::error::{Error, Result};
use crate::train::trainer::StepReport;
use crate::viz::maps::AttentionMaps;

/// Where `--screenshot` writes, and when.
pub struct Screenshot {
    pub path: PathBuf,
    /// Saved once this many steps are shown and the maps (or their error) arrived, and with
    /// `at_end` once the run reports it finished; or after `timeout`, whichever comes first (the
    /// `screenshot:` line then says what was missing).
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
    eframe::run_native(
        "wgpt",
        options,
        Box::new(move |cc| {
            let software = cc
                .wgpu_render_state
                .as_ref()
                .is_some_and(|s| s.adapter.get_info().device_type == wgpu::DeviceType::Cpu);
            let mut app = App::new(title, ends, prompt, screenshot);
            // Software rendering shares the CPU with training (on lavapipe a frame of this window
            // costs about 0.2 s of CPU): redraw rarely. A GPU draws a frame for free.
            app.repaint = if software { Duration::from_secs(5) } else { Duration::from_millis(250) };
            Ok(Box::new(app))
        }),
    )
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
    /// Asked for, with what was missing when the timeout forced it ("" when it was ready).
    shot_asked: Option<String>,
    /// The plot and heat-map rectangles of the last frame (points), saved beside a screenshot.
    areas: (Rect, Rect),
    /// How often the window redraws without input (new data shows within this time).
    repaint: Duration,
    frames: u32,
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
            prompt: escape(&prompt),
            every: DEFAULT_MAP_EVERY,
            shot,
            started: Instant::now(),
            shot_taken: Arc::new(Mutex::new(None)),
            shot_asked: None,
            areas: (Rect::NOTHING, Rect::NOTHING),
            repaint: Duration::from_secs(1),
            frames: 0,
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
        let _ = self.ends.settings.send(Settings { prompt: unescape(&self.prompt), every: self.every });
    }

    fn plots(&mut self, ui: &mut egui::Ui) -> Rect {
        let h = (ui.available_height() - 24.0) / 2.0;
        let w = ui.available_width() / 2.0 - 8.0;
        // At most about PLOT_POINTS points per line: long runs cost the same per frame.
        let stride = self.steps.len().div_ceil(PLOT_POINTS).max(1);
        let series = |f: &dyn Fn(&StepReport) -> f64| -> Vec<[f64; 2]> {
            let last = self.steps.len().saturating_sub(1);
            let keep = |(i, _): &(usize, &StepReport)| i % stride == 0 || *i == last;
            self.steps.iter().enumerate().filter(keep).map(|(_, r)| [r.step as f64, f(r)]).collect()
        };
        let log = self.log_scale;
        let y = move |v: f64| if log { v.max(1e-9).log10() } else { v };
        let train: Vec<[f64; 2]> = series(&|r| r.loss as f64).into_iter().map(|[x, v]| [x, y(v)]).collect();
        let val: Vec<[f64; 2]> = self.evals.iter().map(|&[x, v]| [x, y(v)]).collect();
        let lr = series(&|r| r.lr);
        let gn = series(&|r| r.grad_norm as f64);
        let tps = series(&|r| r.tokens_per_s);
        let link = egui::Id::unique("steps");
        // No plot background: the panel's shows through, and on a software adapter every pixel
        // painted twice is CPU taken from training.
        let plot =
            |id: &str| Plot::new(id).width(w).height(h - 20.0).link_axis(link, [true, false]).show_background(false);
        let mut rect = Rect::NOTHING;
        ui.horizontal(|ui| {
            ui.vertical(|ui| {
                ui.horizontal(|ui| {
                    ui.label("loss");
                    ui.checkbox(&mut self.log_scale, "log scale");
                });
                let mut p = plot("loss").legend(Legend::default());
                if log {
                    p = p.y_axis_formatter(|m, _| format!("{:.3}", 10f64.powf(m.value)));
                }
                let r = p.show(ui, |pu| {
                    pu.line(Line::new("train", PlotPoints::from(train)));
                    pu.line(Line::new("val", PlotPoints::from(val)).width(2.0));
                });
                rect = r.response.rect;
                ui.label("grad norm");
                plot("gradnorm").show(ui, |pu| {
                    pu.line(Line::new("grad norm", PlotPoints::from(gn)));
                });
            });
            ui.vertical(|ui| {
                ui.label("learning rate");
                plot("lr").show(ui, |pu| {
                    pu.line(Line::new("lr", PlotPoints::from(lr)));
                });
                ui.label("tokens/s");
                plot("tps").show(ui, |pu| {
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
            let every = egui::DragValue::new(&mut self.every).range(0..=100_000).suffix(" steps");
            changed |= ui
                .add(every)
                .on_hover_text("0: never. Maps are also spaced so that they take at most about 1% of training time.")
                .changed();
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

const PLOT_POINTS: usize = 2000;

/// The prompt in the window's one-line box: `\n`, `\t` and `\\` stand for a newline, a tab and a
/// backslash.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n").replace('\t', "\\t")
}

/// The prompt typed in the box (`escape` undone; a lone backslash stays).
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    out
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
    fn clear_color(&self, visuals: &egui::Visuals) -> [f32; 4] {
        visuals.panel_fill.to_normalized_gamma_f32()
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.drain();
        let ctx = ui.ctx().clone();
        // The panels leave their fill to the clear colour (see clear_color): one full-window fill
        // less per frame, which a software adapter pays for in CPU.
        let style = ctx.global_style();
        let side = egui::Frame::side_top_panel(&style).fill(Color32::TRANSPARENT);
        let central = egui::Frame::central_panel(&style).fill(Color32::TRANSPARENT);
        egui::Panel::top("status").frame(side).show(ui, |ui| {
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
        egui::Panel::right("attention").frame(side).default_size(ui.available_width() * 0.45).show(ui, |ui| {
            self.areas.1 = self.attention(ui);
        });
        egui::CentralPanel::default().frame(central).show(ui, |ui| {
            self.areas.0 = self.plots(ui);
        });
        self.screenshot(&ctx);
        // egui lays out a first frame twice; after the next one the window is up.
        self.frames += 1;
        if self.frames >= 3 {
            self.ends.shown.take();
        }
        // Input (typing, dragging) repaints at once anyway.
        ctx.request_repaint_after(if self.frames < 3 { Duration::ZERO } else { self.repaint });
    }
}

impl App {
    fn screenshot(&mut self, ctx: &egui::Context) {
        let Some(shot) = &self.shot else { return };
        if let Some(done) = self.shot_taken.lock().expect("screenshot slot").take() {
            match done {
                Ok(()) => println!("screenshot: {}{}", shot.path.display(), self.shot_asked.as_deref().unwrap_or("")),
                Err(e) => eprintln!("wgpt: error: screenshot: {e}"),
            }
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            return;
        }
        let ready = self.steps.len() >= shot.min_steps && self.maps.is_some() && (self.done || !shot.at_end);
        if self.shot_asked.is_some() || !(ready || self.started.elapsed() > shot.timeout) {
            return;
        }
        // Taken anyway, so a run without maps still gets its picture, but it says what is missing.
        self.shot_asked = Some(if ready {
            String::new()
        } else {
            format!(
                " (taken at the {} s limit before the window was ready: {} of {} steps, maps {}, run {})",
                shot.timeout.as_secs(),
                self.steps.len(),
                shot.min_steps,
                if self.maps.is_some() { "shown" } else { "not yet made" },
                if self.done { "finished" } else { "not finished" }
            )
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_round_trip_through_the_one_line_box() {
        for p in ["plain", "two\nlines", "tab\there", "back\\slash\\n", "", "\n\n\t\\"] {
            let shown = escape(p);
            assert!(!shown.contains('\n') && !shown.contains('\t'), "{shown:?}");
            assert_eq!(unescape(&shown), p);
        }
        assert_eq!(unescape("typed\\nnewline\\"), "typed\nnewline\\");
    }
}
